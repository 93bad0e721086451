package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cometbft/cometbft/abci/example/kvstore"
	abcitypes "github.com/cometbft/cometbft/abci/types"
	mempl "github.com/cometbft/cometbft/mempool"
	"github.com/prometheus/client_golang/prometheus"
)

const testChainID = "imi-test"

// testGenesisTime is fixed: genesis files are never written from the clock.
var testGenesisTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// freeP2P returns a loopback address nothing listens on right now.
func freeP2P(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "tcp://" + l.Addr().String()
}

// testConfig is a fast-ticking node in a fresh home.
func testConfig(t testing.TB) Config {
	return Config{
		Home:                t.TempDir(),
		ChainID:             testChainID,
		Moniker:             "test",
		P2PListen:           freeP2P(t),
		TimeoutCommit:       50 * time.Millisecond,
		EmptyBlocksInterval: 200 * time.Millisecond,
		LogLevel:            slog.LevelWarn,
	}
}

// newHome prepares keys and a single-validator genesis for cfg.
func newHome(t testing.TB, cfg Config) ed25519.PublicKey {
	t.Helper()
	pub, _, err := EnsureKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = WriteGenesis(cfg, Genesis{
		GenesisTime: testGenesisTime,
		Validators:  []GenesisValidator{{Name: "v0", PubKey: pub, Power: 10}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// testWriter sends log lines to t.Log until the test's cleanup, after which
// CometBFT goroutines still winding down must not call t.Log.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return slog.New(slog.NewTextHandler(w, nil))
}

func start(t testing.TB, cfg Config, app abcitypes.Application) *Node {
	t.Helper()
	n, err := Start(t.Context(), cfg, app, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Error(err)
		}
	})
	return n
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// query asks the kvstore app for key.
func query(ctx context.Context, t testing.TB, n *Node, key string) string {
	t.Helper()
	res, err := n.Query(ctx, &abcitypes.RequestQuery{Data: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	return string(res.Value)
}

// submit sends a valid tx and waits until the app has committed it.
func submit(ctx context.Context, t testing.TB, n *Node, key, value string) {
	t.Helper()
	res, err := n.CheckTx(ctx, []byte(key+"="+value))
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != abcitypes.CodeTypeOK {
		t.Fatalf("CheckTx: code %d, log %q", res.Code, res.Log)
	}
	for query(ctx, t, n, key) != value {
		select {
		case <-ctx.Done():
			t.Fatalf("tx %s=%s not committed: %v", key, value, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestCommitStopRestart(t *testing.T) {
	ctx := testContext(t)
	cfg := testConfig(t)
	newHome(t, cfg)
	appDir := t.TempDir()

	app := kvstore.NewPersistentApplication(appDir)
	n, err := Start(ctx, cfg, app, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	submit(ctx, t, n, "city", "imi")
	h := n.Status().LatestHeight
	if h < 1 {
		t.Fatalf("height after commit = %d", h)
	}

	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := n.CheckTx(ctx, []byte("a=b")); !errors.Is(err, ErrStopped) {
		t.Errorf("CheckTx after Stop: err = %v, want ErrStopped", err)
	}
	if err := n.WaitForHeight(ctx, h+1); !errors.Is(err, ErrStopped) {
		t.Errorf("WaitForHeight after Stop: err = %v, want ErrStopped", err)
	}
	if got := n.Status(); got.LatestHeight != 0 || got.ChainID != testChainID {
		t.Errorf("Status after Stop = %+v, want only chain and node IDs", got)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}

	app = kvstore.NewPersistentApplication(appDir)
	t.Cleanup(func() { app.Close() })
	n = start(t, cfg, app)
	if got := n.Status().LatestHeight; got < h {
		t.Fatalf("height after restart = %d, want at least %d", got, h)
	}
	if err := n.WaitForHeight(ctx, h+2); err != nil {
		t.Fatal(err)
	}
	if got := query(ctx, t, n, "city"); got != "imi" {
		t.Errorf("after restart, city = %q, want %q", got, "imi")
	}
	submit(ctx, t, n, "district", "north")
}

// TestRestartReplaysIntoEmptyApp restarts with an app that has lost all
// state: the handshake must replay every block into it.
func TestRestartReplaysIntoEmptyApp(t *testing.T) {
	ctx := testContext(t)
	cfg := testConfig(t)
	newHome(t, cfg)

	n, err := Start(ctx, cfg, kvstore.NewInMemoryApplication(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	submit(ctx, t, n, "city", "imi")
	h := n.Status().LatestHeight
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	n = start(t, cfg, kvstore.NewInMemoryApplication())
	if got := query(ctx, t, n, "city"); got != "imi" {
		t.Errorf("after replay, city = %q, want %q", got, "imi")
	}
	if err := n.WaitForHeight(ctx, h+1); err != nil {
		t.Fatal(err)
	}
}

func TestCheckTxRejections(t *testing.T) {
	ctx := testContext(t)
	cfg := testConfig(t)
	newHome(t, cfg)
	n := start(t, cfg, kvstore.NewInMemoryApplication())

	t.Run("app rejects", func(t *testing.T) {
		res, err := n.CheckTx(ctx, []byte("no separator"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != kvstore.CodeTypeInvalidTxFormat {
			t.Errorf("code = %d, want %d", res.Code, kvstore.CodeTypeInvalidTxFormat)
		}
		// A rejected tx leaves the cache: it may become valid later.
		if _, err := n.CheckTx(ctx, []byte("no separator")); err != nil {
			t.Errorf("resubmitting a rejected tx: %v", err)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		if _, err := n.CheckTx(ctx, []byte("dup=1")); err != nil {
			t.Fatal(err)
		}
		if _, err := n.CheckTx(ctx, []byte("dup=1")); !errors.Is(err, ErrTxInCache) {
			t.Errorf("err = %v, want ErrTxInCache", err)
		}
	})
	t.Run("largest allowed", func(t *testing.T) {
		tx := append([]byte("big="), bytes.Repeat([]byte("v"), DefaultMaxTxBytes-4)...)
		res, err := n.CheckTx(ctx, tx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != abcitypes.CodeTypeOK {
			t.Errorf("code = %d, want OK", res.Code)
		}
	})
	t.Run("too large", func(t *testing.T) {
		tx := append([]byte("big="), bytes.Repeat([]byte("w"), DefaultMaxTxBytes-3)...)
		if _, err := n.CheckTx(ctx, tx); !errors.Is(err, ErrTxTooLarge) {
			t.Errorf("err = %v, want ErrTxTooLarge", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := n.CheckTx(ctx, []byte("late=1")); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestConfiguredMaxTxBytes(t *testing.T) {
	ctx := testContext(t)
	cfg := testConfig(t)
	cfg.MaxTxBytes = 100
	newHome(t, cfg)
	n := start(t, cfg, kvstore.NewInMemoryApplication())

	if _, err := n.CheckTx(ctx, []byte("k="+strings.Repeat("v", 98))); err != nil {
		t.Errorf("100-byte tx: %v", err)
	}
	_, err := n.CheckTx(ctx, []byte("k="+strings.Repeat("v", 99)))
	if !errors.Is(err, ErrTxTooLarge) {
		t.Errorf("101-byte tx: err = %v, want ErrTxTooLarge", err)
	}
}

func TestMempoolError(t *testing.T) {
	other := errors.New("connection lost")
	tests := []struct {
		in   error
		want error
	}{
		{mempl.ErrTxInCache, ErrTxInCache},
		{mempl.ErrRecheckFull, ErrMempoolFull},
		{mempl.ErrMempoolIsFull{NumTxs: 10, MaxTxs: 10}, ErrMempoolFull},
		{mempl.ErrTxTooLarge{Max: 1, Actual: 2}, ErrTxTooLarge},
		{mempl.ErrPreCheck{Err: errors.New("tx size exceeds block")}, ErrTxTooLarge},
		{mempl.ErrAppConnMempool{Err: other}, other},
	}
	for _, tt := range tests {
		if got := mempoolError(tt.in); !errors.Is(got, tt.want) {
			t.Errorf("mempoolError(%v) = %v, want it to wrap %v", tt.in, got, tt.want)
		}
	}
}

func TestStatusAndBlocks(t *testing.T) {
	ctx := testContext(t)
	cfg := testConfig(t)
	pub := newHome(t, cfg)
	_, nodeID, err := EnsureKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := start(t, cfg, kvstore.NewInMemoryApplication())
	submit(ctx, t, n, "city", "imi")
	if err := n.WaitForHeight(ctx, 4); err != nil {
		t.Fatal(err)
	}

	st := n.Status()
	if st.ChainID != testChainID || st.NodeID != nodeID {
		t.Errorf("Status IDs = %q, %q; want %q, %q", st.ChainID, st.NodeID, testChainID, nodeID)
	}
	if st.LatestHeight < 4 || st.CatchingUp || st.Peers != 0 {
		t.Errorf("Status = height %d, catching up %v, %d peers; want >= 4, false, 0", st.LatestHeight, st.CatchingUp, st.Peers)
	}
	if len(st.Validators) != 1 || !st.Validators[0].PubKey.Equal(pub) || st.Validators[0].Power != 10 || len(st.Validators[0].Address) != 20 {
		t.Errorf("Status validators = %+v, want our key with power 10", st.Validators)
	}
	latest, err := n.Block(st.LatestHeight)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.LatestAppHash, latest.Header.AppHash) ||
		!bytes.Equal(st.LatestBlockHash, latest.Header.Hash()) ||
		!st.LatestBlockTime.Equal(latest.Header.Time) {
		t.Errorf("Status latest block = %X %X %v, Block = %X %X %v",
			st.LatestBlockHash, st.LatestAppHash, st.LatestBlockTime,
			latest.Header.Hash(), latest.Header.AppHash, latest.Header.Time)
	}

	first, err := n.Block(1)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Header.Time.Equal(testGenesisTime) {
		t.Errorf("block 1 time = %v, want genesis time %v", first.Header.Time, testGenesisTime)
	}

	for h := int64(1); h <= 3; h++ {
		b, err := n.Block(h)
		if err != nil {
			t.Fatal(err)
		}
		if !b.Canonical || b.Header.Height != h {
			t.Errorf("Block(%d): height %d, canonical %v", h, b.Header.Height, b.Canonical)
		}
		vals, err := n.ValidatorSet(h)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Verify(testChainID, vals); err != nil {
			t.Errorf("Block(%d).Verify: %v", h, err)
		}
		next, err := n.Block(h + 1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(next.Header.LastBlockID.Hash, b.Header.Hash()) {
			t.Errorf("block %d doesn't link to block %d", h+1, h)
		}
	}

	// The latest block is signed by the commit this node saw.
	if h := n.comet.BlockStore().Height(); h > 0 {
		b, err := n.Block(h)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := n.ValidatorSet(h)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Verify(testChainID, vals); err != nil {
			t.Errorf("latest block: Verify: %v", err)
		}
	}

	b, err := n.Block(2)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := n.ValidatorSet(2)
	if err != nil {
		t.Fatal(err)
	}
	tampered := b
	tampered.Header.AppHash = bytes.Repeat([]byte{0xAA}, 32)
	if err := tampered.Verify(testChainID, vals); err == nil {
		t.Error("Verify accepted a block with a changed app hash")
	}
	if err := b.Verify("other-chain", vals); err == nil {
		t.Error("Verify accepted a block for another chain")
	}
	other := vals.Copy()
	other.Validators[0].VotingPower++
	if err := b.Verify(testChainID, other); err == nil {
		t.Error("Verify accepted another validator set")
	}

	for _, h := range []int64{0, -1, st.LatestHeight + 1000} {
		if _, err := n.Block(h); !errors.Is(err, ErrHeightUnavailable) {
			t.Errorf("Block(%d): err = %v, want ErrHeightUnavailable", h, err)
		}
		if _, err := n.ValidatorSet(h); !errors.Is(err, ErrHeightUnavailable) {
			t.Errorf("ValidatorSet(%d): err = %v, want ErrHeightUnavailable", h, err)
		}
	}
}

func TestWaitForHeightContext(t *testing.T) {
	cfg := testConfig(t)
	newHome(t, cfg)
	n := start(t, cfg, kvstore.NewInMemoryApplication())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := n.WaitForHeight(ctx, 1_000_000); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Run("no home", func(t *testing.T) {
		if _, err := Start(t.Context(), Config{}, kvstore.NewInMemoryApplication(), nil); err == nil {
			t.Error("Start without home succeeded")
		}
	})
	t.Run("no genesis", func(t *testing.T) {
		cfg := testConfig(t)
		_, err := Start(t.Context(), cfg, kvstore.NewInMemoryApplication(), testLogger(t))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v, want one wrapping fs.ErrNotExist", err)
		}
	})
	t.Run("other chain", func(t *testing.T) {
		cfg := testConfig(t)
		newHome(t, cfg)
		cfg.ChainID = "imi-other"
		if _, err := Start(t.Context(), cfg, kvstore.NewInMemoryApplication(), testLogger(t)); err == nil {
			t.Error("Start with a mismatched chain ID succeeded")
		}
	})
}

// TestStartFailureReleasesHome checks that a failed start closes the
// databases, so the same home can start in the same process.
func TestStartFailureReleasesHome(t *testing.T) {
	cfg := testConfig(t)
	newHome(t, cfg)
	l, err := net.Listen("tcp", strings.TrimPrefix(cfg.P2PListen, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(t.Context(), cfg, kvstore.NewInMemoryApplication(), testLogger(t)); err == nil {
		t.Fatal("Start on a taken P2P port succeeded")
	}
	l.Close()
	n := start(t, cfg, kvstore.NewInMemoryApplication())
	if err := n.WaitForHeight(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
}

func TestChangedGenesisRefused(t *testing.T) {
	cfg := testConfig(t)
	pub := newHome(t, cfg)
	n, err := Start(t.Context(), cfg, kvstore.NewInMemoryApplication(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WaitForHeight(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(cometPaths(cfg.cometHome()).GenesisFile()); err != nil {
		t.Fatal(err)
	}
	err = WriteGenesis(cfg, Genesis{
		GenesisTime: testGenesisTime,
		Validators:  []GenesisValidator{{Name: "v0", PubKey: pub, Power: 10}},
		AppState:    []byte(`{"changed":true}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(t.Context(), cfg, kvstore.NewInMemoryApplication(), testLogger(t)); err == nil {
		t.Fatal("Start with a changed genesis file succeeded")
	}
}

func TestMetrics(t *testing.T) {
	ctx := testContext(t)
	cfg := testConfig(t)
	cfg.Metrics = true
	newHome(t, cfg)

	for range 2 { // the second start must not register the metrics again
		n, err := Start(ctx, cfg, kvstore.NewInMemoryApplication(), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		h := n.Status().LatestHeight
		if err := n.WaitForHeight(ctx, h+2); err != nil {
			t.Fatal(err)
		}
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
	}

	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var height float64
	for _, f := range families {
		if f.GetName() != "cometbft_consensus_height" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "chain_id" && l.GetValue() == testChainID {
					height = m.GetGauge().GetValue()
				}
			}
		}
	}
	if height < 2 {
		t.Errorf("cometbft_consensus_height{chain_id=%q} = %v, want at least 2", testChainID, height)
	}

	if _, err := prometheusMetrics("imi-other"); err == nil {
		t.Error("registering metrics for a second chain succeeded")
	}
}

// TestTwoValidators runs a chain that needs both of its validators, so it
// only advances if they connect through PersistentPeers.
func TestTwoValidators(t *testing.T) {
	ctx := testContext(t)
	cfgs := []Config{testConfig(t), testConfig(t)}
	var (
		vals  []GenesisValidator
		peers []string
	)
	for i := range cfgs {
		cfgs[i].AllowDuplicateIP = true
		pub, id, err := EnsureKeys(cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, GenesisValidator{Name: "v" + string(rune('0'+i)), PubKey: pub, Power: 10})
		peers = append(peers, id+"@"+strings.TrimPrefix(cfgs[i].P2PListen, "tcp://"))
	}
	nodes := make([]*Node, len(cfgs))
	for i := range cfgs {
		cfgs[i].PersistentPeers = peers[1-i]
		if err := WriteGenesis(cfgs[i], Genesis{GenesisTime: testGenesisTime, Validators: vals}); err != nil {
			t.Fatal(err)
		}
		nodes[i] = start(t, cfgs[i], kvstore.NewInMemoryApplication())
	}

	res, err := nodes[0].CheckTx(ctx, []byte("city=imi"))
	if err != nil || res.Code != abcitypes.CodeTypeOK {
		t.Fatalf("CheckTx = %v, %v", res, err)
	}
	for _, n := range nodes {
		if err := n.WaitForHeight(ctx, 3); err != nil {
			t.Fatal(err)
		}
	}
	// Gossip carried the tx from node 0 to whichever validator proposed.
	for query(ctx, t, nodes[1], "city") != "imi" {
		select {
		case <-ctx.Done():
			t.Fatal("tx never reached node 1's state")
		case <-time.After(20 * time.Millisecond):
		}
	}
	for i, n := range nodes {
		if st := n.Status(); st.Peers != 1 || len(st.Validators) != 2 {
			t.Errorf("node %d: %d peers, %d validators; want 1 and 2", i, st.Peers, len(st.Validators))
		}
	}
	b0, err := nodes[0].Block(2)
	if err != nil {
		t.Fatal(err)
	}
	b1, err := nodes[1].Block(2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b0.Header.Hash(), b1.Header.Hash()) {
		t.Errorf("nodes disagree on block 2: %X vs %X", b0.Header.Hash(), b1.Header.Hash())
	}
	vals2, err := nodes[1].ValidatorSet(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := b0.Verify(testChainID, vals2); err != nil {
		t.Errorf("block 2 from node 0, validators from node 1: %v", err)
	}
}
