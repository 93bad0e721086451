// Package bench measures how many transactions an IMI network commits per
// second, and what limits it.
//
// A run starts a fresh network of one or more validator nodes, all in this
// process on loopback, each in a temporary home on disk like a district
// node, around one of two applications under identical node settings:
// IMI's ledger, loaded with resident registrations or with batches of
// access records (App Access), or CometBFT's kvstore example, loaded with
// key=value pairs of a registration's size. The kvstore does next to
// nothing per transaction, so its rate is the consensus engine's ceiling
// on this machine: what IMI would reach with a free state machine.
//
// An access load needs its residents' consents on the ledger first. Run
// commits them in a setup phase before the clock starts.
//
// The load is made and signed before timing. The clock runs from the first
// submission until the block holding the last transaction is committed by
// the application of the node it was submitted to; each transaction's
// latency runs from its submission to that commit. Speed is only ever
// measured by a load run (imi bench), never a timed unit test: the machine
// is shared and noisy, so compare medians of several runs, and apps against
// each other within one invocation.
//
// A run can end by timing a new node's block sync of the chain it made
// (Config.Join), re-executing every block. The benchmark's nodes take no
// snapshots, so state sync is measured by the e2e test
// TestStateSyncVersusBlockSync instead.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imi-city/imi/internal/node"
	"github.com/imi-city/imi/internal/tx"
)

// App names an application to benchmark.
type App string

// The applications.
const (
	IMI     App = "imi"
	KVStore App = "kvstore"
	// Access is IMI's ledger loaded with access records, under standing
	// consents committed before timing.
	Access App = "access"
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

// Where the node path submits transactions.
const (
	// SubmitFirst submits every transaction to node 0, as a registrar's
	// counters all talk to the registrar's own node; the other validators
	// get them by mempool gossip.
	SubmitFirst = "node0"
	// SubmitRoundRobin submits stream s to node s mod Validators, as
	// several authorities would each take their own registrations.
	SubmitRoundRobin = "round-robin"
)

// How the validators of a run are peered.
const (
	// TopologyMesh has every node name every other as a persistent peer,
	// as WriteTestnet writes a district's testnet.
	TopologyMesh = "mesh"
	// TopologyStar has nodes 1.. peer with node 0 only. Each of them then
	// receives the load's transactions from a single connection, in
	// order; see Config.Topology.
	TopologyStar = "star"
)

// Defaults for zero Config fields, and limits.
const (
	DefaultInFlight = 25_000
	// DefaultAccessInFlight is the default InFlight of an access load.
	// Its transactions are batches of 128 records, which the ledger
	// executes at tens a second: 25,000 in flight would only queue, and
	// every latency would be the queue's length. 128 batches are what
	// about a second and a half of the 10,000 records a second aimed for
	// amount to, enough to have a block's worth checked while the last
	// block executes.
	DefaultAccessInFlight = 128
	DefaultStall          = 2 * time.Minute
	// MaxValidators bounds Config.Validators: each node of a run holds a
	// ledger with its own caches in this one process.
	MaxValidators = 16
)

// Config is one run's settings. The zero value is usable.
type Config struct {
	// Path is PathNode (the default) or PathHTTP, which needs an IMI load.
	Path string

	// Validators is the number of validator nodes, of equal power, all in
	// this process, each with its own home, keys and application, peered
	// over loopback as Topology says. Default: 1.
	Validators int

	// Topology is TopologyMesh (the default) or TopologyStar.
	//
	// Why a star at all: in a mesh, a node gets the same registrar lane's
	// transactions from several peers at once, and CometBFT v0.38's mempool
	// may then store two of them in the opposite order to the one the
	// ledger checked them in (it adds a transaction to its list after the
	// application's lock is released). A proposal reaped from that node
	// carries sequence n+1 before n; the block rejects n+1 and the rest of
	// the lane. A star has one path per node and so no such race, at the
	// cost of every consensus message crossing node 0.
	Topology string

	// Submit is, on the node path, where transactions enter: SubmitFirst
	// (the default) or SubmitRoundRobin. The HTTP path always posts to
	// node 0's API. A transaction's latency is measured on the node it was
	// submitted to.
	Submit string

	// Join, after the load is committed, starts one more node, a fresh
	// non-validator peered with node 0 only, and measures how long block
	// sync takes it to reach the network's height (Result.Join).
	Join bool

	// InFlight bounds, on the node path, how many of the load's
	// transactions are submitted and not yet committed. It keeps the
	// mempool fed yet below its size (node.DefaultMempoolSize), so no
	// submission is refused as "mempool full" in the steady state.
	// Default: DefaultInFlight, DefaultAccessInFlight for an access load.
	InFlight int

	// TimeoutCommit is the node's pause after each block (see
	// node.Config). Zero: node.DefaultTimeoutCommit, what a district node
	// runs with.
	TimeoutCommit time.Duration

	// Dir holds the run's temporary node homes, removed afterwards.
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
	App        App
	Path       string
	Submit     string
	Validators int
	Topology   string

	// N is the number of transactions submitted; Committed were executed
	// successfully in committed blocks, Rejected were committed with a
	// non-zero result code.
	N, Committed, Rejected int

	// Elapsed runs from the first submission to the commit of the block
	// holding the last transaction (on the HTTP path: to the last answer).
	Elapsed time.Duration
	// PerSecond is Committed / Elapsed.
	PerSecond float64

	// Records is, for an access load, the access records the committed
	// transactions carried, and RecordsPerSecond is Records / Elapsed;
	// both are zero for the other apps.
	Records          int
	RecordsPerSecond float64

	// Setup is how long committing the load's setup transactions (an
	// access load's consents) took on every node, before timing started.
	Setup time.Duration

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

	// Height is a height every node had committed after the run, and
	// AppHash the app hash after it, the same on every node.
	Height  int64
	AppHash []byte

	// FirstRejection describes the first rejected transaction, if any.
	FirstRejection string

	// Join is what Config.Join measured; nil without it.
	Join *JoinResult
}

// AvgPerBlock is the mean number of the load's transactions per block
// that carried any.
func (r Result) AvgPerBlock() float64 {
	if r.TxBlocks == 0 {
		return 0
	}
	return float64(r.N) / float64(r.TxBlocks)
}

// Run runs l once against a fresh network and returns what it measured.
// It fails if any transaction is refused, nothing commits for cfg.Stall,
// or the nodes end up disagreeing on the chain or the state.
func Run(ctx context.Context, l *Load, cfg Config) (res Result, err error) {
	if cfg.Path == "" {
		cfg.Path = PathNode
	}
	if cfg.Submit == "" || cfg.Path == PathHTTP {
		cfg.Submit = SubmitFirst
	}
	if cfg.Validators == 0 {
		cfg.Validators = 1
	}
	if cfg.Topology == "" {
		cfg.Topology = TopologyMesh
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = DefaultInFlight
		if l.app == Access {
			cfg.InFlight = DefaultAccessInFlight
		}
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
	case cfg.Submit != SubmitFirst && cfg.Submit != SubmitRoundRobin:
		return res, fmt.Errorf("unknown submission %q (use %s or %s)", cfg.Submit, SubmitFirst, SubmitRoundRobin)
	case cfg.Topology != TopologyMesh && cfg.Topology != TopologyStar:
		return res, fmt.Errorf("unknown topology %q (use %s or %s)", cfg.Topology, TopologyMesh, TopologyStar)
	case cfg.Validators < 1 || cfg.Validators > MaxValidators:
		return res, fmt.Errorf("%d validators: use 1 to %d", cfg.Validators, MaxValidators)
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

	// sem holds one token per submitted, uncommitted transaction; node 0's
	// commits release them (every node commits the same blocks).
	sem := make(chan struct{}, cfg.InFlight)
	release := func(n int) {
		for range n {
			<-sem
		}
	}
	if cfg.Path == PathHTTP {
		release = nil // HTTP clients pace themselves: one request each at a time
	}
	nw, err := startNetwork(ctx, home, l, cfg, release)
	defer func() {
		if nw != nil {
			err = errors.Join(err, nw.stop())
		}
	}()
	if err != nil {
		return res, err
	}
	first := nw.members[0]
	setupTook, err := setup(ctx, nw, l, cfg.Stall)
	if err != nil {
		return res, err
	}

	var api *apiServer
	if cfg.Path == PathHTTP {
		if api, err = startAPI(first.ledger, first.node, cfg.Log); err != nil {
			return res, err
		}
		defer closeInto(&err, api.close)
	}

	// targets[s] is the node stream s is submitted to.
	targets := make([]*member, l.Streams())
	for s := range targets {
		targets[s] = first
		if cfg.Submit == SubmitRoundRobin {
			targets[s] = nw.members[s%len(nw.members)]
		}
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
			if err := submitNode(rctx, targets, l, first.meter, sem, &retries); err != nil {
				stop(err)
			}
		})
	case PathHTTP:
		wg.Go(func() {
			lat, end, err := submitHTTP(rctx, api.url, l, first.meter, &retries)
			if err != nil {
				stop(err)
				return
			}
			clientLat, clientEnd = lat, end
		})
	}
	// Every node, not only those submitted to, must commit every
	// transaction; the clock stops at the commits on the submitted-to
	// nodes, below.
	waitErr := waitDone(rctx, nw.meters(), cfg.Stall)
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
		// A refusal often follows an earlier transaction of its stream
		// that a block carried but couldn't execute.
		for i, mb := range nw.members {
			if r := mb.meter.firstRejected(); r != "" {
				waitErr = fmt.Errorf("%w (node %d had committed %s)", waitErr, i, r)
				break
			}
		}
		return res, waitErr
	}

	m := first.meter
	res = Result{
		App: l.app, Path: cfg.Path, Submit: cfg.Submit, Validators: cfg.Validators, Topology: cfg.Topology,
		N:           l.Len(),
		Rejected:    m.rejected,
		Committed:   l.Len() - m.rejected,
		Blocks:      int(m.lastHeight - m.firstHeight + 1),
		TxBlocks:    m.txBlocks,
		MaxPerBlock: m.maxPerBlock,
		Retries:     int(retries.Load()),

		FirstRejection: m.firstRejected(),
		Setup:          setupTook,
	}
	var lat []time.Duration
	var end time.Time
	if cfg.Path == PathHTTP {
		lat, end = clientLat, clientEnd
	} else {
		// Each transaction's latency on the node it was submitted to; the
		// run ends with the last of those commits.
		lat = make([]time.Duration, l.Len())
		var last int64
		for i := range lat {
			at := targets[l.streamOf(i)].meter.committedAt[i]
			lat[i] = time.Duration(at - m.sent[i].Load())
			last = max(last, at)
		}
		end = time.Unix(0, last)
	}
	res.Elapsed = end.Sub(start)
	res.PerSecond = float64(res.Committed) / res.Elapsed.Seconds()
	res.Records = res.Committed * l.Records()
	res.RecordsPerSecond = float64(res.Records) / res.Elapsed.Seconds()
	res.P50, res.P99, res.Max = percentiles(lat)

	if res.Height, res.AppHash, err = nw.agree(ctx, cfg.Stall); err != nil {
		return res, err
	}
	for i, mb := range nw.members {
		if err := mb.checkState(l, res.Committed); err != nil {
			return res, fmt.Errorf("node %d: %w", i, err)
		}
	}
	if cfg.Join {
		j, err := nw.join(ctx, l, cfg)
		res.Join = &j
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// nodeConfig is a node's configuration for either app: identical but for
// the home and name, so the two apps differ only in the application.
func nodeConfig(home, moniker string, cfg Config) (node.Config, error) {
	p2p, err := freeLoopback()
	if err != nil {
		return node.Config{}, err
	}
	return node.Config{
		Home:      home,
		ChainID:   ChainID,
		Moniker:   moniker,
		P2PListen: "tcp://" + p2p,
		// Every node of a run listens on 127.0.0.1; CometBFT would refuse
		// all but one peer from it otherwise.
		AllowDuplicateIP: true,
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
// node.CheckTx of targets[stream], each transaction once a token in sem is
// free.
func submitNode(ctx context.Context, targets []*member, l *Load, m *meter, sem chan struct{}, retries *atomic.Int64) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var wg sync.WaitGroup
	for s, stream := range l.streams {
		n := targets[s].node
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

// setup commits l's setup transactions, untimed: it submits them to node
// 0, from one goroutine per CPU, and waits until every node has committed
// them all. It fails if a block refuses one.
func setup(ctx context.Context, nw *network, l *Load, stall time.Duration) (time.Duration, error) {
	if len(l.setup) == 0 {
		return 0, nil
	}
	start := time.Now()
	n := nw.members[0].node
	var retries atomic.Int64
	if err := parallel(len(l.setup), func(j int) error {
		if err := checkTx(ctx, n, l.setup[j], &retries); err != nil {
			return fmt.Errorf("setup transaction %d: %w", j, err)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	want := int64(len(l.setup))
	for i, mb := range nw.members {
		last, lastAt := int64(-1), time.Now()
		for {
			if r := mb.meter.firstSetupRejected(); r != "" {
				return 0, fmt.Errorf("node %d committed %s", i, r)
			}
			got := mb.meter.setupSettled.Load()
			if got >= want {
				break
			}
			now := time.Now()
			if got != last {
				last, lastAt = got, now
			} else if now.Sub(lastAt) > stall {
				return 0, fmt.Errorf("node %d committed %d of %d setup transactions, then nothing for %v", i, got, want, stall)
			}
			select {
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			case <-t.C:
			}
		}
	}
	return time.Since(start), nil
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

// waitDone waits until every meter in ms has seen every transaction
// committed, ctx ends, or nothing commits on any of them for stall.
func waitDone(ctx context.Context, ms []*meter, stall time.Duration) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	settled := func() (sum int64) {
		for _, m := range ms {
			sum += m.settled.Load()
		}
		return sum
	}
	last, lastAt := settled(), time.Now()
	for _, m := range ms {
	wait:
		for {
			select {
			case <-m.done:
				break wait
			case <-ctx.Done():
				return context.Cause(ctx)
			case now := <-t.C:
				if s := settled(); s != last {
					last, lastAt = s, now
				} else if now.Sub(lastAt) > stall {
					return fmt.Errorf("nothing committed for %v, at %d of %d transactions on %d nodes", stall, s, int64(m.load.Len())*int64(len(ms)), len(ms))
				}
			}
		}
	}
	return nil
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
	App              App
	Path             string
	Runs             int
	PerSecond        float64
	RecordsPerSecond float64 // access loads only
	P50, P99         time.Duration
	AvgPerBlock      float64
}

// Summarize returns the medians of rs, which must share an app and path.
func Summarize(rs []Result) Summary {
	if len(rs) == 0 {
		return Summary{}
	}
	s := Summary{App: rs[0].App, Path: rs[0].Path, Runs: len(rs)}
	s.PerSecond = median(rs, func(r Result) float64 { return r.PerSecond })
	s.RecordsPerSecond = median(rs, func(r Result) float64 { return r.RecordsPerSecond })
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
