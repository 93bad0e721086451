package bench

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/ledger"
)

// TestRunCommitsEverything runs a tiny load through each app and path and
// checks that every transaction was committed and succeeded. It checks
// correctness only; the speed is what imi bench measures.
func TestRunCommitsEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CometBFT nodes")
	}
	const n = 200
	tests := []struct {
		app     App
		path    string
		streams int
	}{
		{IMI, PathNode, 4},
		{KVStore, PathNode, 4},
		// More clients than one registrar has lanes: a second registrar
		// signs for the rest.
		{IMI, PathHTTP, 300},
	}
	for _, tt := range tests {
		t.Run(string(tt.app)+"/"+tt.path, func(t *testing.T) {
			l, err := NewLoad(tt.app, n, tt.streams)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := Run(ctx, l, Config{
				Path:          tt.path,
				InFlight:      50, // below n: submitters must wait for commits
				TimeoutCommit: 50 * time.Millisecond,
				Dir:           t.TempDir(),
				Log:           testLog(t),
				Stall:         30 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.N != n || res.Committed != n || res.Rejected != 0 {
				t.Errorf("N=%d committed=%d rejected=%d, want %d committed, none rejected", res.N, res.Committed, res.Rejected, n)
			}
			if res.TxBlocks < 1 || res.Blocks < res.TxBlocks || res.MaxPerBlock > n {
				t.Errorf("blocks=%d with txs=%d max per block=%d: inconsistent", res.Blocks, res.TxBlocks, res.MaxPerBlock)
			}
			if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
				t.Errorf("latency p50=%v p99=%v max=%v: not ordered", res.P50, res.P99, res.Max)
			}
			t.Logf("%+v", res)
		})
	}
}

// TestRunAccess runs a tiny access load: the consents are committed before
// timing, then every batch of access records, which Run checks the ledger
// stored as allowed on every node (each resident's log, as there are fewer
// than AccessChecked). Two validators, so the records are judged by a node
// that didn't check them, and more records than residents, so each
// resident is read several times.
func TestRunAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CometBFT nodes")
	}
	const n, consents = 20, 200
	l, err := NewAccessLoad(n, 4, consents)
	if err != nil {
		t.Fatal(err)
	}
	if l.Setup() != consents || l.Records() != ledger.MaxAccessBatch {
		t.Fatalf("load of %d setup transactions, %d records a transaction; want %d and %d", l.Setup(), l.Records(), consents, ledger.MaxAccessBatch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, l, Config{
		Validators:    2,
		InFlight:      8, // below n: submitters must wait for commits
		TimeoutCommit: 50 * time.Millisecond,
		Dir:           t.TempDir(),
		Log:           testLog(t),
		Stall:         30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.App != Access || res.N != n || res.Committed != n || res.Rejected != 0 {
		t.Errorf("%s: N=%d committed=%d rejected=%d, want %s, %d committed, none rejected", res.App, res.N, res.Committed, res.Rejected, Access, n)
	}
	if want := n * ledger.MaxAccessBatch; res.Records != want {
		t.Errorf("%d records committed, want %d", res.Records, want)
	}
	if res.Setup <= 0 || res.RecordsPerSecond <= res.PerSecond {
		t.Errorf("setup took %v; %.0f records/s, %.0f txs/s: want a setup time and more records than transactions a second", res.Setup, res.RecordsPerSecond, res.PerSecond)
	}
	if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
		t.Errorf("latency p50=%v p99=%v max=%v: not ordered", res.P50, res.P99, res.Max)
	}
	t.Logf("%+v", res)
}

// TestRunAccessDenied checks that Run notices denied records: without its
// consents, an access load's records all commit, but as denied.
func TestRunAccessDenied(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CometBFT node")
	}
	l, err := NewAccessLoad(2, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	l.setup, l.setupIndex = nil, nil
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = Run(ctx, l, Config{
		TimeoutCommit: 50 * time.Millisecond,
		Dir:           t.TempDir(),
		Log:           testLog(t),
		Stall:         30 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "as denied ("+ledger.DenyNoConsent+")") {
		t.Errorf("Run of access records without consents: %v; want an error that they were stored as denied (%s)", err, ledger.DenyNoConsent)
	}
}

// TestRunNetwork runs a load through four validators in one process, for
// both apps and both ways of submitting. Run itself fails unless every node
// commits every transaction and all have the same block and app hash at the
// height node 0 ended at; the test checks what it reports of that.
func TestRunNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four CometBFT nodes per app")
	}
	const n, validators = 2_000, 4
	for _, tt := range []struct {
		app    App
		submit string
	}{
		{IMI, SubmitFirst},
		{KVStore, SubmitRoundRobin},
	} {
		t.Run(string(tt.app)+"/"+tt.submit, func(t *testing.T) {
			l, err := NewLoad(tt.app, n, 16)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := Run(ctx, l, Config{
				Validators:    validators,
				Submit:        tt.submit,
				InFlight:      500,
				TimeoutCommit: 50 * time.Millisecond,
				Dir:           t.TempDir(),
				Log:           testLog(t),
				Stall:         30 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Validators != validators || res.Submit != tt.submit {
				t.Errorf("ran %d validators submitting %s, want %d and %s", res.Validators, res.Submit, validators, tt.submit)
			}
			if res.Committed != n || res.Rejected != 0 {
				t.Errorf("committed=%d rejected=%d, want %d committed, none rejected", res.Committed, res.Rejected, n)
			}
			if res.Height < int64(res.Blocks) || len(res.AppHash) == 0 {
				t.Errorf("nodes agree at height %d on app hash %X; want a height of at least %d blocks and a hash", res.Height, res.AppHash, res.Blocks)
			}
			if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
				t.Errorf("latency p50=%v p99=%v max=%v: not ordered", res.P50, res.P99, res.Max)
			}
			if res.Join != nil {
				t.Errorf("join measured without Config.Join: %+v", res.Join)
			}
			t.Logf("%d/s, p50 %v, p99 %v, %d blocks, height %d, app hash %X", int(res.PerSecond), res.P50, res.P99, res.TxBlocks, res.Height, res.AppHash)
		})
	}
}

// TestRunJoin has a new node block-sync a short chain of registrations
// made by two validators, and checks it executed them all to node 0's app
// hash (which Run compares).
func TestRunJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts CometBFT nodes")
	}
	const n = 300
	l, err := NewLoad(IMI, n, 4)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, l, Config{
		Validators:    2,
		Join:          true,
		InFlight:      50,
		TimeoutCommit: 50 * time.Millisecond,
		Dir:           t.TempDir(),
		Log:           testLog(t),
		Stall:         30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	j := res.Join
	if j == nil {
		t.Fatal("no join result")
	}
	if j.Txs != n || j.Height < res.Height || len(j.AppHash) == 0 || j.Elapsed <= 0 {
		t.Errorf("join synced %d txs to height %d (app hash %X) in %v; want %d txs, height at least %d, a hash, a duration",
			j.Txs, j.Height, j.AppHash, j.Elapsed, n, res.Height)
	}
	t.Logf("join: %d blocks, %d txs in %v", j.Height, j.Txs, j.Elapsed)
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// TestLoadKVStoreSize checks kvstore transactions are valid key=value
// pairs as large as a registration.
func TestLoadKVStoreSize(t *testing.T) {
	imi, err := NewLoad(IMI, 20, 2)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := NewLoad(KVStore, 20, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kv.AvgBytes(), imi.AvgBytes(); got < want-8 || got > want+8 {
		t.Errorf("kvstore transactions are %d bytes on average, registrations %d", got, want)
	}
	for _, b := range kv.txs {
		if eq := countByte(b, '='); eq != 1 || b[0] == '=' || b[len(b)-1] == '=' {
			t.Errorf("%q is not a kvstore key=value transaction", b)
		}
	}
}

func countByte(b []byte, c byte) int {
	n := 0
	for _, x := range b {
		if x == c {
			n++
		}
	}
	return n
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i))
	}
	p50, p99, top := percentiles(d)
	if p50 != 50 || p99 != 99 || top != 100 {
		t.Errorf("percentiles(1..100) = %v, %v, %v; want 50, 99, 100", p50, p99, top)
	}
}
