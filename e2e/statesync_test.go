package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/httpapi"
)

// stateSyncInterval is the snapshot interval of the state sync testnet:
// small, so that a chain of a few dozen blocks has snapshots.
const stateSyncInterval = 10

// TestStateSyncJoin has a fifth authority's node join a running network by
// state sync: the founders take a snapshot every stateSyncInterval blocks
// and serve CometBFT's RPC on loopback, as imi testnet writes them; after
// some history the standby node is configured as an operator would (trust
// height and hash from a founder's /v1/status) and started. It restores the
// newest snapshot instead of replaying the chain: its block store begins
// just above a snapshot height, not at 1. It then follows the chain with
// the same app hashes, serves a DID registered long before the snapshot,
// knows nothing of transactions before it (their results are not in a
// snapshot), and commits new ones. A second standby joins the same chain
// by block sync, for comparison.
func TestStateSyncJoin(t *testing.T) {
	skipShort(t)
	seed := testSeed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()

	all := newStateSyncNet(t, 4, 2, stateSyncInterval)
	founders := &consortium{t: t, dir: all.dir, nodes: all.nodes[:4]}
	joiner, replayer := all.nodes[4], all.nodes[5]
	founders.startAll(ctx, 60*time.Second)
	t.Logf("4 founders up in %v", time.Since(began).Round(time.Millisecond))

	// 1. History: an anchor resident first, then mixed load until three
	// snapshots have been taken.
	l := newLoad(t, founders, seed)
	anchor, err := l.registerAnchor(ctx, founders.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	loadBegan := time.Now()
	l.start(ctx)
	for slices.Max(founders.heights(ctx)) < 3*stateSyncInterval+2 {
		if err := l.failed(); err != nil {
			t.Fatalf("load: %v", err)
		}
		if time.Since(loadBegan) > 90*time.Second {
			t.Fatalf("the chain did not reach height %d in 90 s: %v", 3*stateSyncInterval+2, founders.heights(ctx))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := l.stopAndWait(30 * time.Second); err != nil {
		t.Fatalf("clients: %v", err)
	}
	t.Logf("load: %s", l.summary(time.Since(loadBegan)))
	for _, m := range founders.nodes {
		if got := snapshotHeights(t, m); len(got) == 0 || len(got) > 2 {
			t.Errorf("%s keeps snapshots %v; want the last one or two", m.Name, got)
		}
	}

	// 2. The operator's part: a trusted height and hash from a founder,
	// into the joining node's [state_sync].
	trust, err := founders.nodes[1].api.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	enableStateSync(t, joiner.Home, trust.Chain.LatestHeight, trust.Chain.LatestBlock)
	target := slices.Max(founders.heights(ctx))
	syncBegan := time.Now()
	all.start(joiner)
	s5 := waitCaughtUp(ctx, t, joiner, target, 60*time.Second)
	syncTook := time.Since(syncBegan)

	// 3. It did not replay from genesis: its first block is just above a
	// snapshot's height, and the state it restored is the one the next
	// header commits to.
	base := earliestBlock(ctx, t, joiner, s5.Height)
	snap := base - 1
	if base <= 1 || snap%stateSyncInterval != 0 {
		t.Fatalf("%s serves blocks from %d; want from just above a snapshot height (a multiple of %d)", joiner.Name, base, stateSyncInterval)
	}
	if _, err := founders.nodes[0].api.block(ctx, 1); err != nil {
		t.Fatalf("a founder has no block 1: %v", err)
	}
	if err := joiner.api.proofMatchesHeader(ctx, anchor.did, snap); err != nil {
		t.Errorf("%s's restored state at height %d: %v", joiner.Name, snap, err)
	}
	if anchor.ackHeight >= snap {
		t.Errorf("the anchor was registered at height %d, not before the snapshot at %d", anchor.ackHeight, snap)
	}
	t.Logf("%s joined by state sync in %v: restored the snapshot at height %d (trusting height %d), caught up to %d",
		joiner.Name, syncTook.Round(time.Millisecond), snap, trust.Chain.LatestHeight, s5.Height)

	// 4. The second standby joins the same chain by block sync.
	target = slices.Max(founders.heights(ctx))
	replayBegan := time.Now()
	all.start(replayer)
	s6 := waitCaughtUp(ctx, t, replayer, target, 60*time.Second)
	t.Logf("%s joined by block sync in %v (to height %d, from 1)", replayer.Name, time.Since(replayBegan).Round(time.Millisecond), s6.Height)
	if b := earliestBlock(ctx, t, replayer, s6.Height); b != 1 {
		t.Errorf("%s, which block synced, serves blocks from %d", replayer.Name, b)
	}

	// 5. A new registration through the state-synced node commits there,
	// and every node agrees on every block it has and on the state.
	la := &lander{api: joiner.api}
	late, err := newResident(l.reg, consortiumChainID, anchorLane, 1, "440605", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := la.land(ctx, late, rand.New(rand.NewPCG(seed, 9))); err != nil {
		t.Fatalf("registering through %s: %v", joiner.Name, err)
	}
	// Up to past the next snapshot height, which the joiner takes itself.
	nextSnap := (snap/stateSyncInterval + 1) * stateSyncInterval
	final := max(late.ackHeight+2, nextSnap+2)
	if err := all.waitAll(ctx, final, 30*time.Second, all.nodes...); err != nil {
		t.Fatal(err)
	}
	for h := base; h <= final; h++ {
		want, err := founders.nodes[0].api.block(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range all.nodes[1:] {
			got, err := m.api.block(ctx, h)
			if err != nil {
				t.Fatalf("%s: block %d: %v", m.Name, h, err)
			}
			if got.blockID != want.blockID || !bytes.Equal(got.header, want.header) {
				t.Fatalf("at height %d %s has block %s app hash %s; %s has %s app hash %s", h, m.Name, got.blockID, got.appHash, all.nodes[0].Name, want.blockID, want.appHash)
			}
		}
	}
	for _, m := range all.nodes {
		if err := m.api.proofMatchesHeader(ctx, anchor.did, final-1); err != nil {
			t.Errorf("%s: %v", m.Name, err)
		}
		if _, _, err := m.api.resolve(ctx, late.did, 0, false); err != nil {
			t.Errorf("%s: the late resident: %v", m.Name, err)
		}
	}
	ref, err := founders.nodes[0].api.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*member{joiner, replayer} {
		s, err := m.api.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Residents != ref.Residents || s.Authorities != ref.Authorities || s.ChainID != ref.ChainID {
			t.Errorf("%s counts %d residents, %d authorities on %s; %s %d, %d on %s", m.Name, s.Residents, s.Authorities, s.ChainID, founders.nodes[0].Name, ref.Residents, ref.Authorities, ref.ChainID)
		}
	}

	// 6. Transaction results are kept beside the state, not in snapshots:
	// the state-synced node knows those from after its snapshot only.
	for _, c := range []struct {
		m     *member
		hash  string
		found bool
	}{
		{founders.nodes[2], anchor.hash, true},
		{replayer, anchor.hash, true},
		{joiner, anchor.hash, false},
		{joiner, late.hash, true},
	} {
		if _, found, err := c.m.api.txResult(ctx, c.hash); err != nil || found != c.found {
			t.Errorf("%s: GET /v1/txs/%s: found %v (%v), want %v", c.m.Name, c.hash, found, err, c.found)
		}
	}

	// 7. Snapshots are the same bytes on every node that has one of a
	// height, the state-synced node's own included: a joining node can
	// fetch the chunks of one snapshot from all of them.
	for deadline := time.Now().Add(10 * time.Second); !slices.Contains(snapshotHeights(t, joiner), nextSnap); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s took no snapshot at %d: %v", joiner.Name, nextSnap, snapshotHeights(t, joiner))
		}
	}
	byHeight := map[int64][]string{}
	for _, m := range all.nodes {
		for _, h := range snapshotHeights(t, m) {
			byHeight[h] = append(byHeight[h], m.Name)
			want, err1 := os.ReadFile(filepath.Join(founders.nodes[0].Home, "state", "snapshots", strconv.FormatInt(h, 10), "snapshot.json"))
			got, err2 := os.ReadFile(filepath.Join(m.Home, "state", "snapshots", strconv.FormatInt(h, 10), "snapshot.json"))
			if err1 == nil && err2 == nil && !bytes.Equal(got, want) {
				t.Errorf("%s's snapshot at %d differs from %s's:\n%s\n%s", m.Name, h, founders.nodes[0].Name, got, want)
			}
		}
	}
	if !slices.Contains(byHeight[nextSnap], founders.nodes[0].Name) {
		t.Errorf("%s has no snapshot at %d to compare %s's with: %v", founders.nodes[0].Name, nextSnap, joiner.Name, byHeight)
	}
	t.Logf("snapshots by height: %v", byHeight)

	// 8. Restarted, the state-synced node goes on from its own data.
	if _, err := joiner.terminate(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	all.start(joiner)
	if err := all.waitAll(ctx, final+3, 30*time.Second, joiner); err != nil {
		t.Fatalf("%s after a restart: %v", joiner.Name, err)
	}
	if err := joiner.api.proofMatchesHeader(ctx, anchor.did, final+2); err != nil {
		t.Errorf("%s after a restart: %v", joiner.Name, err)
	}
	if b := earliestBlock(ctx, t, joiner, final+3); b != base {
		t.Errorf("%s serves blocks from %d after a restart, from %d before", joiner.Name, b, base)
	}
	all.checkLogs()
	t.Logf("blocks %d..%d agree on all %d nodes; test took %v", base, final, len(all.nodes), time.Since(began).Round(time.Millisecond))
}

// newStateSyncNet writes a testnet of validators founders and standby
// extra nodes that take a snapshot every interval blocks. Nothing runs yet.
func newStateSyncNet(t *testing.T, validators, standby int, interval int64) *consortium {
	t.Helper()
	dir := t.TempDir()
	base := freeTestnetPorts(t, validators+standby)
	nodes, err := district.WriteTestnet(filepath.Join(dir, "net"), district.TestnetOptions{
		Validators: validators, Standby: standby, ChainID: consortiumChainID, BasePort: base,
		GenesisTime: time.Now().UTC().Truncate(time.Second), SnapshotInterval: interval,
	})
	if err != nil {
		t.Fatalf("couldn't write the testnet: %v", err)
	}
	c := &consortium{t: t, dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tn := range nodes {
		// What imi testnet writes for state sync, as the node reads it.
		cfg, err := district.LoadConfig(tn.Home)
		if err != nil {
			t.Fatal(err)
		}
		ss := cfg.StateSync
		servers := 2 // other founders' RPC; one founder is named twice
		if validators == 1 && tn.Validator {
			servers = 0
		}
		if ss.SnapshotInterval == nil || *ss.SnapshotInterval != interval || ss.CometRPC != "tcp://"+tn.RPC || ss.Enable || len(ss.RPCServers) != servers || slices.Contains(ss.RPCServers, "http://"+tn.RPC) {
			t.Fatalf("%s: [state_sync] is %+v; want snapshots every %d, comet_rpc on %s, off, %d other nodes' RPC", tn.Name, ss, interval, tn.RPC, servers)
		}
		m := &member{TestnetNode: tn, api: newAPI(tn.HTTP)}
		m.log, m.logPath = memberLog(t, dir, tn.Name)
		c.nodes = append(c.nodes, m)
	}
	t.Logf("testnet of %d validators and %d standby, snapshots every %d blocks, base port %d, in %s", validators, standby, interval, base, dir)
	return c
}

// freeTestnetPorts picks a BasePort for WriteTestnet whose HTTP (base+i),
// P2P (base+100+i) and CometBFT RPC (base+200+i) ports are all free, below
// Linux's ephemeral range, at random.
func freeTestnetPorts(t *testing.T, n int) int { return freePortBlocks(t, n, 3) }

// enableStateSync turns state sync on in home's imi.toml with a trusted
// height and block hash, as the operator edits it.
func enableStateSync(t *testing.T, home string, height int64, hash string) {
	t.Helper()
	path := filepath.Join(home, district.ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{
		"enable": "true", "trust_height": strconv.FormatInt(height, 10), "trust_hash": strconv.Quote(hash),
	} {
		re := regexp.MustCompile(`(?m)^` + name + ` = .*$`)
		if len(re.FindAll(b, -1)) != 1 {
			t.Fatalf("%s has no single setting %s", path, name)
		}
		b = re.ReplaceAll(b, []byte(name+" = "+value))
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := district.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if ss := cfg.StateSync; !ss.Enable || ss.TrustHeight != height || !strings.EqualFold(ss.TrustHash, hash) {
		t.Fatalf("after editing, [state_sync] reads %+v", ss)
	}
}

// waitCaughtUp waits until m has committed height target and says it is
// not catching up.
func waitCaughtUp(ctx context.Context, t *testing.T, m *member, target int64, limit time.Duration) *httpapi.StatusResponse {
	t.Helper()
	began := time.Now()
	var last *httpapi.StatusResponse
	for {
		if time.Since(began) > limit {
			t.Fatalf("%s did not catch up with height %d within %v (last: %+v)", m.Name, target, limit, last)
		}
		if m.proc.exited() {
			t.Fatalf("%s exited while syncing: %v", m.Name, m.proc.err)
		}
		if s, err := m.quickStatus(ctx, time.Second); err == nil {
			last = s
			if s.Height >= target && !s.Chain.CatchingUp {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// earliestBlock is the lowest height m serves a block for, below or at
// latest, found by bisection: a node has every block from its base up.
func earliestBlock(ctx context.Context, t *testing.T, m *member, latest int64) int64 {
	t.Helper()
	if _, err := m.api.block(ctx, latest); err != nil {
		t.Fatalf("%s: its latest block %d: %v", m.Name, latest, err)
	}
	lo, hi := int64(1), latest // hi is served
	for lo < hi {
		mid := lo + (hi-lo)/2
		if _, err := m.api.block(ctx, mid); err == nil {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return hi
}

// snapshotHeights lists the snapshots in m's home.
func snapshotHeights(t *testing.T, m *member) []int64 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(m.Home, "state", "snapshots"))
	if err != nil {
		t.Fatalf("%s: %v", m.Name, err)
	}
	var out []int64
	for _, e := range entries {
		if h, err := strconv.ParseInt(e.Name(), 10, 64); err == nil {
			out = append(out, h)
		}
	}
	return out
}

// TestStateSyncVersusBlockSync measures how long a new node takes to join
// a chain of IMI_E2E_STATESYNC_N registrations by block sync and by state
// sync, one validator serving both, as `imi bench --join` measures block
// sync. Skipped unless IMI_E2E_STATESYNC_N is set (100000 takes a few
// minutes on two cores).
func TestStateSyncVersusBlockSync(t *testing.T) {
	skipShort(t)
	n, _ := strconv.Atoi(os.Getenv("IMI_E2E_STATESYNC_N"))
	if n <= 0 {
		t.Skip("set IMI_E2E_STATESYNC_N to the number of registrations to measure a join with")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	const interval = 50
	all := newStateSyncNet(t, 1, 2, interval)
	v, replayer, joiner := all.nodes[0], all.nodes[1], all.nodes[2]
	all.start(v)
	all.waitReady(ctx, 60*time.Second, v)

	// The chain: n registrations sent over CometBFT's RPC
	// (broadcast_tx_sync returns once the mempool took a transaction), on
	// many lanes, each lane in order.
	reg := loadRegistrar(t, v.Home)
	const lanes = 128
	loadBegan := time.Now()
	var sent atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, lanes)
	for lane := range lanes {
		wg.Go(func() {
			for seq := 0; lane+seq*lanes < n; seq++ {
				r, err := newResident(reg, consortiumChainID, uint32(lane), uint64(seq), "440604", lane*1000+seq)
				if err != nil {
					errs <- err
					return
				}
				if err := broadcast(ctx, v.RPC, r.raw); err != nil {
					errs <- fmt.Errorf("lane %d seq %d: %w", lane, seq, err)
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Committed: the registrar's lanes all reached their last sequence.
	for {
		s, err := v.api.status(ctx)
		if err == nil && s.Residents >= uint64(n) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the registrations were not committed: %+v, %v", s, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	built := time.Since(loadBegan)
	s, _ := v.api.status(ctx)
	t.Logf("chain of %d registrations built in %v (%.0f/s), height %d", n, built.Round(time.Second), float64(n)/built.Seconds(), s.Height)
	// A snapshot of all of it, then a few blocks so that its next headers
	// exist.
	snapAt := (s.Height/interval + 1) * interval
	var snapTook string
	for {
		hs := snapshotHeights(t, v)
		if slices.Contains(hs, snapAt) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no snapshot at %d: %v", snapAt, hs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if m := regexp.MustCompile(`took a snapshot.*height=` + strconv.FormatInt(snapAt, 10) + `.*chunks=(\d+) took=(\S+)`).FindSubmatch(readLog(t, v)); m != nil {
		snapTook = fmt.Sprintf("%s chunks in %s", m[1], m[2])
	}
	size := dirSize(t, filepath.Join(v.Home, "state", "snapshots", strconv.FormatInt(snapAt, 10)))
	if _, err := v.api.waitHeight(ctx, snapAt+3, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot at height %d: %.1f MiB, %s", snapAt, float64(size)/(1<<20), snapTook)

	// Block sync.
	target := snapAt + 3
	began := time.Now()
	all.start(replayer)
	waitCaughtUp(ctx, t, replayer, target, 25*time.Minute)
	blockSync := time.Since(began)
	t.Logf("block sync: %s caught up to height %d in %v", replayer.Name, target, blockSync.Round(100*time.Millisecond))
	if _, err := replayer.terminate(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	// State sync.
	trust, err := v.api.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	enableStateSync(t, joiner.Home, trust.Chain.LatestHeight, trust.Chain.LatestBlock)
	target = trust.Chain.LatestHeight
	began = time.Now()
	all.start(joiner)
	js := waitCaughtUp(ctx, t, joiner, target, 25*time.Minute)
	stateSync := time.Since(began)
	base := earliestBlock(ctx, t, joiner, js.Height)
	t.Logf("state sync: %s caught up to height %d in %v, from the snapshot at %d (of which %s discovering snapshots)",
		joiner.Name, js.Height, stateSync.Round(100*time.Millisecond), base-1, "5s")
	vs, _ := v.api.status(ctx)
	if js.Residents != uint64(n) || vs.Residents != uint64(n) {
		t.Errorf("residents: %s %d, %s %d, want %d", joiner.Name, js.Residents, v.Name, vs.Residents, n)
	}
	common := min(js.Height, vs.Height)
	a, err1 := v.api.block(ctx, common)
	b, err2 := joiner.api.block(ctx, common)
	if err1 != nil || err2 != nil || a.appHash != b.appHash {
		t.Errorf("at height %d: %s app hash %s (%v), %s %s (%v)", common, v.Name, a.appHash, err1, joiner.Name, b.appHash, err2)
	}
	t.Logf("join of a chain of %d registrations: block sync %v, state sync %v (%.1fx)", n, blockSync.Round(100*time.Millisecond), stateSync.Round(100*time.Millisecond), blockSync.Seconds()/stateSync.Seconds())
	all.checkLogs()
}

// broadcast hands raw to the mempool of the node whose CometBFT RPC is at
// rpc, retrying while the mempool is full.
func broadcast(ctx context.Context, rpc string, raw []byte) error {
	url := "http://" + rpc + "/broadcast_tx_sync?tx=0x" + hex.EncodeToString(raw)
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return err
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return err
		}
		var r struct {
			Result *struct {
				Code uint32 `json:"code"`
				Log  string `json:"log"`
			} `json:"result"`
			Error *struct {
				Data string `json:"data"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("broadcast_tx_sync: %s", body)
		}
		switch {
		case r.Result != nil && r.Result.Code == 0:
			return nil
		case r.Result != nil:
			return fmt.Errorf("refused: %d %s", r.Result.Code, r.Result.Log)
		case r.Error != nil && strings.Contains(r.Error.Data, "mempool is full"):
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		default:
			return fmt.Errorf("broadcast_tx_sync: %s", body)
		}
	}
}

func readLog(t *testing.T, m *member) []byte {
	t.Helper()
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
