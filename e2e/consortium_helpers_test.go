package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// consortiumChainID names the networks these tests write.
const consortiumChainID = "imi-e2e-consortium"

// consortium is a network of imi validators on loopback, written by
// district.WriteTestnet, each node a real imi process.
type consortium struct {
	t     *testing.T
	dir   string
	nodes []*member
}

// member is one node of a consortium.
type member struct {
	district.TestnetNode
	api     *api
	log     *os.File
	logPath string
	proc    *proc // the latest start; nil before the first
}

// testSeed returns the seed of the test's random choices, from IMI_E2E_SEED
// if set, and logs it so a failure can be reproduced.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("IMI_E2E_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("IMI_E2E_SEED: %v", err)
		}
	}
	t.Logf("seed %d (IMI_E2E_SEED=%d repeats the random choices)", seed, seed)
	return seed
}

// freeBasePort picks a BasePort for WriteTestnet whose HTTP (base+i) and
// P2P (base+100+i) ports are all free.
func freeBasePort(t *testing.T, n int) int { return freePortBlocks(t, n, 2) }

// freePortBlocks picks a base whose ports base+100*b+i are free for every
// block b below blocks and every node i below n. It draws below Linux's
// ephemeral range (32768 up), from which freePort and the other tests'
// nodes take theirs, at random so that two runs on one host rarely meet.
func freePortBlocks(t *testing.T, n, blocks int) int {
	t.Helper()
	for range 50 {
		base := 20000 + 10*rand.IntN((32768-20000-100*blocks)/10)
		free := true
		var held []net.Listener
		for i := range n {
			for b := range blocks {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+100*b+i))
				if err != nil {
					free = false
					break
				}
				held = append(held, ln)
			}
		}
		for _, ln := range held {
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free range of ports for a testnet")
	return 0
}

// newConsortium writes a network of n validators into a temporary
// directory. Nothing runs yet.
func newConsortium(t *testing.T, n int) *consortium {
	t.Helper()
	dir := t.TempDir()
	base := freeBasePort(t, n)
	nodes, err := district.WriteTestnet(filepath.Join(dir, "net"), district.TestnetOptions{
		Validators: n, ChainID: consortiumChainID, BasePort: base,
		GenesisTime: time.Now().UTC().Truncate(time.Second),
	})
	if err != nil {
		t.Fatalf("couldn't write the testnet: %v", err)
	}
	if len(nodes) != n {
		t.Fatalf("WriteTestnet wrote %d nodes, want %d", len(nodes), n)
	}
	c := &consortium{t: t, dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tn := range nodes {
		if !tn.Validator {
			t.Fatalf("node %s is not a validator", tn.Name)
		}
		m := &member{TestnetNode: tn, api: newAPI(strings.TrimPrefix(tn.HTTP, "http://"))}
		m.log, m.logPath = memberLog(t, dir, tn.Name)
		c.nodes = append(c.nodes, m)
	}
	t.Logf("testnet of %d validators, base port %d, in %s", n, base, dir)
	return c
}

// memberLog is the log file of one node across all its starts; its tail is
// printed if the test fails, and IMI_E2E_LOGDIR keeps a copy.
func memberLog(t *testing.T, dir, name string) (*os.File, string) {
	t.Helper()
	path := filepath.Join(dir, "logs", name+".log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if d := os.Getenv("IMI_E2E_LOGDIR"); d != "" {
			if b, err := os.ReadFile(path); err == nil {
				_ = os.WriteFile(filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_")+"-"+name+".log"), b, 0o600)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(path)
			if len(b) > 5000 {
				b = b[len(b)-5000:]
			}
			t.Logf("tail of %s:\n%s", path, b)
		}
	})
	return f, path
}

// node returns the member that holds authority id's key.
func (c *consortium) node(id string) *member {
	c.t.Helper()
	for _, m := range c.nodes {
		if m.AuthorityID == id {
			return m
		}
	}
	c.t.Fatalf("no node of authority %s", id)
	return nil
}

// start starts (or restarts) m.
func (c *consortium) start(m *member) {
	c.t.Helper()
	fmt.Fprintf(m.log, "---- e2e: start %s at %s\n", m.Name, time.Now().Format(time.RFC3339Nano))
	m.proc = startProc(c.t, m.log, "node", "--home", m.Home)
}

// startAll starts every node and waits until each has committed a block.
func (c *consortium) startAll(ctx context.Context, limit time.Duration) {
	c.t.Helper()
	for _, m := range c.nodes {
		c.start(m)
	}
	c.waitReady(ctx, limit, c.nodes...)
}

// waitReady waits until each of ms answers /v1/status with a height.
func (c *consortium) waitReady(ctx context.Context, limit time.Duration, ms ...*member) {
	c.t.Helper()
	for _, m := range ms {
		if _, err := m.api.waitReady(ctx, m.proc, limit); err != nil {
			c.t.Fatalf("%s: %v", m.Name, err)
		}
	}
}

// note writes a line into m's log, so a post-mortem sees what the test did.
func (m *member) note(format string, args ...any) {
	fmt.Fprintf(m.log, "---- e2e: %s at %s\n", fmt.Sprintf(format, args...), time.Now().Format(time.RFC3339Nano))
}

func (m *member) kill() {
	m.note("SIGKILL %s", m.Name)
	m.proc.kill()
}

func (m *member) pause() error {
	m.note("SIGSTOP %s", m.Name)
	return m.proc.cmd.Process.Signal(syscall.SIGSTOP)
}

func (m *member) resume() error {
	m.note("SIGCONT %s", m.Name)
	return m.proc.cmd.Process.Signal(syscall.SIGCONT)
}

// terminate sends SIGTERM and waits up to limit for a clean exit.
func (m *member) terminate(limit time.Duration) (time.Duration, error) {
	m.note("SIGTERM %s", m.Name)
	p := m.proc
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-p.done:
		if code := p.state.ExitCode(); code != 0 {
			return time.Since(start), fmt.Errorf("%s exited with code %d after SIGTERM", m.Name, code)
		}
		return time.Since(start), nil
	case <-time.After(limit):
		p.kill()
		return time.Since(start), fmt.Errorf("%s did not exit within %v of SIGTERM", m.Name, limit)
	}
}

// quickStatus asks m for its status, giving up after limit (a stopped
// process never answers).
func (m *member) quickStatus(ctx context.Context, limit time.Duration) (*httpapi.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return m.api.status(ctx)
}

// heights returns each node's committed height, -1 where it does not answer.
func (c *consortium) heights(ctx context.Context) []int64 {
	out := make([]int64, len(c.nodes))
	var wg sync.WaitGroup
	for i, m := range c.nodes {
		wg.Go(func() {
			out[i] = -1
			if s, err := m.quickStatus(ctx, 500*time.Millisecond); err == nil {
				out[i] = s.Height
			}
		})
	}
	wg.Wait()
	return out
}

// waitAll waits until every one of ms has committed height h.
func (c *consortium) waitAll(ctx context.Context, h int64, limit time.Duration, ms ...*member) error {
	deadline := time.Now().Add(limit)
	for _, m := range ms {
		left := time.Until(deadline)
		if left <= 0 {
			left = time.Millisecond
		}
		if _, err := m.api.waitHeight(ctx, h, left); err != nil {
			return fmt.Errorf("%s: %w", m.Name, err)
		}
	}
	return nil
}

// blockView is what a node says about one block: its header, exactly as
// served, and the block id its commit signs.
type blockView struct {
	header  json.RawMessage
	blockID string
	appHash string
}

func (a *api) block(ctx context.Context, h int64) (blockView, error) {
	var r struct {
		Header json.RawMessage `json:"header"`
		Commit struct {
			Height  string `json:"height"`
			BlockID struct {
				Hash string `json:"hash"`
			} `json:"block_id"`
		} `json:"commit"`
	}
	if err := a.getJSON(ctx, fmt.Sprintf("/v1/blocks/%d/commit", h), &r); err != nil {
		return blockView{}, err
	}
	var hdr struct {
		Height  string `json:"height"`
		AppHash string `json:"app_hash"`
	}
	if err := json.Unmarshal(r.Header, &hdr); err != nil {
		return blockView{}, err
	}
	if want := strconv.FormatInt(h, 10); hdr.Height != want || r.Commit.Height != want {
		return blockView{}, fmt.Errorf("asked for block %d, got header %s and commit %s", h, hdr.Height, r.Commit.Height)
	}
	if r.Commit.BlockID.Hash == "" || hdr.AppHash == "" {
		return blockView{}, fmt.Errorf("block %d: no block hash or app hash in %s", h, r.Header)
	}
	return blockView{header: r.Header, blockID: r.Commit.BlockID.Hash, appHash: hdr.AppHash}, nil
}

// compareChains checks that every node serves the same block (the same
// header, so the same app hash, and the same block hash) at every height
// from 1 to upTo. A fork or a diverging app shows as the first height where
// two nodes disagree. It returns the number of heights compared.
func (c *consortium) compareChains(ctx context.Context, upTo int64) int {
	c.t.Helper()
	bad := 0
	for h := int64(1); h <= upTo; h++ {
		var first blockView
		for i, m := range c.nodes {
			b, err := m.api.block(ctx, h)
			if err != nil {
				c.t.Fatalf("%s: block %d: %v", m.Name, h, err)
			}
			if i == 0 {
				first = b
				continue
			}
			if b.blockID != first.blockID || !bytes.Equal(b.header, first.header) {
				bad++
				c.t.Errorf("FORK at height %d: %s has block %s (app hash %s), %s has %s (app hash %s)\n%s\n%s",
					h, c.nodes[0].Name, first.blockID, first.appHash, m.Name, b.blockID, b.appHash, first.header, b.header)
			}
		}
		if bad >= 3 {
			c.t.FailNow()
		}
	}
	return int(upTo)
}

// compareStates checks every node's own state at every height from from to
// upTo-1 against the app hash the next block's header carries: the state
// root in a Merkle proof of anchor's DID record must be that hash. Headers
// are agreed by consensus; this shows that each node's application computed
// that state itself. It returns the number of proofs checked.
func (c *consortium) compareStates(ctx context.Context, anchor string, from, upTo int64) int {
	c.t.Helper()
	n, bad := 0, 0
	for h := from; h < upTo; h++ {
		for _, m := range c.nodes {
			if err := m.api.proofMatchesHeader(ctx, anchor, h); err != nil {
				bad++
				c.t.Errorf("%s: %v", m.Name, err)
			}
			n++
		}
		if bad >= 3 {
			c.t.FailNow()
		}
	}
	return n
}

// checkLogs fails the test on log lines no healthy node writes.
func (c *consortium) checkLogs() {
	c.t.Helper()
	for _, m := range c.nodes {
		b, err := os.ReadFile(m.logPath)
		if err != nil {
			c.t.Error(err)
			continue
		}
		for _, bad := range []string{"CONSENSUS FAILURE", "panic:", "fatal error:", "wrong Block.Header.AppHash", "conflicting votes", "DuplicateVoteEvidence", "DATA RACE"} {
			if i := bytes.Index(b, []byte(bad)); i >= 0 {
				end := min(len(b), i+1500)
				c.t.Errorf("%s logged %q:\n%s", m.Name, bad, b[max(0, i-500):end])
			}
		}
	}
}

// The kinds of transaction in the load.
const (
	kindRegister = "register_resident"
	kindReserve  = "reserve_status"
	kindRevoke   = "revoke"
)

// loadTx is one transaction of the load, signed once: if the outcome of a
// submission is unknown, these same bytes go again, to whichever node.
type loadTx struct {
	kind     string
	signer   string
	lane     uint32
	seq      uint64
	raw      []byte
	hash     string
	resident string   // kindRegister: the DID registered
	indices  []uint32 // kindReserve, kindRevoke: the status-list entries

	// Filled in once a node reported the transaction committed.
	ackHeight int64
	ackCode   ledger.Code
	ackVia    string // "post" (a 200 answer) or "query" (GET /v1/txs)
	ackNode   string
}

// signer is an authority's signing key and DID.
type signer struct {
	key key.Private
	did string
}

// load is a steady stream of mixed transactions sent round-robin to the
// nodes' APIs: registrations by the registrar (cc-psb) on several lanes,
// and credential-status reservations and revocations by cc-hrss. Each
// client has its own lane and one transaction in flight.
type load struct {
	c       *consortium
	chainID string
	seed    uint64
	reg     registrar
	issuer  signer

	// gate lets pause wait for every in-flight transaction to land and
	// stop new ones: each client holds a read lock for one transaction.
	gate     sync.RWMutex
	stop     chan struct{}
	wg       sync.WaitGroup
	failures chan error

	mu        sync.Mutex
	txs       []*loadTx
	taken     map[uint32]bool // status-list indices reserved
	latencies []time.Duration // of 200 answers, submission to answer

	acked, registered                                                 atomic.Int64
	posts, retries, netErrors, timeouts, pending, busy, serverErrs, q atomic.Int64
	behind                                                            atomic.Int64

	notes []string // unusual answers, for the test log
}

// submitTimeout bounds one submission to one node, so a stopped node costs
// a client a few seconds, not the API's 30 s commit wait.
const submitTimeout = 6 * time.Second

// Lanes of the load, apart from the ones the tests use themselves.
const (
	registrarLanes = 3
	issuerLanes    = 2
	anchorLane     = 200
)

func newLoad(t *testing.T, c *consortium, seed uint64) *load {
	t.Helper()
	psb := c.node(district.RegistrarID)
	hrss := c.node("cc-hrss")
	k, err := key.ReadFile(district.KeyFile(hrss.Home, "cc-hrss"))
	if err != nil {
		t.Fatal(err)
	}
	return &load{
		c: c, chainID: consortiumChainID, seed: seed,
		reg:      loadRegistrar(t, psb.Home),
		issuer:   signer{key: k, did: didOf(k.Public())},
		stop:     make(chan struct{}),
		failures: make(chan error, registrarLanes+issuerLanes),
		taken:    map[uint32]bool{},
	}
}

// start runs the clients until stopAndWait.
func (l *load) start(ctx context.Context) {
	n := len(l.c.nodes)
	for lane := range uint32(registrarLanes) {
		rng := rand.New(rand.NewPCG(l.seed, uint64(lane)+1000))
		l.wg.Go(func() {
			l.client(ctx, int(lane)%n, rng, func(seq uint64) (*loadTx, error) {
				r, err := newResident(l.reg, l.chainID, lane, seq, "440604", int(lane)*100000+int(seq))
				if err != nil {
					return nil, err
				}
				return &loadTx{kind: kindRegister, signer: l.reg.did, lane: lane, seq: seq, raw: r.raw, hash: r.hash, resident: r.did}, nil
			})
		})
	}
	for lane := range uint32(issuerLanes) {
		rng := rand.New(rand.NewPCG(l.seed, uint64(lane)+2000))
		var open []uint32 // reserved by this client, not revoked
		l.wg.Go(func() {
			l.client(ctx, (registrarLanes+int(lane))%n, rng, func(seq uint64) (*loadTx, error) {
				var body tx.Body
				x := &loadTx{signer: l.issuer.did, lane: lane, seq: seq}
				if len(open) > 0 && rng.IntN(3) == 0 {
					i := rng.IntN(len(open))
					idx := open[i]
					open = slices.Delete(open, i, i+1)
					x.kind, x.indices = kindRevoke, []uint32{idx}
					body = &tx.Revoke{StatusRef: tx.StatusRef{List: 0, Index: idx}}
				} else {
					x.kind, x.indices = kindReserve, l.freshIndices(rng, 1+rng.IntN(3))
					open = append(open, x.indices...)
					body = &tx.ReserveStatus{Type: "social_insurance", List: 0, Indices: x.indices}
				}
				t, err := tx.New(l.chainID, l.issuer.did, lane, seq, body)
				if err != nil {
					return nil, err
				}
				t.Sign(l.issuer.key)
				x.raw = t.Encode()
				x.hash = tx.HashHex(x.raw)
				return x, nil
			})
		})
	}
}

// freshIndices draws n status-list indices no one reserved yet.
func (l *load) freshIndices(rng *rand.Rand, n int) []uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint32
	for len(out) < n {
		i := rng.Uint32N(ledger.StatusListSize)
		if !l.taken[i] {
			l.taken[i] = true
			out = append(out, i)
		}
	}
	return out
}

// client signs and lands one transaction after another on its lane, each
// first sent to the next node in turn.
func (l *load) client(ctx context.Context, first int, rng *rand.Rand, next func(seq uint64) (*loadTx, error)) {
	for seq := uint64(0); ; seq++ {
		select {
		case <-l.stop:
			return
		default:
		}
		if err := func() error {
			l.gate.RLock()
			defer l.gate.RUnlock()
			x, err := next(seq)
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.txs = append(l.txs, x)
			l.mu.Unlock()
			if err := l.land(ctx, x, (first+int(seq))%len(l.c.nodes), rng); err != nil {
				return err
			}
			l.acked.Add(1)
			if x.kind == kindRegister && x.ackCode == ledger.OK {
				l.registered.Add(1)
			}
			return nil
		}(); err != nil {
			l.failures <- err
			return
		}
	}
}

// land returns once x is known committed, with ack* filled in, or with an
// error on a refusal or when ctx ends. Attempts go round the nodes.
func (l *load) land(ctx context.Context, x *loadTx, first int, rng *rand.Rand) error {
	n := len(l.c.nodes)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s lane %d seq %d (%s) not known committed before the deadline: %w", x.kind, x.lane, x.seq, x.hash, err)
		}
		m := l.c.nodes[(first+attempt)%n]
		if attempt > 0 {
			l.retries.Add(1)
			time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond)
			// In half of the cases ask instead of resending: both are
			// correct ways to learn the outcome.
			if rng.IntN(2) == 0 {
				if done, err := l.query(ctx, m, x); err != nil || done {
					return err
				}
			}
		}
		l.posts.Add(1)
		rctx, cancel := context.WithTimeout(ctx, submitTimeout)
		began := time.Now()
		code, body, err := m.api.do(rctx, "POST", "/v1/txs", x.raw)
		timedOut := rctx.Err() != nil
		cancel()
		if err != nil {
			if timedOut {
				l.timeouts.Add(1)
			} else {
				l.netErrors.Add(1)
			}
			continue
		}
		switch code {
		case http.StatusOK:
			var s httpapi.SubmitResponse
			if err := json.Unmarshal(body, &s); err != nil {
				return fmt.Errorf("%s: %s lane %d seq %d: bad 200 answer %q: %v", m.Name, x.kind, x.lane, x.seq, body, err)
			}
			if s.Status != "committed" || !strings.EqualFold(s.Hash, x.hash) || s.Height <= 0 {
				return fmt.Errorf("%s: %s lane %d seq %d: 200 answer %+v does not acknowledge %s", m.Name, x.kind, x.lane, x.seq, s, x.hash)
			}
			l.mu.Lock()
			x.ackHeight, x.ackCode, x.ackVia, x.ackNode = s.Height, ledger.OK, "post", m.Name
			l.latencies = append(l.latencies, time.Since(began))
			l.mu.Unlock()
			return nil
		case http.StatusAccepted:
			l.pending.Add(1)
			continue
		case http.StatusServiceUnavailable:
			l.busy.Add(1)
			continue
		case http.StatusInternalServerError, http.StatusBadGateway:
			l.serverErrs.Add(1)
			continue
		}
		p := problemOf(body)
		if p == nil {
			return fmt.Errorf("%s: %s lane %d seq %d: answer %d %q", m.Name, x.kind, x.lane, x.seq, code, body)
		}
		// A refusal: either the committed outcome, or CheckTx's. Only the
		// committed record tells them apart.
		if done, err := l.query(ctx, m, x); err != nil || done {
			return err
		}
		if p.Reason == "sequence_ahead" || p.Reason == "bad_sequence" {
			// Not committed on this node, and out of sequence for it: the
			// node is behind (restarted, catching up) and has not seen x's
			// predecessor on the lane yet, or, which would be a bug, another
			// transaction took x's place. Try the next node; the final
			// checks catch the bug.
			l.behind.Add(1)
			h := int64(-1)
			if s, err := m.quickStatus(ctx, time.Second); err == nil {
				h = s.Height
			}
			l.note("%s (at height %d) refused %s lane %d seq %d as bad_sequence: %s", m.Name, h, x.kind, x.lane, x.seq, p.Detail)
			continue
		}
		return fmt.Errorf("%w: %s: %s lane %d seq %d (%s): %d %s: %s", errRefused, m.Name, x.kind, x.lane, x.seq, x.hash, code, p.Reason, p.Detail)
	}
}

// query asks m whether x is committed.
func (l *load) query(ctx context.Context, m *member, x *loadTx) (bool, error) {
	l.q.Add(1)
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	res, found, err := m.api.txResult(qctx, x.hash)
	if err != nil || !found {
		return false, nil // down, or not (yet) committed there
	}
	if res.Code != ledger.OK {
		return false, fmt.Errorf("%w: %s: %s lane %d seq %d (%s) committed with code %d (%s): %s", errRefused, m.Name, x.kind, x.lane, x.seq, x.hash, res.Code, res.Reason, res.Log)
	}
	l.mu.Lock()
	x.ackHeight, x.ackCode, x.ackVia, x.ackNode = res.Height, res.Code, "query", m.Name
	l.mu.Unlock()
	return true, nil
}

// note keeps an unusual answer for the test log (the first 20). The
// clients can't log themselves: they may outlive a failed test.
func (l *load) note(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.notes) < 20 {
		l.notes = append(l.notes, fmt.Sprintf(format, args...))
	}
}

// failed returns a client's error, if one failed.
func (l *load) failed() error {
	select {
	case err := <-l.failures:
		return err
	default:
		return nil
	}
}

// pause waits until every client's transaction in flight is known
// committed, and holds new ones back until resume.
func (l *load) pause(limit time.Duration) error {
	locked := make(chan struct{})
	go func() { l.gate.Lock(); close(locked) }()
	select {
	case <-locked:
		return nil
	case <-time.After(limit):
		return fmt.Errorf("transactions in flight not landed within %v", limit)
	}
}

func (l *load) resume() { l.gate.Unlock() }

// stopAndWait stops the clients once their transaction in flight landed.
func (l *load) stopAndWait(limit time.Duration) error {
	close(l.stop)
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		return fmt.Errorf("the clients did not finish within %v", limit)
	}
	close(l.failures)
	var errs []error
	for err := range l.failures {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// snapshot returns the transactions signed so far; with the clients paused
// or stopped, every one is acknowledged.
func (l *load) snapshot() []*loadTx {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.txs)
}

// summary describes the load for the test log.
func (l *load) summary(took time.Duration) string {
	l.mu.Lock()
	lat := slices.Clone(l.latencies)
	kinds := map[string]int{}
	for _, x := range l.txs {
		kinds[x.kind]++
	}
	notes := strings.Join(l.notes, "\n  ")
	l.mu.Unlock()
	if notes != "" {
		notes = "\n  " + notes
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Millisecond)
	}
	return fmt.Sprintf("%d transactions acknowledged in %v (%.1f/s: %d registrations, %d reservations, %d revocations); "+
		"answer latency of 200s p50 %v p99 %v; %d submissions, %d resends, %d transport errors, %d client timeouts, %d pending (202), %d busy, %d 5xx, %d queries, %d bad_sequence from nodes behind%s",
		l.acked.Load(), took.Round(time.Millisecond), float64(l.acked.Load())/took.Seconds(),
		kinds[kindRegister], kinds[kindReserve], kinds[kindRevoke], pct(0.5), pct(0.99),
		l.posts.Load(), l.retries.Load(), l.netErrors.Load(), l.timeouts.Load(), l.pending.Load(), l.busy.Load(), l.serverErrs.Load(), l.q.Load(), l.behind.Load(), notes)
}

// checkAcked checks that every acknowledged transaction of txs is committed
// on every node of ms at the height and with the result it was
// acknowledged with. It returns the number of lookups.
func (c *consortium) checkAcked(ctx context.Context, txs []*loadTx, ms ...*member) int {
	c.t.Helper()
	if len(ms) == 0 {
		ms = c.nodes
	}
	n, bad := 0, 0
	for _, x := range txs {
		if x.ackHeight == 0 {
			continue
		}
		for _, m := range ms {
			n++
			res, found, err := m.api.txResult(ctx, x.hash)
			switch {
			case err != nil:
				c.t.Fatalf("%s: %v", m.Name, err)
			case !found:
				c.t.Errorf("LOST on %s: %s %s (lane %d seq %d), acknowledged by %s (%s) at height %d, is not found", m.Name, x.kind, x.hash, x.lane, x.seq, x.ackNode, x.ackVia, x.ackHeight)
				bad++
			case res.Height != x.ackHeight || res.Code != x.ackCode:
				c.t.Errorf("%s says %s %s is at height %d with code %d; %s acknowledged height %d code %d", m.Name, x.kind, x.hash, res.Height, res.Code, x.ackNode, x.ackHeight, x.ackCode)
				bad++
			}
		}
		if bad >= 10 {
			c.t.FailNow()
		}
	}
	return n
}

// checkOnce checks, with the load paused or stopped and every node at the
// same height, that nothing was applied twice or lost: each node counts as
// many residents as registrations were acknowledged (plus baseResidents),
// each lane's next sequence number is the number of transactions signed on
// it, and a revoked entry is revoked on every node.
func (c *consortium) checkOnce(ctx context.Context, l *load, baseResidents uint64) {
	c.t.Helper()
	txs := l.snapshot()
	type laneKey struct {
		signer string
		lane   uint32
	}
	perLane := map[laneKey]uint64{}
	var revoked []uint32
	for _, x := range txs {
		if x.ackHeight == 0 {
			c.t.Errorf("%s lane %d seq %d was signed but never acknowledged", x.kind, x.lane, x.seq)
		}
		perLane[laneKey{x.signer, x.lane}]++
		if x.kind == kindRevoke {
			revoked = append(revoked, x.indices...)
		}
	}
	want := baseResidents + uint64(l.registered.Load())
	for _, m := range c.nodes {
		s, err := m.api.status(ctx)
		if err != nil {
			c.t.Fatalf("%s: %v", m.Name, err)
		}
		if s.Residents != want {
			c.t.Errorf("%s counts %d residents at height %d; %d registrations were acknowledged (on top of %d): applied twice or lost", m.Name, s.Residents, s.Height, want-baseResidents, baseResidents)
		}
		for lk, n := range perLane {
			next, err := m.api.nextSeq(ctx, lk.signer, lk.lane)
			if err != nil {
				c.t.Fatalf("%s: %v", m.Name, err)
			}
			if next != n {
				c.t.Errorf("%s: lane %d of %s: next sequence %d, but %d transactions were signed and acknowledged on it", m.Name, lk.lane, lk.signer, next, n)
			}
		}
		// A sample of the revocations, as each is one request per node.
		for i, idx := range revoked {
			if i >= 10 {
				break
			}
			var e ledger.StatusEntry
			if err := m.api.getJSON(ctx, fmt.Sprintf("/v1/status-lists/cc-hrss/0/%d", idx), &e); err != nil {
				c.t.Errorf("%s: status entry %d: %v", m.Name, idx, err)
			} else if e.Status != ledger.StatusInvalid {
				c.t.Errorf("%s: entry %d is in status %d, want revoked", m.Name, idx, e.Status)
			}
		}
	}
}

// resubmit sends acknowledged transactions again, each to a random node:
// the answer must be the original commit, never a second application.
func (c *consortium) resubmit(ctx context.Context, rng *rand.Rand, txs []*loadTx, n int) {
	c.t.Helper()
	for range n {
		if len(txs) == 0 {
			return
		}
		x := txs[rng.IntN(len(txs))]
		m := c.nodes[rng.IntN(len(c.nodes))]
		code, body, err := m.api.do(ctx, "POST", "/v1/txs", x.raw)
		if err != nil {
			c.t.Fatalf("%s: %v", m.Name, err)
		}
		var s httpapi.SubmitResponse
		if code != http.StatusOK || json.Unmarshal(body, &s) != nil || s.Status != "committed" || s.Height != x.ackHeight || !strings.EqualFold(s.Hash, x.hash) {
			c.t.Errorf("resubmitting %s %s to %s: %d %s, want the original commit at height %d", x.kind, x.hash, m.Name, code, body, x.ackHeight)
		}
	}
}

// registerAnchor registers a resident on its own lane through m, before the
// load: its DID record is what the state proofs look at.
func (l *load) registerAnchor(ctx context.Context, m *member) (*resident, error) {
	r, err := newResident(l.reg, l.chainID, anchorLane, 0, "440605", 0)
	if err != nil {
		return nil, err
	}
	la := &lander{api: m.api}
	if err := la.land(ctx, r, rand.New(rand.NewPCG(l.seed, 7))); err != nil {
		return nil, err
	}
	return r, nil
}
