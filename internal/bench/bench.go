// Package bench measures how many transactions one IMI node commits per
// second, and what limits it.
//
// A run starts a fresh single-validator node in a temporary home, on disk
// like a district node, around one of two applications under identical
// node settings: IMI's ledger, loaded with resident registrations, or
// CometBFT's kvstore example, loaded with key=value pairs of the same size.
// The kvstore does next to nothing per transaction, so its rate is the
// consensus engine's ceiling on this machine: what IMI would reach with a
// free state machine.
//
// The load is made and signed before timing. The clock runs from the first
// submission until the block holding the last transaction is committed by
// the application; each transaction's latency runs from its submission to
// that commit. Speed is only ever measured by a load run (imi bench), never
// a timed unit test: the machine is shared and noisy, so compare medians of
// several runs, and apps against each other within one invocation.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/abci/example/kvstore"
	abcitypes "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/node"
	"github.com/imi-city/imi/internal/tx"
)

// App names an application to benchmark.
type App string

// The applications.
const (
	IMI     App = "imi"
	KVStore App = "kvstore"
)

// Paths by which transactions reach the node.
const (
	// PathNode submits with node.CheckTx, in process: the engine's and the
	// application's cost, without the API's.
	PathNode = "node"
	// PathHTTP posts to IMI's HTTP API (POST /v1/txs) on loopback, each
	// client waiting for its answer, which comes once the block is
	// committed: the rate and latency a registrar's client sees.
	PathHTTP = "http"
)

// Defaults for zero Config fields.
const (
	DefaultInFlight = 25_000
	DefaultStall    = 2 * time.Minute
)

// Config is one run's settings. The zero value is usable.
type Config struct {
	// Path is PathNode (the default) or PathHTTP, which needs an IMI load.
	Path string

	// InFlight bounds, on the node path, how many of the load's
	// transactions are submitted and not yet committed. It keeps the
	// mempool fed yet below its size (node.DefaultMempoolSize), so no
	// submission is refused as "mempool full" in the steady state.
	// Default: DefaultInFlight.
	InFlight int

	// TimeoutCommit is the node's pause after each block (see
	// node.Config). Zero: node.DefaultTimeoutCommit, what a district node
	// runs with.
	TimeoutCommit time.Duration

	// Dir holds the run's temporary node home, removed afterwards.
	// Default: os.TempDir(). Use a directory on the disk being measured.
	Dir string

	// Log receives the node's warnings and errors. Nil discards them.
	Log *slog.Logger

	// Profile, if set, receives a CPU profile of the timed part of the run.
	Profile io.Writer

	// Trace, if set, gets a line per block with the time the application
	// took to execute and commit it, and the gap before it.
	Trace io.Writer

	// Stall fails the run if no transaction commits for this long.
	// Default: DefaultStall.
	Stall time.Duration
}

// Result is what one run measured.
type Result struct {
	App  App
	Path string

	// N is the number of transactions submitted; Committed were executed
	// successfully in committed blocks, Rejected were committed with a
	// non-zero result code.
	N, Committed, Rejected int

	// Elapsed runs from the first submission to the commit of the block
	// holding the last transaction (on the HTTP path: to the last answer).
	Elapsed time.Duration
	// PerSecond is Committed / Elapsed.
	PerSecond float64

	// Latency percentiles, submission to commit (HTTP path: request to
	// answer).
	P50, P99, Max time.Duration

	// Blocks is the number of heights from the first to the last block
	// carrying the load's transactions; TxBlocks how many of them carried
	// any, at most MaxPerBlock.
	Blocks, TxBlocks, MaxPerBlock int

	// Retries counts submissions refused as "mempool full" or "busy" and
	// sent again.
	Retries int
}

// AvgPerBlock is the mean number of the load's transactions per block
// that carried any.
func (r Result) AvgPerBlock() float64 {
	if r.TxBlocks == 0 {
		return 0
	}
	return float64(r.N) / float64(r.TxBlocks)
}

// Run runs l once against a fresh node and returns what it measured. It
// fails if any transaction is refused, or nothing commits for cfg.Stall.
func Run(ctx context.Context, l *Load, cfg Config) (res Result, err error) {
	if cfg.Path == "" {
		cfg.Path = PathNode
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = DefaultInFlight
	}
	if cfg.Stall <= 0 {
		cfg.Stall = DefaultStall
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Path != PathNode && cfg.Path != PathHTTP:
		return res, fmt.Errorf("unknown path %q (use %s or %s)", cfg.Path, PathNode, PathHTTP)
	case cfg.Path == PathHTTP && l.app != IMI:
		return res, fmt.Errorf("the HTTP path needs an %s load: the API serves only IMI's ledger", IMI)
	}

	home, err := os.MkdirTemp(cfg.Dir, "imi-bench-*")
	if err != nil {
		return res, fmt.Errorf("couldn't create node home: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(home); rerr != nil {
			err = errors.Join(err, fmt.Errorf("couldn't remove node home: %w", rerr))
		}
	}()

	nc, err := nodeConfig(home, cfg)
	if err != nil {
		return res, err
	}
	valKey, _, err := node.EnsureKeys(nc)
	if err != nil {
		return res, err
	}
	var app abcitypes.Application
	var ledgerApp *ledger.App
	var g node.Genesis
	switch l.app {
	case IMI:
		if g, err = l.genesis(valKey); err != nil {
			return res, err
		}
		// As a district node keeps it: its own goleveldb under the home.
		ledgerApp, err = ledger.Open(filepath.Join(home, "state"), cfg.Log, nil)
		if err != nil {
			return res, err
		}
		defer closeInto(&err, ledgerApp.Close)
		app = ledgerApp
	case KVStore:
		g = node.Genesis{
			ChainID:     ChainID,
			GenesisTime: time.Now().Add(-time.Second).Truncate(time.Second),
			Validators:  []node.GenesisValidator{{Name: "v0", PubKey: valKey, Power: 10}},
		}
		// kvstore.NewPersistentApplication, without its panic.
		db, dberr := dbm.NewGoLevelDB("kvstore", filepath.Join(home, "kvstore"))
		if dberr != nil {
			return res, fmt.Errorf("couldn't open kvstore database: %w", dberr)
		}
		kv := kvstore.NewApplication(db)
		defer closeInto(&err, kv.Close)
		app = kv
	default:
		return res, fmt.Errorf("unknown app %q", l.app)
	}
	if err := node.WriteGenesis(nc, g); err != nil {
		return res, err
	}

	// sem holds one token per submitted, uncommitted transaction.
	sem := make(chan struct{}, cfg.InFlight)
	release := func(n int) {
		for range n {
			<-sem
		}
	}
	if cfg.Path == PathHTTP {
		release = nil // HTTP clients pace themselves: one request each at a time
	}
	m := newMeter(app, l, release)
	m.trace = cfg.Trace

	n, err := node.Start(ctx, nc, m, cfg.Log)
	if err != nil {
		return res, err
	}
	defer closeInto(&err, n.Stop)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = n.WaitForHeight(wctx, 2)
	cancel()
	if err != nil {
		return res, fmt.Errorf("couldn't see the node make blocks: %w", err)
	}

	var api *apiServer
	if cfg.Path == PathHTTP {
		if api, err = startAPI(ledgerApp, n, cfg.Log); err != nil {
			return res, err
		}
		defer closeInto(&err, api.close)
	}

	// Timing starts here: nothing left over from setup to collect.
	runtime.GC()
	if cfg.Profile != nil {
		if err := pprof.StartCPUProfile(cfg.Profile); err != nil {
			return res, fmt.Errorf("couldn't start CPU profile: %w", err)
		}
	}
	rctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var retries atomic.Int64
	start := time.Now()
	var clientLat []time.Duration
	var clientEnd time.Time
	var wg sync.WaitGroup
	switch cfg.Path {
	case PathNode:
		wg.Go(func() {
			if err := submitNode(rctx, n, l, m, sem, &retries); err != nil {
				stop(err)
			}
		})
	case PathHTTP:
		wg.Go(func() {
			lat, end, err := submitHTTP(rctx, api.url, l, m, &retries)
			if err != nil {
				stop(err)
				return
			}
			clientLat, clientEnd = lat, end
		})
	}
	waitErr := waitDone(rctx, m, cfg.Stall)
	if cfg.Profile != nil {
		pprof.StopCPUProfile()
	}
	if waitErr != nil {
		stop(waitErr)
	}
	wg.Wait()
	if waitErr != nil {
		if cause := context.Cause(rctx); cause != nil && !errors.Is(cause, waitErr) {
			waitErr = cause
		}
		return res, waitErr
	}

	res = Result{
		App: l.app, Path: cfg.Path, N: l.Len(),
		Rejected:    m.rejected,
		Committed:   l.Len() - m.rejected,
		Blocks:      int(m.lastHeight - m.firstHeight + 1),
		TxBlocks:    m.txBlocks,
		MaxPerBlock: m.maxPerBlock,
		Retries:     int(retries.Load()),
	}
	var lat []time.Duration
	end := time.Unix(0, m.lastCommit)
	if cfg.Path == PathHTTP {
		lat, end = clientLat, clientEnd
	} else {
		lat = make([]time.Duration, l.Len())
		for i := range lat {
			lat[i] = time.Duration(m.committedAt[i] - m.sent[i].Load())
		}
	}
	res.Elapsed = end.Sub(start)
	res.PerSecond = float64(res.Committed) / res.Elapsed.Seconds()
	res.P50, res.P99, res.Max = percentiles(lat)

	if ledgerApp != nil {
		meta, _, err := ledgerApp.Meta(0)
		if err != nil {
			return res, fmt.Errorf("couldn't read the ledger's resident count: %w", err)
		}
		if meta.Residents != uint64(res.Committed) {
			return res, fmt.Errorf("the ledger counts %d residents, the blocks committed %d registrations", meta.Residents, res.Committed)
		}
	}
	return res, nil
}

// nodeConfig is the node's configuration for either app: identical but for
// the home, so the two differ only in the application.
func nodeConfig(home string, cfg Config) (node.Config, error) {
	p2p, err := freeLoopback()
	if err != nil {
		return node.Config{}, err
	}
	return node.Config{
		Home:      home,
		ChainID:   ChainID,
		Moniker:   "bench",
		P2PListen: "tcp://" + p2p,
		// As a district node (district.Config.nodeConfig): metrics on,
		// transactions up to IMI's limit; everything else the default.
		Metrics:       true,
		MaxTxBytes:    tx.MaxBytes,
		TimeoutCommit: cfg.TimeoutCommit,
		LogLevel:      slog.LevelWarn,
	}, nil
}

// freeLoopback returns a loopback address nothing listens on right now, so
// that runs don't collide with a node on the default port.
func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("couldn't find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// submitNode submits every stream of l from its own goroutine through
// node.CheckTx, each transaction once a token in sem is free.
func submitNode(ctx context.Context, n *node.Node, l *Load, m *meter, sem chan struct{}, retries *atomic.Int64) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var wg sync.WaitGroup
	for _, stream := range l.streams {
		wg.Go(func() {
			for _, i := range stream {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				m.markSent(i, time.Now())
				if err := checkTx(ctx, n, l.txs[i], retries); err != nil {
					stop(fmt.Errorf("transaction %d: %w", i, err))
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// retryPause is how long a submitter waits after "mempool full".
const retryPause = 5 * time.Millisecond

// checkTx submits raw until the mempool takes it.
func checkTx(ctx context.Context, n *node.Node, raw []byte, retries *atomic.Int64) error {
	for {
		res, err := n.CheckTx(ctx, raw)
		switch {
		case errors.Is(err, node.ErrMempoolFull):
			retries.Add(1)
			select {
			case <-time.After(retryPause):
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		case err != nil:
			return err
		case res.Code != 0:
			return fmt.Errorf("refused by CheckTx: code %d: %s", res.Code, res.Log)
		}
		return nil
	}
}

// waitDone waits until m has seen every transaction committed, ctx ends,
// or nothing commits for stall.
func waitDone(ctx context.Context, m *meter, stall time.Duration) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, lastAt := m.settled.Load(), time.Now()
	for {
		select {
		case <-m.done:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		case now := <-t.C:
			if s := m.settled.Load(); s != last {
				last, lastAt = s, now
			} else if now.Sub(lastAt) > stall {
				return fmt.Errorf("nothing committed for %v, at %d of %d transactions", stall, s, m.load.Len())
			}
		}
	}
}

// percentiles returns the median, 99th percentile and maximum of d, which
// it sorts.
func percentiles(d []time.Duration) (p50, p99, top time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(d))+0.5) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	return at(0.50), at(0.99), d[len(d)-1]
}

// closeInto runs f and adds its error to *err.
func closeInto(err *error, f func() error) {
	if cerr := f(); cerr != nil {
		*err = errors.Join(*err, cerr)
	}
}

// Summary is the median of several runs of one app and path. Each figure
// is the median of that figure over the runs, so it need not come from a
// single run.
type Summary struct {
	App         App
	Path        string
	Runs        int
	PerSecond   float64
	P50, P99    time.Duration
	AvgPerBlock float64
}

// Summarize returns the medians of rs, which must share an app and path.
func Summarize(rs []Result) Summary {
	if len(rs) == 0 {
		return Summary{}
	}
	s := Summary{App: rs[0].App, Path: rs[0].Path, Runs: len(rs)}
	s.PerSecond = median(rs, func(r Result) float64 { return r.PerSecond })
	s.P50 = time.Duration(median(rs, func(r Result) float64 { return float64(r.P50) }))
	s.P99 = time.Duration(median(rs, func(r Result) float64 { return float64(r.P99) }))
	s.AvgPerBlock = median(rs, Result.AvgPerBlock)
	return s
}

// median is the median of f over rs; of an even count, the mean of the
// middle two.
func median(rs []Result, f func(Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
