package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/bench"
	"github.com/imi-city/imi/internal/node"
)

func init() {
	register(&command{
		name:    "bench",
		summary: "measure registrations or access records committed per second by a local network, against CometBFT's kvstore",
		usage:   "[--app imi|kvstore|access|both|APP,APP...] [--consents P] [--validators V] [--topology mesh|star] [--submit node0|round-robin] [--join] [--n N] [--runs R] [--workers W] [--inflight F] [--timeout-commit D] [--http] [--clients C] [--dir DIR] [--trace] [--cpuprofile FILE]",
		examples: `  imi bench                                  # 3 runs of 100,000 txs each for imi and kvstore, alternating
  imi bench --app imi --n 20000 --runs 1 --cpuprofile imi.prof
  go tool pprof -top imi.prof
  imi bench --http --clients 1024            # also registrations through POST /v1/txs
  imi bench --validators 4 --n 100000        # a four-validator network in this process
  imi bench --app imi --n 1000000 --runs 1 --join   # then time a new node's block sync of the chain
  imi bench --app access --n 2000 --runs 3   # access records, 128 a transaction, under 10,000 standing consents
  imi bench --app access,kvstore --n 2000    # the same, alternating with kvstore runs of as many transactions`,
		run: runBench,
	})
}

// benchJob is one app and path to measure, with its load.
type benchJob struct {
	name     string
	load     *bench.Load
	path     string
	inflight int
	results  []bench.Result
}

func runBench(ctx context.Context, e *env, args []string) error {
	c := find("bench")
	fs := c.flags(e)
	appFlag := fs.String("app", "both", "application: imi (resident registrations), kvstore (CometBFT's example app, the engine's ceiling), access (IMI's ledger recording access records), both (imi and kvstore), or a comma-separated list")
	consents := fs.Int("consents", bench.DefaultConsents, "with --app access, residents whose standing consents are committed before timing; the records name them in turn")
	validators := fs.Int("validators", 1, fmt.Sprintf("validator nodes of equal power, in this process on loopback, fully peered (1 to %d)", bench.MaxValidators))
	topology := fs.String("topology", bench.TopologyMesh, "how validators peer: mesh (each with every other, as imi testnet writes them) or star (each with node 0 only)")
	submit := fs.String("submit", bench.SubmitFirst, "where the node path submits: node0 (all to node 0, gossip to the rest) or round-robin (stream s to node s mod V)")
	join := fs.Bool("join", false, "after each run, start a fresh non-validator node peered with node 0 and time its block sync to the network's height")
	n := fs.Int("n", 100_000, "transactions per run")
	runs := fs.Int("runs", 3, "runs per app; the median is reported")
	workers := fs.Int("workers", 16, "submitting goroutines on the node path; for imi one registrar lane each (at most 256)")
	inflight := fs.Int("inflight", bench.DefaultInFlight, "most transactions submitted and not yet committed, node path (keep below the mempool's "+fmt.Sprint(node.DefaultMempoolSize)+"); access loads default to "+fmt.Sprint(bench.DefaultAccessInFlight))
	timeoutCommit := fs.Duration("timeout-commit", node.DefaultTimeoutCommit, "the node's pause after each block")
	httpPath := fs.Bool("http", false, "also measure imi through the HTTP API (POST /v1/txs on loopback)")
	clients := fs.Int("clients", 1024, "concurrent HTTP clients with --http, one registrar lane each (256 lanes per registrar)")
	dir := fs.String("dir", "", "directory for the temporary node homes (default: the system's temporary directory)")
	cpuprofile := fs.String("cpuprofile", "", "after the timed runs, profile one more run of each app and write the CPU profile of its timed part here (kvstore's to FILE with -kvstore before the extension)")
	trace := fs.Bool("trace", false, "print a line per block: the application's execute and commit times, and the gap before it")
	if err := parse(fs, args); err != nil {
		return err
	}
	inflightSet := false
	fs.Visit(func(f *flag.Flag) { inflightSet = inflightSet || f.Name == "inflight" })
	apps, err := parseApps(*appFlag)
	if err != nil {
		return err
	}
	switch {
	case *n <= 0, *runs <= 0, *inflight <= 0, *clients <= 0, *consents <= 0:
		return fmt.Errorf("%w: --n, --runs, --inflight, --clients and --consents must be positive", errUsage)
	case *workers <= 0 || *workers > 256:
		return fmt.Errorf("%w: --workers must be between 1 and 256", errUsage)
	case *validators < 1 || *validators > bench.MaxValidators:
		return fmt.Errorf("%w: --validators must be between 1 and %d", errUsage, bench.MaxValidators)
	case *topology != bench.TopologyMesh && *topology != bench.TopologyStar:
		return fmt.Errorf("%w: --topology %q: use %s or %s", errUsage, *topology, bench.TopologyMesh, bench.TopologyStar)
	case *submit != bench.SubmitFirst && *submit != bench.SubmitRoundRobin:
		return fmt.Errorf("%w: --submit %q: use %s or %s", errUsage, *submit, bench.SubmitFirst, bench.SubmitRoundRobin)
	case *inflight >= node.DefaultMempoolSize:
		return fmt.Errorf("%w: --inflight must stay below the mempool size, %d", errUsage, node.DefaultMempoolSize)
	}
	if *httpPath && !slices.Contains(apps, bench.IMI) {
		return fmt.Errorf("%w: --http measures imi through the API: name imi in --app", errUsage)
	}

	fmt.Fprintf(e.stdout, "imi bench: %d CPUs (GOMAXPROCS %d), %s; %d runs of %d transactions per app\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), *runs, *n)
	fmt.Fprintf(e.stdout, "network: %s, timeout_commit %v, mempool %d, recheck on, metrics on, state on disk; workers %d, in flight ≤ %d\n",
		describeNetwork(*validators, *topology, *submit), *timeoutCommit, node.DefaultMempoolSize, *workers, *inflight)
	if *join {
		fmt.Fprintf(e.stdout, "join: after each run a fresh non-validator node, peered with node 0, block-syncs the chain, re-executing every block (the benchmark's nodes take no snapshots; state sync is measured by the e2e test TestStateSyncVersusBlockSync)\n")
	}

	var jobs []*benchJob
	for _, app := range apps {
		jobs = append(jobs, &benchJob{name: string(app), path: bench.PathNode})
		if app == bench.IMI && *httpPath {
			jobs = append(jobs, &benchJob{name: "imi", path: bench.PathHTTP})
		}
	}
	for _, j := range jobs {
		streams := *workers
		if j.path == bench.PathHTTP {
			streams = *clients
		}
		t0 := time.Now()
		var l *bench.Load
		if bench.App(j.name) == bench.Access {
			l, err = bench.NewAccessLoad(*n, streams, *consents)
		} else {
			l, err = bench.NewLoad(bench.App(j.name), *n, streams)
		}
		if err != nil {
			return err
		}
		j.load, j.inflight = l, *inflight
		if l.App() == bench.Access && !inflightSet {
			j.inflight = bench.DefaultAccessInFlight
		}
		fmt.Fprintf(e.stdout, "made %d %s transactions (%d bytes on average, %d streams) in %v, before timing\n",
			l.Len(), j.name, l.AvgBytes(), l.Streams(), time.Since(t0).Round(time.Millisecond))
		if l.Records() > 0 {
			fmt.Fprintf(e.stdout, "  %d access records, %d a transaction, naming %d residents in turn; each run first commits their %d standing consents, untimed; in flight ≤ %d\n",
				l.Len()*l.Records(), l.Records(), l.Setup(), l.Setup(), j.inflight)
		}
	}

	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := bench.Config{
		Validators: *validators, Topology: *topology, Submit: *submit, Join: *join,
		TimeoutCommit: *timeoutCommit, Dir: *dir, Log: log,
	}
	if *trace {
		cfg.Trace = e.stdout
	}
	fmt.Fprintf(e.stdout, "\n%-4s %-8s %-5s %9s %10s %8s %8s %8s %7s %9s %7s\n",
		"run", "app", "path", "txs", "per sec", "p50", "p99", "max", "blocks", "txs/block", "retries")
	for r := range *runs {
		// Rotate the order every run, so a slow spell of the machine
		// doesn't always hit the same app.
		for k := range jobs {
			j := jobs[(k+r)%len(jobs)]
			cfg.Path, cfg.InFlight = j.path, j.inflight
			res, err := bench.Run(ctx, j.load, cfg)
			if err != nil {
				return fmt.Errorf("run %d of %s (%s): %w", r+1, j.name, j.path, err)
			}
			j.results = append(j.results, res)
			fmt.Fprintf(e.stdout, "%-4d %-8s %-5s %9d %10.0f %8s %8s %8s %7d %9.0f %7d\n",
				r+1, j.name, j.path, res.Committed, res.PerSecond, ms(res.P50), ms(res.P99), ms(res.Max),
				res.TxBlocks, res.AvgPerBlock(), res.Retries)
			if res.Rejected > 0 {
				fmt.Fprintf(e.stdout, "     %d rejected in blocks; the first: %s\n", res.Rejected, res.FirstRejection)
			}
			if j.load.Records() > 0 {
				fmt.Fprintf(e.stdout, "     %d access records committed: %.0f records/s; all allowed in %d residents' logs on every node; the consents took %.1f s before timing\n",
					res.Records, res.RecordsPerSecond, min(j.load.Setup(), bench.AccessChecked), res.Setup.Seconds())
			}
			if *validators > 1 {
				fmt.Fprintf(e.stdout, "     all %d nodes at height %d, app hash %X\n", *validators, res.Height, res.AppHash)
			}
			if jr := res.Join; jr != nil {
				fmt.Fprintf(e.stdout, "     join (block sync): %d blocks, %d %s, in %.1f s: %.1f blocks/s, %.0f txs/s; app hash at %d %X = node 0's\n",
					jr.Height, jr.Txs, txNoun(j.name), jr.Elapsed.Seconds(), jr.BlocksPerSecond, jr.TxsPerSecond, jr.Height, jr.AppHash)
			}
		}
	}

	fmt.Fprintf(e.stdout, "\nmedian of %d runs:\n", *runs)
	sums := map[string]bench.Summary{}
	for _, j := range jobs {
		s := bench.Summarize(j.results)
		sums[j.name+"/"+j.path] = s
		fmt.Fprintf(e.stdout, "  %-8s %-5s %10.0f /s   p50 %s  p99 %s  %6.0f txs/block\n",
			j.name, j.path, s.PerSecond, ms(s.P50), ms(s.P99), s.AvgPerBlock)
		if j.load.Records() > 0 {
			fmt.Fprintf(e.stdout, "  %-8s %-5s %10.0f records/s\n", j.name, j.path, s.RecordsPerSecond)
		}
	}
	if kv, ok := sums["kvstore/node"]; ok {
		for _, app := range []string{"imi", "access"} {
			if s, ok := sums[app+"/node"]; ok {
				fmt.Fprintf(e.stdout, "  %-16s %10.3f   (of the medians; per run: %s)\n", app+"/kvstore", s.PerSecond/kv.PerSecond, ratios(jobs, app))
			}
		}
	}

	if *cpuprofile != "" {
		for _, j := range jobs {
			if j.path != bench.PathNode {
				continue
			}
			path := *cpuprofile
			if j.name != string(apps[0]) {
				ext := filepath.Ext(path)
				path = strings.TrimSuffix(path, ext) + "-" + j.name + ext
			}
			if err := profileRun(ctx, e.stdout, j, cfg, path); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseApps reads --app: one app, both (imi and kvstore), or a list.
func parseApps(flag string) ([]bench.App, error) {
	if flag == "both" {
		return []bench.App{bench.IMI, bench.KVStore}, nil
	}
	var apps []bench.App
	for name := range strings.SplitSeq(flag, ",") {
		app := bench.App(name)
		switch {
		case app != bench.IMI && app != bench.KVStore && app != bench.Access:
			return nil, fmt.Errorf("%w: --app %q: use imi, kvstore, access, both, or a list of them", errUsage, flag)
		case slices.Contains(apps, app):
			return nil, fmt.Errorf("%w: --app %q names %s twice", errUsage, flag, app)
		}
		apps = append(apps, app)
	}
	return apps, nil
}

// describeNetwork says what a run's network is.
func describeNetwork(validators int, topology, submit string) string {
	if validators == 1 {
		return "one validator"
	}
	to := "all submitted to node 0"
	if submit == bench.SubmitRoundRobin {
		to = "submitted round-robin"
	}
	return fmt.Sprintf("%d validators of equal power in this process on loopback, peered as a %s (%s, latency on the node submitted to)", validators, topology, to)
}

// txNoun names an app's transactions.
func txNoun(app string) string {
	switch bench.App(app) {
	case bench.IMI:
		return "registrations"
	case bench.Access:
		return "record_access transactions"
	}
	return "transactions"
}

// profileRun runs j once more under the CPU profiler, outside the table:
// the profiler's own cost stays out of the medians.
func profileRun(ctx context.Context, w io.Writer, j *benchJob, cfg bench.Config, path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("couldn't create CPU profile: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("couldn't write CPU profile: %w", cerr)
		}
	}()
	cfg.Path, cfg.InFlight, cfg.Profile, cfg.Join = j.path, j.inflight, f, false
	res, err := bench.Run(ctx, j.load, cfg)
	if err != nil {
		return fmt.Errorf("profiled run of %s: %w", j.name, err)
	}
	fmt.Fprintf(w, "profiled run of %s: %.0f/s; CPU profile of the timed part in %s (go tool pprof -top %s)\n",
		j.name, res.PerSecond, path, path)
	return nil
}

// ratios lists app/kvstore for each run, paired in order.
func ratios(jobs []*benchJob, app string) string {
	var got, kv []bench.Result
	for _, j := range jobs {
		switch {
		case j.name == app && j.path == bench.PathNode:
			got = j.results
		case j.name == "kvstore":
			kv = j.results
		}
	}
	var out []string
	for i := range min(len(got), len(kv)) {
		out = append(out, fmt.Sprintf("%.3f", got[i].PerSecond/kv[i].PerSecond))
	}
	return strings.Join(out, " ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
