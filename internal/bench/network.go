package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/abci/example/kvstore"
	abcitypes "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/node"
)

// A run's nodes all live in this process. That works: node.Start gives
// each node its own stores, keys, ABCI mutex and P2P switch, and CometBFT
// keeps no per-node global state (TestTwoValidators in internal/node runs
// two nodes). The exception is metrics: Prometheus allows one set per
// process, which node.Start shares between the nodes of a chain, and
// consensus.Metrics also holds a node's step start time, a data race when
// two nodes share it; so only node 0 has metrics. In-process nodes let one
// clock stamp a transaction's submission and its commit on every node,
// with no IPC in between. What differs from a real network: one Go runtime
// schedules and garbage-collects all nodes, and they share CometBFT's cache
// of expanded Ed25519 keys. On this two-core machine the nodes compete for
// the same CPUs either way.

// network is a run's validator nodes, node 0 first.
type network struct {
	genesis node.Genesis
	members []*member
	log     *slog.Logger
}

// member is one node of a network with its application.
type member struct {
	cfg    node.Config
	nodeID string
	node   *node.Node
	meter  *meter
	ledger *ledger.App // nil for the kvstore
	close  func() error
}

// startNetwork starts cfg.Validators validator nodes for l's app under
// home, and waits until they make blocks together. Node 0's meter releases
// in-flight tokens with release and writes cfg.Trace. It returns the
// network even on failure, for stop to clean up what did start.
func startNetwork(ctx context.Context, home string, l *Load, cfg Config, release func(int)) (*network, error) {
	nw := &network{log: cfg.Log}
	var valKeys []ed25519.PublicKey
	for i := range cfg.Validators {
		name := "node" + strconv.Itoa(i)
		nc, err := nodeConfig(filepath.Join(home, name), "bench-"+name, cfg)
		if err != nil {
			return nw, err
		}
		vk, id, err := node.EnsureKeys(nc)
		if err != nil {
			return nw, err
		}
		valKeys = append(valKeys, vk)
		nw.members = append(nw.members, &member{cfg: nc, nodeID: id})
	}
	g, err := l.genesis(valKeys)
	if err != nil {
		return nw, err
	}
	nw.genesis = g
	for i, mb := range nw.members {
		// In a mesh every node names every other, as WriteTestnet writes
		// it; in a star node 0 names all, the others node 0.
		var peers []string
		for j, p := range nw.members {
			if j != i && (cfg.Topology != TopologyStar || i == 0 || j == 0) {
				peers = append(peers, p.address())
			}
		}
		mb.cfg.PersistentPeers = strings.Join(peers, ",")
		// CometBFT's metrics only on node 0: a process has one set, which
		// node.Start hands every node of the chain, and consensus.Metrics
		// also keeps a node's step start time, which two running nodes
		// would race on.
		mb.cfg.Metrics = i == 0
		if err := node.WriteGenesis(mb.cfg, g); err != nil {
			return nw, err
		}
	}
	for i, mb := range nw.members {
		var (
			rel   func(int)
			trace io.Writer
		)
		if i == 0 {
			rel, trace = release, cfg.Trace
		}
		if err := mb.start(ctx, l, rel, trace, cfg.Log); err != nil {
			return nw, fmt.Errorf("node %d: %w", i, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, mb := range nw.members {
		if err := mb.node.WaitForHeight(wctx, 2); err != nil {
			return nw, fmt.Errorf("couldn't see node %d make blocks: %w", i, err)
		}
	}
	return nw, nil
}

// address is the member's node-id@host:port, as peers name it.
func (mb *member) address() string {
	return mb.nodeID + "@" + strings.TrimPrefix(mb.cfg.P2PListen, "tcp://")
}

// start opens a fresh application for l's app under the member's home,
// wraps it in a meter (with release and trace, either nil), and starts the
// node around it.
func (mb *member) start(ctx context.Context, l *Load, release func(int), trace io.Writer, log *slog.Logger) error {
	var app abcitypes.Application
	switch l.app {
	case IMI, Access:
		// As a district node keeps it: its own goleveldb under the home.
		la, err := ledger.Open(filepath.Join(mb.cfg.Home, "state"), log, nil)
		if err != nil {
			return err
		}
		mb.ledger, mb.close, app = la, la.Close, la
	case KVStore:
		// kvstore.NewPersistentApplication, without its panic.
		db, err := dbm.NewGoLevelDB("kvstore", filepath.Join(mb.cfg.Home, "kvstore"))
		if err != nil {
			return fmt.Errorf("couldn't open kvstore database: %w", err)
		}
		kv := kvstore.NewApplication(db)
		mb.close, app = kv.Close, kv
	default:
		return fmt.Errorf("unknown app %q", l.app)
	}
	mb.meter = newMeter(app, l, release)
	mb.meter.trace = trace
	n, err := node.Start(ctx, mb.cfg, mb.meter, log)
	if err != nil {
		return err
	}
	mb.node = n
	return nil
}

// stop stops the member's node, then closes its application.
func (mb *member) stop() error {
	var errs []error
	if mb.node != nil {
		errs = append(errs, mb.node.Stop())
	}
	if mb.close != nil {
		errs = append(errs, mb.close())
	}
	return errors.Join(errs...)
}

// checkState checks that the member's application holds what the blocks
// committed of l: committed of its transactions succeeded.
func (mb *member) checkState(l *Load, committed int) error {
	switch {
	case mb.ledger == nil:
		return nil
	case l.app == Access:
		return mb.checkAccess(l, committed)
	}
	return mb.checkResidents(committed)
}

// checkResidents checks that an IMI ledger counts as many residents as the
// blocks committed registrations.
func (mb *member) checkResidents(committed int) error {
	if mb.ledger == nil {
		return nil
	}
	meta, _, err := mb.ledger.Meta(0)
	if err != nil {
		return fmt.Errorf("couldn't read the ledger's resident count: %w", err)
	}
	if meta.Residents != uint64(committed) {
		return fmt.Errorf("the ledger counts %d residents, the blocks committed %d registrations", meta.Residents, committed)
	}
	return nil
}

// stop stops every node, last first.
func (nw *network) stop() error {
	var errs []error
	for i := len(nw.members) - 1; i >= 0; i-- {
		if err := nw.members[i].stop(); err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// meters are the members' meters, node 0's first.
func (nw *network) meters() []*meter {
	ms := make([]*meter, len(nw.members))
	for i, mb := range nw.members {
		ms[i] = mb.meter
	}
	return ms
}

// agree waits until every node has committed node 0's last height h, and
// checks that all have the same block at h and the same app hash after it.
func (nw *network) agree(ctx context.Context, wait time.Duration) (h int64, appHash []byte, err error) {
	first := nw.members[0]
	h = first.meter.height.Load()
	appHash = first.meter.appHash(h)
	block, err := first.node.Block(h)
	if err != nil {
		return 0, nil, fmt.Errorf("node 0: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for i, mb := range nw.members[1:] {
		if err := mb.node.WaitForHeight(ctx, h); err != nil {
			return 0, nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		b, err := mb.node.Block(h)
		if err != nil {
			return 0, nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		if !bytes.Equal(b.Header.Hash(), block.Header.Hash()) {
			return 0, nil, fmt.Errorf("nodes 0 and %d committed different blocks at height %d: %X and %X", i+1, h, block.Header.Hash(), b.Header.Hash())
		}
		if got := mb.meter.appHash(h); !bytes.Equal(got, appHash) {
			return 0, nil, fmt.Errorf("nodes 0 and %d disagree on the app hash after height %d: %X and %X", i+1, h, appHash, got)
		}
	}
	return h, appHash, nil
}

// JoinResult is how a new node caught up with the network by block sync.
type JoinResult struct {
	// Height is the network's height when the node started: the blocks it
	// had to fetch, verify and execute.
	Height int64
	// Txs is how many of the load's transactions those blocks carried:
	// all of them.
	Txs int
	// Elapsed runs from starting the node to its application's commit of
	// block Height.
	Elapsed time.Duration
	// BlocksPerSecond and TxsPerSecond are Height and Txs over Elapsed.
	BlocksPerSecond, TxsPerSecond float64
	// AppHash is the new node's app hash after Height, the same as node
	// 0's.
	AppHash []byte
}

// join starts a fresh non-validator node with a fresh application, peered
// with node 0 only, and times its block sync to node 0's current height.
// The network keeps making (empty) blocks meanwhile, as a live one would.
func (nw *network) join(ctx context.Context, l *Load, cfg Config) (res JoinResult, err error) {
	first := nw.members[0]
	nc, err := nodeConfig(filepath.Join(filepath.Dir(first.cfg.Home), "join"), "bench-join", cfg)
	if err != nil {
		return res, err
	}
	nc.PersistentPeers = first.address()
	nc.Metrics = false // node 0 has them; see startNetwork
	if _, _, err := node.EnsureKeys(nc); err != nil {
		return res, err
	}
	if err := node.WriteGenesis(nc, nw.genesis); err != nil {
		return res, err
	}

	res.Height = first.meter.height.Load()
	mb := &member{cfg: nc}
	start := time.Now()
	err = mb.start(ctx, l, nil, nil, cfg.Log)
	defer func() {
		if serr := mb.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("joining node: %w", serr))
		}
	}()
	if err != nil {
		return res, fmt.Errorf("joining node: %w", err)
	}

	// Poll the meter rather than the node: it marks the application's
	// commit itself, and counts the load's transactions as they execute.
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	last, lastAt := int64(0), start
	for {
		h := mb.meter.height.Load()
		if h >= res.Height {
			break
		}
		now := time.Now()
		if h != last {
			last, lastAt = h, now
		} else if now.Sub(lastAt) > cfg.Stall {
			return res, fmt.Errorf("joining node: no block synced for %v, at height %d of %d", cfg.Stall, h, res.Height)
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("joining node at height %d of %d: %w", h, res.Height, context.Cause(ctx))
		case <-t.C:
		}
	}
	res.Elapsed = time.Since(start)
	res.Txs = int(mb.meter.settled.Load())
	res.BlocksPerSecond = float64(res.Height) / res.Elapsed.Seconds()
	res.TxsPerSecond = float64(res.Txs) / res.Elapsed.Seconds()
	res.AppHash = mb.meter.appHash(res.Height)
	if want := first.meter.appHash(res.Height); !bytes.Equal(res.AppHash, want) {
		return res, fmt.Errorf("joining node: app hash after height %d is %X, node 0's is %X", res.Height, res.AppHash, want)
	}
	if res.Txs != l.Len() {
		return res, fmt.Errorf("joining node executed %d of the load's %d transactions", res.Txs, l.Len())
	}
	if err := mb.checkState(l, l.Len()-first.meter.rejected); err != nil {
		return res, fmt.Errorf("joining node: %w", err)
	}
	return res, nil
}
