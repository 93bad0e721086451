package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/ledger"
)

// The consortium tests run four validators as real imi processes on
// loopback (issue 6). With four validators of equal power, any three make
// more than two thirds: the network must go on without any one, and halt,
// without forking, without two.

// progress samples the network's height in the background: the highest
// height any node answers with, and the longest stretch without a new one.
type progress struct {
	mu       sync.Mutex
	height   int64
	lastNew  time.Time
	longest  time.Duration
	longestH int64
}

func watchProgress(ctx context.Context, c *consortium) (*progress, func()) {
	p := &progress{lastNew: time.Now()}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			h := slices.Max(c.heights(ctx))
			now := time.Now()
			p.mu.Lock()
			if h > p.height {
				if gap := now.Sub(p.lastNew); gap > p.longest && p.height > 0 {
					p.longest, p.longestH = gap, h
				}
				p.height, p.lastNew = h, now
			}
			p.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return p, func() { cancel(); <-done }
}

func (p *progress) now() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.height
}

// stall is the longest time without a new block so far, including the
// current stretch.
func (p *progress) stall() (time.Duration, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := time.Since(p.lastNew); cur > p.longest {
		return cur, p.height + 1
	}
	return p.longest, p.longestH
}

func TestConsortiumSurvivesOneFault(t *testing.T) {
	skipShort(t)
	const (
		faultFor   = 10 * time.Second // SIGSTOP lasts this; killed nodes are down as long
		minAdvance = 2                // blocks the others commit during a fault, at least
		catchUpIn  = 45 * time.Second
		// No stretch without a block may last longer. With one validator of
		// four down, its turns as proposer cost a propose timeout (3 s) and
		// a new round: about 4 s, 6 s seen with the load on two cores.
		longestStop = 15 * time.Second
	)
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	began := time.Now()
	c, l, anchor := startLoaded(ctx, t, seed)
	t.Logf("4 nodes up and the anchor registered in %v", time.Since(began).Round(time.Millisecond))
	base := residents(ctx, t, c.nodes[0])
	prog, stopWatch := watchProgress(ctx, c)
	defer stopWatch()
	loadBegan := time.Now()
	l.start(ctx)

	// The faults, each on another validator, in a random order of the four.
	victims := rng.Perm(len(c.nodes))[:3]
	type fault struct {
		name     string
		inject   func(m *member) error
		recover  func(m *member) error
		node     string
		before   int64
		during   int64
		catchUp  time.Duration
		exitTook time.Duration
	}
	faults := []*fault{
		{name: "SIGKILL, then restart",
			inject:  func(m *member) error { m.kill(); return nil },
			recover: func(m *member) error { c.start(m); return nil }},
		{name: "SIGSTOP, then SIGCONT",
			inject:  func(m *member) error { return m.pause() },
			recover: func(m *member) error { return m.resume() }},
		{name: "SIGTERM, then restart",
			recover: func(m *member) error { c.start(m); return nil }},
	}
	faults[2].inject = func(m *member) error {
		took, err := m.terminate(20 * time.Second)
		faults[2].exitTook = took
		return err
	}
	// Let the load run a little before the first fault.
	time.Sleep(2 * time.Second)
	for i, f := range faults {
		m := c.nodes[victims[i]]
		f.node = m.Name
		var others []*member
		for _, o := range c.nodes {
			if o != m {
				others = append(others, o)
			}
		}
		f.before = prog.now()
		if err := f.inject(m); err != nil {
			t.Fatalf("%s on %s: %v", f.name, m.Name, err)
		}
		time.Sleep(faultFor)
		// The three others went on committing blocks.
		f.during = prog.now() - f.before
		if f.during < minAdvance {
			t.Errorf("%s on %s: the network committed %d blocks in %v, want at least %d", f.name, m.Name, f.during, faultFor, minAdvance)
		}
		if err := l.failed(); err != nil {
			t.Fatalf("a client failed during %s on %s: %v", f.name, m.Name, err)
		}
		if err := f.recover(m); err != nil {
			t.Fatalf("%s on %s: %v", f.name, m.Name, err)
		}
		// It catches up with the others and stays with them.
		target := slices.Max(c.heights(ctx))
		t0 := time.Now()
		if _, err := m.api.waitReady(ctx, m.proc, catchUpIn); err != nil {
			t.Fatalf("%s on %s: %v", f.name, m.Name, err)
		}
		if err := c.waitAll(ctx, target, catchUpIn, m); err != nil {
			t.Fatalf("NO CATCH-UP after %s: %v", f.name, err)
		}
		f.catchUp = time.Since(t0)
		if err := c.waitAll(ctx, slices.Max(c.heights(ctx))+2, 20*time.Second, c.nodes...); err != nil {
			t.Fatalf("after %s on %s, not every node moves on: %v", f.name, m.Name, err)
		}
		s, err := m.api.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Chain.CatchingUp || s.Degraded {
			t.Errorf("after %s, %s still says catching_up=%v degraded=%v (%s)", f.name, m.Name, s.Chain.CatchingUp, s.Degraded, s.Health)
		}
		if s.Chain.Peers != len(c.nodes)-1 {
			t.Logf("after %s, %s has %d peers", f.name, m.Name, s.Chain.Peers)
		}
		// A short breath under load before the next fault.
		time.Sleep(time.Second)
	}
	if err := l.stopAndWait(60 * time.Second); err != nil {
		t.Fatalf("clients: %v", err)
	}
	loadTook := time.Since(loadBegan)
	stall, stallH := prog.stall()
	stopWatch()
	if stall > longestStop {
		t.Errorf("no block for %v (before height %d): the network stalled", stall.Round(time.Millisecond), stallH)
	}

	// Every node at one height, with one chain and one state.
	final := c.nextBlockOnAll(ctx)
	verifyBegan := time.Now()
	txs := l.snapshot()
	lookups := c.checkAcked(ctx, txs)
	heights := c.compareChains(ctx, final)
	proofs := c.compareStates(ctx, anchor.did, anchor.ackHeight, final)
	c.checkOnce(ctx, l, base)
	c.checkLogs()
	c.checkMesh(ctx, 20*time.Second)

	for _, f := range faults {
		extra := ""
		if f.exitTook > 0 {
			extra = fmt.Sprintf("; exited %v after SIGTERM", f.exitTook.Round(time.Millisecond))
		}
		t.Logf("%s on %s: the others committed %d blocks in %v%s; back in step after %v", f.name, f.node, f.during, faultFor, extra, f.catchUp.Round(time.Millisecond))
	}
	t.Logf("longest stretch without a block: %v (before height %d)", stall.Round(time.Millisecond), stallH)
	t.Logf("load: %s", l.summary(loadTook))
	t.Logf("checked: %d tx lookups, blocks 1..%d on 4 nodes, %d state proofs; verification took %v; test took %v",
		lookups, heights, proofs, time.Since(verifyBegan).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

func TestConsortiumHaltsWithoutQuorum(t *testing.T) {
	skipShort(t)
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	began := time.Now()
	c, l, anchor := startLoaded(ctx, t, seed)
	base := residents(ctx, t, c.nodes[0])
	// The load goes on through the halt: its clients time out on the live
	// nodes and resend until blocks resume.
	loadBegan := time.Now()
	l.start(ctx)
	time.Sleep(3 * time.Second)

	// Two of four go: one exits (SIGTERM), one hangs (SIGSTOP).
	perm := rng.Perm(4)
	gone, hung := c.nodes[perm[0]], c.nodes[perm[1]]
	live := []*member{c.nodes[perm[2]], c.nodes[perm[3]]}
	if _, err := gone.terminate(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := hung.pause(); err != nil {
		t.Fatal(err)
	}
	haltedAt := time.Now()
	// A block whose precommits were already out may still land; then
	// nothing more. Let the two live nodes settle on the last one.
	var h0 int64
	for {
		time.Sleep(time.Second)
		a, errA := live[0].quickStatus(ctx, time.Second)
		b, errB := live[1].quickStatus(ctx, time.Second)
		if errA != nil || errB != nil {
			t.Fatalf("a live node does not answer: %v %v", errA, errB)
		}
		if a.Height == b.Height {
			h0 = a.Height
			break
		}
		if time.Since(haltedAt) > 10*time.Second {
			t.Fatalf("the live nodes stay at different heights %d and %d", a.Height, b.Height)
		}
	}
	blockAtHalt, err := live[0].api.block(ctx, h0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s exited and %s hangs; %s and %s halted at height %d", gone.Name, hung.Name, live[0].Name, live[1].Name, h0)

	// A transaction sent now is taken into the mempool, but not committed:
	// the API answers 202 pending after its commit timeout (30 s).
	pendingTx, err := newResident(l.reg, consortiumChainID, anchorLane+1, 0, "440605", 1)
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		code int
		body []byte
		err  error
		took time.Duration
	}
	answered := make(chan answer, 1)
	go func() {
		t0 := time.Now()
		code, body, err := live[0].api.do(ctx, "POST", "/v1/txs", pendingTx.raw)
		answered <- answer{code, body, err, time.Since(t0)}
	}()

	// Meanwhile, no block, and the API comes to say the network is degraded.
	var (
		degradedAfter time.Duration
		health        string
		sub           *answer
	)
	for degradedAfter == 0 || sub == nil {
		if time.Since(haltedAt) > 60*time.Second {
			t.Fatalf("60 s after the halt: degraded after %v, submission answered: %v", degradedAfter, sub != nil)
		}
		select {
		case a := <-answered:
			sub = &a
		case <-time.After(time.Second):
		}
		for _, m := range live {
			s, err := m.quickStatus(ctx, 2*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", m.Name, err)
			}
			if s.Height != h0 {
				t.Fatalf("%s committed height %d with two of four validators down (halted at %d)", m.Name, s.Height, h0)
			}
			if s.Degraded && degradedAfter == 0 && m == live[0] {
				degradedAfter, health = time.Since(haltedAt), s.Health
			}
		}
	}
	switch {
	case sub.err != nil:
		t.Errorf("submission during the halt: %v", sub.err)
	case sub.code != http.StatusAccepted:
		t.Errorf("submission during the halt: %d %s, want 202 pending", sub.code, sub.body)
	}
	for _, m := range live {
		if _, found, err := m.api.txResult(ctx, pendingTx.hash); err != nil || found {
			t.Errorf("%s: the transaction sent during the halt is found=%v (%v)", m.Name, found, err)
		}
		if b, err := m.api.block(ctx, h0); err != nil || b.blockID != blockAtHalt.blockID {
			t.Errorf("%s: block %d is now %s (%v), was %s", m.Name, h0, b.blockID, err, blockAtHalt.blockID)
		}
	}
	t.Logf("degraded after %v (%q); the submission answered %d after %v", degradedAfter.Round(time.Millisecond), health, sub.code, sub.took.Round(time.Millisecond))

	// One comes back: three of four make a quorum again.
	if err := hung.resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	if err := c.waitAll(ctx, h0+2, 30*time.Second, live[0], live[1], hung); err != nil {
		t.Fatalf("blocks did not resume with three of four: %v", err)
	}
	resumeTook := time.Since(resumed)
	// The pending transaction was in the live nodes' mempools all along.
	var res *httpapi.TxResponse
	for deadline := time.Now().Add(20 * time.Second); ; {
		r, found, err := live[0].api.txResult(ctx, pendingTx.hash)
		if err == nil && found {
			res = r
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the transaction accepted during the halt was not committed after it (%v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if res.Code != ledger.OK || res.Height <= h0 {
		t.Errorf("the transaction accepted during the halt: %+v, want ok above height %d", res, h0)
	}
	for _, m := range live {
		s, err := m.api.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Degraded {
			t.Errorf("%s still says degraded after blocks resumed: %s", m.Name, s.Health)
		}
	}

	// Then the fourth.
	c.start(gone)
	t0 := time.Now()
	target := slices.Max(c.heights(ctx))
	if err := c.waitAll(ctx, target, 45*time.Second, gone); err != nil {
		t.Fatalf("NO CATCH-UP: %v", err)
	}
	catchUp := time.Since(t0)
	c.nextBlockOnAll(ctx)
	// No fork, before, during or after; nothing lost, nothing twice.
	if err := l.stopAndWait(60 * time.Second); err != nil {
		t.Fatalf("clients: %v", err)
	}
	loadTook := time.Since(loadBegan)
	final := c.nextBlockOnAll(ctx)
	lookups := c.checkAcked(ctx, l.snapshot())
	c.checkOnce(ctx, l, base+1) // +1: the transaction sent during the halt
	heights := c.compareChains(ctx, final)
	proofs := c.compareStates(ctx, anchor.did, anchor.ackHeight, final)
	c.checkLogs()
	t.Logf("load: %s; %d tx lookups", l.summary(loadTook), lookups)
	t.Logf("blocks resumed %v after SIGCONT; %s back in step %v after its restart; blocks 1..%d and %d state proofs agree on 4 nodes; test took %v",
		resumeTook.Round(time.Millisecond), gone.Name, catchUp.Round(time.Millisecond), heights, proofs, time.Since(began).Round(time.Millisecond))
}

func TestConsortiumAllKilled(t *testing.T) {
	skipShort(t)
	const rounds = 10
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 3))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	began := time.Now()
	c, l, anchor := startLoaded(ctx, t, seed)
	base := residents(ctx, t, c.nodes[0])
	loadBegan := time.Now()
	l.start(ctx)

	type round struct {
		killedAt, backAt   int64
		acked              int64
		spread, restart    time.Duration
		verify             time.Duration
		lookups            int
		firstKilled, order string
	}
	var done []round
	for r := 1; r <= rounds; r++ {
		// Under load for a random while, then every node dies, each at its
		// own random moment within half a second.
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		if err := l.failed(); err != nil {
			t.Fatalf("round %d: a client failed: %v", r, err)
		}
		var rd round
		rd.killedAt = slices.Max(c.heights(ctx))
		rd.acked = l.acked.Load()
		offsets := make([]time.Duration, len(c.nodes))
		for i := range offsets {
			offsets[i] = time.Duration(rng.IntN(500)) * time.Millisecond
		}
		first := slices.Index(offsets, slices.Min(offsets))
		rd.firstKilled = c.nodes[first].Name
		rd.spread = slices.Max(offsets) - slices.Min(offsets)
		var wg sync.WaitGroup
		for i, m := range c.nodes {
			wg.Go(func() {
				time.Sleep(offsets[i])
				m.kill()
			})
		}
		wg.Wait()
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)

		// All back, in a random order.
		t0 := time.Now()
		var order []string
		for _, i := range rng.Perm(len(c.nodes)) {
			c.start(c.nodes[i])
			order = append(order, c.nodes[i].Name)
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		}
		rd.order = strings.Join(order, " ")
		c.waitReady(ctx, 60*time.Second, c.nodes...)
		// A block committed after the restart, on every node: the highest
		// height stored anywhere may have been committed just before the
		// last kill.
		stored := slices.Max(c.heights(ctx))
		if stored < rd.killedAt {
			t.Errorf("round %d: the nodes came back at heights %v, below %d before the kills", r, c.heights(ctx), rd.killedAt)
		}
		if err := c.waitAll(ctx, stored+1, 45*time.Second, c.nodes...); err != nil {
			t.Fatalf("round %d: the network did not resume after every node was killed: %v", r, err)
		}
		rd.restart = time.Since(t0)

		// Everything acknowledged so far is on every node, once.
		t1 := time.Now()
		if err := l.pause(60 * time.Second); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		top := slices.Max(c.heights(ctx))
		if err := c.waitAll(ctx, top, 30*time.Second, c.nodes...); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		txs := l.snapshot()
		rd.lookups = c.checkAcked(ctx, txs)
		c.checkOnce(ctx, l, base)
		c.resubmit(ctx, rng, txs, 3)
		rd.backAt = top
		rd.verify = time.Since(t1)
		l.resume()
		if t.Failed() {
			t.FailNow()
		}
		done = append(done, rd)
	}
	if err := l.stopAndWait(60 * time.Second); err != nil {
		t.Fatalf("clients: %v", err)
	}
	loadTook := time.Since(loadBegan)
	final := c.nextBlockOnAll(ctx)
	txs := l.snapshot()
	lookups := c.checkAcked(ctx, txs)
	c.checkOnce(ctx, l, base)
	c.resubmit(ctx, rng, txs, 10)
	heights := c.compareChains(ctx, final)
	proofs := c.compareStates(ctx, anchor.did, anchor.ackHeight, final)
	c.checkLogs()
	c.checkMesh(ctx, 20*time.Second)

	for i, rd := range done {
		t.Logf("round %d: killed at height %d with %d acknowledged (first %s, spread %v); restarted %s; a new block on every node after %v; checked %d lookups at height %d in %v",
			i+1, rd.killedAt, rd.acked, rd.firstKilled, rd.spread, rd.order, rd.restart.Round(time.Millisecond), rd.lookups, rd.backAt, rd.verify.Round(time.Millisecond))
	}
	t.Logf("load: %s", l.summary(loadTook))
	t.Logf("final: %d tx lookups, blocks 1..%d on 4 nodes, %d state proofs; test took %v", lookups, heights, proofs, time.Since(began).Round(time.Millisecond))
}

// TestReplayDeterminism is the end-to-end half of determinism (the ledger's
// TestDeterminism replays blocks into fresh Apps in process): two copies of
// a validator's home, with the application's state wiped and CometBFT's
// block store kept, each rebuild the state by replaying the blocks at start
// (the ABCI handshake), and must arrive at the app hash of every height.
func TestReplayDeterminism(t *testing.T) {
	skipShort(t)
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 4))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	began := time.Now()
	c, l, anchor := startLoaded(ctx, t, seed)
	l.start(ctx)
	time.Sleep(8 * time.Second)
	if err := l.stopAndWait(60 * time.Second); err != nil {
		t.Fatalf("clients: %v", err)
	}
	top := slices.Max(c.heights(ctx)) + 1
	if err := c.waitAll(ctx, top, 30*time.Second, c.nodes...); err != nil {
		t.Fatal(err)
	}

	// Stop the whole network cleanly, so that no copy of a validator's
	// keys can ever meet the network.
	src := c.nodes[rng.IntN(len(c.nodes))]
	for _, m := range c.nodes {
		if _, err := m.terminate(20 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// The height and app hash src reached, from its own state: started
	// alone it is a network of one validator of four, which reports its
	// state but commits nothing more.
	c.start(src)
	s, err := src.api.waitReady(ctx, src.proc, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	srcHeight, srcAppHash := s.Height, s.AppHash
	if _, err := src.terminate(20 * time.Second); err != nil {
		t.Fatal(err)
	}

	type replica struct {
		m    *member
		took time.Duration
	}
	var reps []*replica
	for i := range 2 {
		home := filepath.Join(c.dir, fmt.Sprintf("replay%d", i))
		if out, err := exec.Command("cp", "-a", src.Home, home).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v: %s", src.Home, err, out)
		}
		// The application's state is all under state/ (ledger.Open's
		// directory in district.Run); CometBFT's is under comet/.
		if err := os.RemoveAll(filepath.Join(home, "state")); err != nil {
			t.Fatal(err)
		}
		clearPeers(t, home)
		m := &member{TestnetNode: src.TestnetNode}
		m.Name = fmt.Sprintf("replay%d", i)
		m.Home = home
		m.HTTP = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		m.P2P = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		m.api = newAPI(m.HTTP)
		m.log, m.logPath = memberLog(t, c.dir, m.Name)
		reps = append(reps, &replica{m: m})
	}
	for _, r := range reps {
		t0 := time.Now()
		r.m.proc = startProc(t, r.m.log, "node", "--home", r.m.Home, "--http", r.m.HTTP, "--p2p", "tcp://"+r.m.P2P)
		s, err := r.m.api.waitReady(ctx, r.m.proc, 60*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", r.m.Name, err)
		}
		r.took = time.Since(t0)
		if s.Height != srcHeight || s.AppHash != srcAppHash {
			t.Errorf("%s replayed to height %d app hash %s; %s had height %d app hash %s", r.m.Name, s.Height, s.AppHash, src.Name, srcHeight, srcAppHash)
		}
	}
	// Every height: the replayed state's root is the app hash the next
	// header carries, which the four validators agreed on.
	rc := &consortium{t: t, dir: c.dir}
	for _, r := range reps {
		rc.nodes = append(rc.nodes, r.m)
	}
	proofs := rc.compareStates(ctx, anchor.did, anchor.ackHeight, srcHeight)
	lookups := rc.checkAcked(ctx, l.snapshot())
	rc.checkLogs()
	t.Logf("%s's blocks 1..%d replayed into empty states in %v and %v; %d state proofs and %d tx lookups agree; test took %v",
		src.Name, srcHeight, reps[0].took.Round(time.Millisecond), reps[1].took.Round(time.Millisecond), proofs, lookups, time.Since(began).Round(time.Millisecond))
}

// clearPeers empties persistent_peers in home's imi.toml: a copy of a
// validator's home must dial no one.
func clearPeers(t *testing.T, home string) {
	t.Helper()
	path := filepath.Join(home, district.ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^persistent_peers = .*$`)
	if !re.Match(b) {
		t.Fatalf("%s has no persistent_peers setting", path)
	}
	if err := os.WriteFile(path, re.ReplaceAll(b, []byte(`persistent_peers = ""`)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// residents is the number of residents m counts now.
func residents(ctx context.Context, t *testing.T, m *member) uint64 {
	t.Helper()
	s, err := m.api.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s.Residents
}

// checkMesh checks that every node reports the whole validator set and,
// within limit, a connection to every other node: restarted nodes are
// dialled again.
func (c *consortium) checkMesh(ctx context.Context, limit time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for _, m := range c.nodes {
		for {
			s, err := m.api.status(ctx)
			if err != nil {
				c.t.Fatalf("%s: %v", m.Name, err)
			}
			if len(s.Chain.Validators) != len(c.nodes) {
				c.t.Errorf("%s reports %d validators, want %d", m.Name, len(s.Chain.Validators), len(c.nodes))
			}
			if s.Chain.Peers == len(c.nodes)-1 {
				break
			}
			if time.Now().After(deadline) {
				c.t.Errorf("%s has %d peers, want %d", m.Name, s.Chain.Peers, len(c.nodes)-1)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// startLoaded starts four validators and registers the anchor resident whose
// record the state proofs follow; the load is ready but not started.
func startLoaded(ctx context.Context, t *testing.T, seed uint64) (*consortium, *load, *resident) {
	t.Helper()
	c := newConsortium(t, 4)
	c.startAll(ctx, 60*time.Second)
	l := newLoad(t, c, seed)
	anchor, err := l.registerAnchor(ctx, c.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	return c, l, anchor
}

// nextBlockOnAll waits until every node has the block after the highest any
// of them has now, and returns its height.
func (c *consortium) nextBlockOnAll(ctx context.Context) int64 {
	c.t.Helper()
	final := slices.Max(c.heights(ctx)) + 1
	if err := c.waitAll(ctx, final, 30*time.Second, c.nodes...); err != nil {
		c.t.Fatal(err)
	}
	return final
}
