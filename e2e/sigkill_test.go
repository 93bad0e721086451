package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/tx"
)

func didOf(k key.Public) string { return did.FromKey(k).String() }

var handshakeRe = regexp.MustCompile(`ABCI Replay Blocks.*appHeight=(\d+) storeHeight=(\d+) stateHeight=(\d+)`)

// lastHandshake reports the heights the latest start found: the app's, the
// block store's and CometBFT's state's. They differ (midBlock) when the kill
// hit a block between its steps.
func lastHandshake(logPath string) (desc string, midBlock bool) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return err.Error(), false
	}
	m := handshakeRe.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return "not logged", false
	}
	last := m[len(m)-1]
	midBlock = !bytes.Equal(last[1], last[2]) || !bytes.Equal(last[2], last[3])
	return fmt.Sprintf("app=%s store=%s state=%s", last[1], last[2], last[3]), midBlock
}

// pollNewHeight returns as soon as the node commits a new height.
func (a *api) pollNewHeight(ctx context.Context, limit time.Duration) error {
	s, err := a.status(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		n, err := a.status(ctx)
		if err == nil && n.Height > s.Height {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("no new height within %v", limit)
}

// resident is one synthetic resident's registration, signed once: if the
// outcome of a submission is unknown, these same bytes are sent again.
type resident struct {
	signer string
	lane   uint32
	seq    uint64
	did    string
	key    key.Public
	raw    []byte
	hash   string

	ackHeight int64  // height of the commit, once known
	ackVia    string // "post" (a 200 committed answer) or "query" (GET /v1/txs)
}

// newResident makes a resident with fresh keys and a synthetic ID number
// (distinct for each n), and the registrar's signed registration on lane at seq.
func newResident(reg registrar, chainID string, lane uint32, seq uint64, region string, n int) (*resident, error) {
	k, err := key.Generate()
	if err != nil {
		return nil, err
	}
	rk, err := key.Generate()
	if err != nil {
		return nil, err
	}
	born := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n/1000)
	num, err := idnumber.Example(region, born.Year(), int(born.Month()), born.Day(), n%1000)
	if err != nil {
		return nil, err
	}
	r := &resident{signer: reg.did, lane: lane, seq: seq, did: didOf(k.Public()), key: k.Public()}
	x, err := tx.New(chainID, reg.did, lane, seq, &tx.RegisterResident{
		DID: r.did, Key: r.key, RecoveryHash: key.RecoveryHash(rk.Public()),
		UniquenessTag: idnumber.UniquenessTag(reg.hmac, num), Assurance: "high",
	})
	if err != nil {
		return nil, err
	}
	x.Sign(reg.key)
	r.raw = x.Encode()
	r.hash = tx.HashHex(r.raw)
	return r, nil
}

// lander gets signed transactions committed through a node that may be
// killed at any moment. It never signs anything: it only resends the bytes
// it was given, or asks the node whether they landed.
type lander struct {
	api *api

	netErrors, retries, queries, pending, busy, serverErrors atomic.Int64
}

// errRefused is a definitive refusal of a transaction.
var errRefused = errors.New("refused")

// land returns once r is known to be committed, filling in ackHeight and
// ackVia, or with an error on a refusal or when ctx ends.
func (l *lander) land(ctx context.Context, r *resident, rng *rand.Rand) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("lane %d seq %d (%s) not known committed before the deadline: %w", r.lane, r.seq, r.hash, err)
		}
		if attempt > 0 {
			l.retries.Add(1)
			// Back off a little, then in half of the cases ask the node
			// instead of resending: both are correct ways to learn the outcome.
			time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond)
			if rng.IntN(2) == 0 {
				done, err := l.query(ctx, r)
				if err != nil {
					return err
				}
				if done {
					return nil
				}
			}
		}
		code, body, err := l.api.do(ctx, "POST", "/v1/txs", r.raw)
		if err != nil {
			l.netErrors.Add(1)
			continue
		}
		switch code {
		case http.StatusOK:
			var s httpapi.SubmitResponse
			if err := json.Unmarshal(body, &s); err != nil {
				return fmt.Errorf("lane %d seq %d: bad 200 answer %q: %v", r.lane, r.seq, body, err)
			}
			if s.Status != "committed" || s.Hash != r.hash || s.Height <= 0 {
				return fmt.Errorf("lane %d seq %d: 200 answer %+v does not acknowledge %s", r.lane, r.seq, s, r.hash)
			}
			r.ackHeight, r.ackVia = s.Height, "post"
			return nil
		case http.StatusAccepted:
			l.pending.Add(1)
			continue
		case http.StatusServiceUnavailable:
			l.busy.Add(1)
			continue
		case http.StatusInternalServerError, http.StatusBadGateway:
			l.serverErrors.Add(1)
			continue
		}
		p := problemOf(body)
		if p == nil {
			return fmt.Errorf("lane %d seq %d: answer %d %q", r.lane, r.seq, code, body)
		}
		return fmt.Errorf("%w: lane %d seq %d (%s): %d %s: %s", errRefused, r.lane, r.seq, r.hash, code, p.Reason, p.Detail)
	}
}

// query asks the node whether r landed, by its hash and the lane's sequence.
// A sequence number past r's without r's hash committed would mean another
// transaction took r's place: that is an error, never retried.
func (l *lander) query(ctx context.Context, r *resident) (bool, error) {
	l.queries.Add(1)
	res, found, err := l.api.txResult(ctx, r.hash)
	if err != nil {
		return false, nil // the node is down; try again later
	}
	if !found {
		next, err := l.api.nextSeq(ctx, r.signer, r.lane)
		if err != nil || next <= r.seq {
			return false, nil
		}
		// The sequence moved on; look once more, the commit may have
		// happened between the two reads.
		if res, found, err = l.api.txResult(ctx, r.hash); err != nil {
			return false, nil
		}
		if !found {
			// next counts transactions still in the mempool too; that is
			// only r itself, as nobody else signs on this lane.
			return false, nil
		}
	}
	if res.Code != 0 {
		return false, fmt.Errorf("%w: lane %d seq %d (%s) committed with code %d (%s): %s", errRefused, r.lane, r.seq, r.hash, res.Code, res.Reason, res.Log)
	}
	r.ackHeight, r.ackVia = res.Height, "query"
	return true, nil
}

func TestNothingLostUnderSIGKILL(t *testing.T) {
	skipShort(t)
	const (
		lanes      = 8
		minRounds  = 5
		maxRounds  = 12
		killPhase  = 30 * time.Second
		readyLimit = 30 * time.Second
	)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("IMI_E2E_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (IMI_E2E_SEED=%d reproduces the kill schedule)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	addr := initNode(t, home)
	// At debug, the log shows how each start found the chain (the ABCI
	// handshake), for the report and for a post-mortem.
	setConfig(t, home, "log_level", "debug")
	logf, logPath := nodeLog(t, dir)
	a := newAPI(addr)
	start := func() (*proc, *httpapi.StatusResponse, time.Duration) {
		t.Helper()
		began := time.Now()
		p := startProc(t, logf, "node", "--home", home)
		st, err := a.waitReady(ctx, p, readyLimit)
		if err != nil {
			t.Fatal(err)
		}
		return p, st, time.Since(began)
	}
	node, st, _ := start()
	reg := loadRegistrar(t, home)
	chainID := st.ChainID
	l := &lander{api: a}

	// An anchor resident, registered before the load, whose DID record the
	// proofs below use to look at the state of every height.
	anchor, err := newResident(reg, chainID, 200, 0, "440605", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.land(ctx, anchor, rng); err != nil {
		t.Fatal(err)
	}
	t.Logf("anchor %s registered at height %d", anchor.did, anchor.ackHeight)
	if _, err := a.waitHeight(ctx, anchor.ackHeight+2, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	// The clients: one lane each, one transaction in flight at a time.
	var (
		mu       sync.Mutex
		all      []*resident // every transaction ever signed
		acked    atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		failures = make(chan error, lanes)
	)
	for lane := range uint32(lanes) {
		wg.Add(1)
		lrng := rand.New(rand.NewPCG(seed, uint64(lane)+100))
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := newResident(reg, chainID, lane, uint64(i), "440604", int(lane)*10000+i)
				if err != nil {
					failures <- err
					return
				}
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
				if err := l.land(ctx, r, lrng); err != nil {
					failures <- err
					return
				}
				acked.Add(1)
			}
		}()
	}

	// The kill rounds.
	type round struct {
		ackedAtKill     int64
		heightAtKill    int64
		heightAfter     int64
		restart         time.Duration
		earlyKills      int
		checkedAppHashH int64
		aimed           bool
		handshake       string
		midBlock        bool
	}
	var rounds []round
	began := time.Now()
	for len(rounds) < minRounds || (time.Since(began) < killPhase && len(rounds) < maxRounds) {
		select {
		case err := <-failures:
			t.Fatalf("a client failed: %v", err)
		default:
		}
		// Let the clients run for a random while.
		time.Sleep(time.Duration(300+rng.IntN(2000)) * time.Millisecond)
		before, err := a.status(ctx)
		if err != nil {
			t.Fatalf("round %d: status before the kill: %v", len(rounds)+1, err)
		}
		// What the state looked like at a committed height, to compare
		// after the restart: the chain's header app hash from /v1/status,
		// and the anchor's record with its proof at the height before.
		hChain, appHashBefore := before.Chain.LatestHeight, before.Chain.LatestAppHash
		hState := hChain - 1
		_, resolvedBefore, err := a.resolve(ctx, anchor.did, hState, true)
		if err != nil {
			t.Fatalf("round %d: resolve the anchor at %d: %v", len(rounds)+1, hState, err)
		}
		// Then kill at a random moment: in two rounds of three, aimed at the
		// next block's proposal, execution and commit, which come about one
		// timeout_commit (500ms) after a commit is seen and take tens of
		// milliseconds; otherwise anywhere.
		aimed := len(rounds)%3 != 0
		if aimed {
			if err := a.pollNewHeight(ctx, 5*time.Second); err != nil {
				t.Fatalf("round %d: %v", len(rounds)+1, err)
			}
			time.Sleep(time.Duration(490+rng.IntN(40)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		}
		rd := round{ackedAtKill: acked.Load(), heightAtKill: before.Height, checkedAppHashH: hChain, aimed: aimed}
		node.kill()

		// Sometimes kill it again while it starts up, replaying the chain.
		for rng.IntN(4) == 0 && rd.earlyKills < 2 {
			time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
			p := startProc(t, logf, "node", "--home", home)
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			p.kill()
			rd.earlyKills++
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		var after *httpapi.StatusResponse
		node, after, rd.restart = start()
		rd.heightAfter = after.Height
		rd.handshake, rd.midBlock = lastHandshake(logPath)
		if after.Height < before.Height {
			t.Errorf("round %d: the node came back at height %d, below %d before the kill", len(rounds)+1, after.Height, before.Height)
		}
		// The same height, the same app hash, the same state.
		hdr, err := a.headerAppHash(ctx, hChain)
		if err != nil {
			t.Fatalf("round %d: %v", len(rounds)+1, err)
		}
		if fmt.Sprintf("%x", hdr) != appHashBefore {
			t.Errorf("round %d: block %d's app hash was %s before the kill and is %x after", len(rounds)+1, hChain, appHashBefore, hdr)
		}
		_, resolvedAfter, err := a.resolve(ctx, anchor.did, hState, true)
		if err != nil {
			t.Fatalf("round %d: resolve the anchor at %d after the restart: %v", len(rounds)+1, hState, err)
		}
		if !bytes.Equal(resolvedBefore, resolvedAfter) {
			t.Errorf("round %d: the state at height %d changed across the restart:\nbefore %s\nafter  %s", len(rounds)+1, hState, resolvedBefore, resolvedAfter)
		}
		if err := a.proofMatchesHeader(ctx, anchor.did, hState); err != nil {
			t.Errorf("round %d: %v", len(rounds)+1, err)
		}
		// The chain moves on from there.
		if _, err := a.waitHeight(ctx, after.Height+2, 20*time.Second); err != nil {
			t.Fatalf("round %d: the chain did not resume: %v", len(rounds)+1, err)
		}
		rounds = append(rounds, rd)
	}
	killPhaseTook := time.Since(began)

	// Let the clients settle their last transactions on a running node.
	time.Sleep(time.Second)
	close(stop)
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		t.Fatal("the clients did not finish")
	}
	close(failures)
	for err := range failures {
		t.Errorf("a client failed: %v", err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every signed transaction was acknowledged (the clients stop only after
	// their current one is known committed): check each against the node.
	final, err := a.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perLane := make([]uint64, lanes)
	viaQuery := 0
	dids := map[string]bool{anchor.did: true}
	for _, r := range all {
		if r.ackHeight == 0 {
			t.Errorf("lane %d seq %d was signed but never acknowledged", r.lane, r.seq)
			continue
		}
		if r.ackVia == "query" {
			viaQuery++
		}
		res, found, err := a.txResult(ctx, r.hash)
		switch {
		case err != nil:
			t.Fatal(err)
		case !found:
			t.Errorf("LOST: acknowledged tx %s (lane %d seq %d, height %d) is not found", r.hash, r.lane, r.seq, r.ackHeight)
			continue
		case res.Code != 0:
			t.Errorf("acknowledged tx %s has code %d (%s)", r.hash, res.Code, res.Reason)
		case res.Height != r.ackHeight:
			t.Errorf("tx %s was acknowledged at height %d, the node now says %d", r.hash, r.ackHeight, res.Height)
		}
		doc, _, err := a.resolve(ctx, r.did, 0, false)
		if err != nil {
			t.Errorf("LOST: acknowledged DID %s does not resolve: %v", r.did, err)
			continue
		}
		if vm := doc.Document.VerificationMethod; len(vm) != 1 || vm[0].PublicKeyJwk != did.NewJWK(r.key) {
			t.Errorf("DID %s resolves to the wrong key: %+v", r.did, vm)
		}
		if dids[r.did] {
			t.Errorf("DID %s signed twice", r.did)
		}
		dids[r.did] = true
		perLane[r.lane]++
	}
	if final.Residents != uint64(len(dids)) {
		t.Errorf("status says %d residents; %d distinct DIDs were committed (applied twice or lost?)", final.Residents, len(dids))
	}
	for lane, n := range perLane {
		next, err := a.nextSeq(ctx, reg.did, uint32(lane))
		if err != nil {
			t.Fatal(err)
		}
		if next != n {
			t.Errorf("lane %d: next sequence is %d, but %d transactions were committed on it", lane, next, n)
		}
	}

	// Replays of acknowledged transactions are answered, never re-applied.
	replays := []*resident{anchor}
	for i := 0; i < 8 && len(all) > 0; i++ {
		replays = append(replays, all[rng.IntN(len(all))])
	}
	for _, r := range replays {
		code, body, err := a.do(ctx, "POST", "/v1/txs", r.raw)
		if err != nil {
			t.Fatal(err)
		}
		switch p := problemOf(body); {
		case code == http.StatusOK:
			var s httpapi.SubmitResponse
			if err := json.Unmarshal(body, &s); err != nil || s.Status != "committed" || s.Height != r.ackHeight || s.Hash != r.hash {
				t.Errorf("replay of %s: answer %s, want the original commit at height %d", r.hash, body, r.ackHeight)
			}
		case p != nil && p.Reason == "bad_sequence":
		default:
			t.Errorf("replay of %s: %d %s, want the original result or bad_sequence", r.hash, code, body)
		}
	}
	if _, err := a.waitHeight(ctx, final.Height+2, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	again, err := a.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Residents != final.Residents {
		t.Errorf("replays changed the resident count from %d to %d", final.Residents, again.Residents)
	}

	// After all the crashes, the state of every height the anchor existed
	// at is still the one the chain's headers commit to. Heights are
	// sampled to keep the test short, the rounds' heights always included.
	checked := 0
	heights := map[int64]bool{}
	for _, rd := range rounds {
		heights[rd.checkedAppHashH-1] = true
	}
	for h := anchor.ackHeight; h < again.Height; h += 1 + int64(rng.IntN(4)) {
		heights[h] = true
	}
	for h := range heights {
		if err := a.proofMatchesHeader(ctx, anchor.did, h); err != nil {
			t.Error(err)
		}
		checked++
	}

	var earlyKills, midBlock int
	for i, rd := range rounds {
		earlyKills += rd.earlyKills
		if rd.midBlock {
			midBlock++
		}
		how := "at random"
		if rd.aimed {
			how = "aimed at a commit"
		}
		t.Logf("round %d: killed %s at height %d with %d acknowledged; %d extra kills during start-up; back at height %d after %v; handshake %s",
			i+1, how, rd.heightAtKill, rd.ackedAtKill, rd.earlyKills, rd.heightAfter, rd.restart.Round(time.Millisecond), rd.handshake)
	}
	t.Logf("%d kill rounds (+%d kills during start-up; %d restarts found a block stored but not yet applied or recorded) in %v; %d transactions acknowledged (%d learnt by query), %d residents, final height %d; "+
		"%d resubmissions, %d transport errors, %d status queries, %d pending answers, %d busy, %d 5xx; app hash checked at %d heights",
		len(rounds), earlyKills, midBlock, killPhaseTook.Round(time.Millisecond), len(all), viaQuery, again.Residents, again.Height,
		l.retries.Load(), l.netErrors.Load(), l.queries.Load(), l.pending.Load(), l.busy.Load(), l.serverErrors.Load(), checked)
}
