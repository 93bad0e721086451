// Package node runs a CometBFT v0.38 node inside the IMI process, around an
// ABCI application: it creates the node's keys and genesis file, starts and
// stops consensus, submits transactions to the mempool, and reads the chain
// data (headers, commits, validator sets) that light-client proofs are
// checked against.
//
// A query proof for application state at height H is checked against the
// app hash in the header of block H+1; that header is authentic if its
// commit carries signatures of more than two thirds of the voting power of
// the validator set at H+1. Block, ValidatorSet and Block.Verify supply and
// check those pieces.
package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	abcitypes "github.com/cometbft/cometbft/abci/types"
	cmtcfg "github.com/cometbft/cometbft/config"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	cmtlog "github.com/cometbft/cometbft/libs/log"
	mempl "github.com/cometbft/cometbft/mempool"
	cmtnode "github.com/cometbft/cometbft/node"
	"github.com/cometbft/cometbft/proxy"
	sm "github.com/cometbft/cometbft/state"
	cmttypes "github.com/cometbft/cometbft/types"
)

var (
	// ErrMempoolFull means the mempool holds as many transactions as it
	// may, or is still rechecking them after a block; try again later.
	ErrMempoolFull = errors.New("mempool full")
	// ErrTxTooLarge means the transaction exceeds Config.MaxTxBytes, or
	// could never fit in a block.
	ErrTxTooLarge = errors.New("transaction too large")
	// ErrTxInCache means the node has seen this exact transaction recently:
	// it is in the mempool, or was committed.
	ErrTxInCache = errors.New("transaction already seen")
	// ErrStopped means the node was stopped.
	ErrStopped = errors.New("node stopped")
	// ErrHeightUnavailable means the node has no data for the requested
	// height: it is in the future, or below the oldest height kept.
	ErrHeightUnavailable = errors.New("height not available")
)

// Node is a running CometBFT node. Its methods are safe for concurrent use.
type Node struct {
	comet  *cmtnode.Node
	state  sm.Store
	dbs    *dbSet
	logger *slog.Logger
	// stopping turns CometBFT's shutdown noise from errors into info.
	stopping *atomic.Bool
	chainID  string
	nodeID   string

	// mu keeps readers of CometBFT's stores out while Stop closes them.
	mu      sync.RWMutex
	stopped bool

	stopOnce sync.Once
	stopErr  error
}

// Start starts a CometBFT node for app, with keys (created if absent, see
// EnsureKeys) and genesis (see WriteGenesis) under cfg.Home. On a home that
// has run before, it resumes the chain: the handshake replays into app any
// blocks it hasn't committed, so app may even start empty.
//
// ctx bounds the startup, notably that replay; it does not bound the node's
// life, which ends with Stop. If the genesis time is in the future, Start
// waits until then. A nil logger means slog.Default().
//
// CometBFT calls app from its own goroutines, but never two calls at once.
// Stop doesn't close app.
func Start(ctx context.Context, cfg Config, app abcitypes.Application, logger *slog.Logger) (*Node, error) {
	if logger == nil {
		logger = slog.Default()
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("couldn't start node: %w", err)
	}
	cc, err := cfg.cometConfig()
	if err != nil {
		return nil, err
	}
	nodeKey, pv, err := loadOrGenKeys(cc.BaseConfig)
	if err != nil {
		return nil, err
	}
	genesis, err := readGenesisDoc(cc.GenesisFile())
	if err != nil {
		return nil, err
	}
	if cfg.ChainID != "" && genesis.ChainID != cfg.ChainID {
		return nil, fmt.Errorf("couldn't start node: genesis is for chain %q, configured chain is %q", genesis.ChainID, cfg.ChainID)
	}
	metrics := nopMetrics()
	if cfg.Metrics {
		if metrics, err = prometheusMetrics(genesis.ChainID); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("couldn't start node: %w", err)
	}

	dbs := new(dbSet)
	stopping := new(atomic.Bool)
	cn, err := cmtnode.NewNodeWithContext(ctx, cc, pv, nodeKey,
		// One mutex around all four ABCI connections (consensus, mempool,
		// query, snapshot): app never sees two calls at once and needs no
		// locking of its own. The connection-synchronised creator gives
		// each connection its own mutex, so CheckTx and Query would run
		// during FinalizeBlock and Commit; that is faster only for an app
		// that guards its state itself, and IMI's load doesn't call for it.
		proxy.NewLocalClientCreator(app),
		func() (*cmttypes.GenesisDoc, error) { return genesis, nil },
		dbs.provider,
		metrics.provider(),
		newCometLogger(logger, cfg.LogLevel, stopping),
	)
	if err != nil {
		// Release the databases' file locks, so a retry in this process
		// can open them.
		return nil, errors.Join(fmt.Errorf("couldn't create CometBFT node: %w", err), dbs.closeAll())
	}
	fail := func(err error) (*Node, error) {
		return nil, errors.Join(err, abandon(cn, dbs))
	}
	// CometBFT keeps the genesis it first started with and ignores the file
	// afterwards; a changed file would mean this node isn't running the
	// chain the operator thinks it is.
	if !sameGenesis(cn.GenesisDoc(), genesis) {
		return fail(fmt.Errorf("couldn't start node: %s differs from the genesis this chain started from", cc.GenesisFile()))
	}
	env, err := cn.ConfigureRPC()
	if err != nil {
		return fail(fmt.Errorf("couldn't get CometBFT state store: %w", err))
	}
	if err := cn.Start(); err != nil {
		return fail(fmt.Errorf("couldn't start CometBFT node: %w", err))
	}

	n := &Node{
		comet:    cn,
		state:    env.StateStore,
		dbs:      dbs,
		logger:   logger,
		stopping: stopping,
		chainID:  genesis.ChainID,
		nodeID:   string(nodeKey.ID()),
	}
	logger.Info("started CometBFT node",
		"chain_id", n.chainID,
		"node_id", n.nodeID,
		"validator", pv.Key.Address.String(),
		"height", cn.BlockStore().Height(),
		"p2p", cfg.P2PListen)
	return n, nil
}

// abandon releases what NewNode set up for a node that won't run.
func abandon(cn *cmtnode.Node, dbs *dbSet) error {
	// OnStop directly, as Stop refuses a node that never started: it stops
	// the event bus and closes the transport and stores. Silenced, because
	// it complains at error level that the switch never started; database
	// errors still come back through dbs.
	cn.Switch().SetLogger(cmtlog.NewNopLogger())
	cn.SetLogger(cmtlog.NewNopLogger())
	cn.OnStop()
	var errs []error
	if err := cn.ProxyApp().Stop(); err != nil {
		errs = append(errs, fmt.Errorf("couldn't stop ABCI connections: %w", err))
	}
	errs = append(errs, dbs.closeAll())
	return errors.Join(errs...)
}

// sameGenesis compares two validated genesis documents by their canonical
// encoding.
func sameGenesis(a, b *cmttypes.GenesisDoc) bool {
	ja, erra := cmtjson.Marshal(a)
	jb, errb := cmtjson.Marshal(b)
	return erra == nil && errb == nil && bytes.Equal(ja, jb)
}

// Stop stops the node and closes its databases. It is safe to call more
// than once; later calls return the first call's result. Once Stop returns,
// the node makes no more calls into the application.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		n.mu.Lock()
		n.stopped = true
		n.mu.Unlock()
		n.stopping.Store(true)

		var errs []error
		if err := n.comet.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("couldn't stop CometBFT node: %w", err))
		}
		// NewNode starts the ABCI connections, but the node's OnStop
		// leaves them running.
		if err := n.comet.ProxyApp().Stop(); err != nil {
			errs = append(errs, fmt.Errorf("couldn't stop ABCI connections: %w", err))
		}
		errs = append(errs, n.dbs.closeAll())
		n.stopErr = errors.Join(errs...)
		n.logger.Info("stopped CometBFT node", "chain_id", n.chainID)
	})
	return n.stopErr
}

// CheckTx submits tx to the mempool and returns the application's CheckTx
// response, like CometBFT's broadcast_tx_sync. A response with a non-zero
// Code is the application rejecting tx, and comes with a nil error. The
// node's own refusals are ErrMempoolFull, ErrTxTooLarge and ErrTxInCache.
//
// A zero Code means tx is in the mempool and being gossiped, except in two
// rare races CometBFT doesn't report: the mempool filling up while the
// application checked tx, or (if blocks have a gas limit) tx wanting more
// gas than a block allows.
func (n *Node) CheckTx(ctx context.Context, tx []byte) (*abcitypes.ResponseCheckTx, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("couldn't check transaction: %w", err)
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.stopped {
		return nil, ErrStopped
	}
	// Buffered: the mempool calls back at most once, and must not block.
	resCh := make(chan *abcitypes.ResponseCheckTx, 1)
	err := n.comet.Mempool().CheckTx(tx, func(res *abcitypes.ResponseCheckTx) {
		resCh <- res
	}, mempl.TxInfo{SenderID: mempl.UnknownPeerID})
	if err != nil {
		return nil, mempoolError(err)
	}
	select {
	case res := <-resCh:
		return res, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("couldn't get CheckTx result: %w", ctx.Err())
	}
}

// mempoolError translates the mempool's errors into this package's.
func mempoolError(err error) error {
	var (
		full     mempl.ErrMempoolIsFull
		tooLarge mempl.ErrTxTooLarge
		preCheck mempl.ErrPreCheck
	)
	switch {
	case errors.Is(err, mempl.ErrTxInCache):
		return ErrTxInCache
	case errors.Is(err, mempl.ErrRecheckFull):
		return fmt.Errorf("%w: rechecking transactions after a block", ErrMempoolFull)
	case errors.As(err, &full):
		return fmt.Errorf("%w: %d transactions, %d bytes", ErrMempoolFull, full.NumTxs, full.TxsBytes)
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTxTooLarge, tooLarge.Actual, tooLarge.Max)
	case errors.As(err, &preCheck):
		// The only pre-check CometBFT installs compares the transaction
		// with the most data a block may carry.
		return fmt.Errorf("%w: %v", ErrTxTooLarge, preCheck.Err)
	default:
		return fmt.Errorf("couldn't add transaction to mempool: %w", err)
	}
}

// Query sends req to the application's Query, serialised with block
// execution like every ABCI call.
func (n *Node) Query(ctx context.Context, req *abcitypes.RequestQuery) (*abcitypes.ResponseQuery, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.stopped {
		return nil, ErrStopped
	}
	res, err := n.comet.ProxyApp().Query().Query(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("couldn't query application: %w", err)
	}
	return res, nil
}

// waitPoll is how often WaitForHeight looks at the chain; small next to
// the time between blocks.
const waitPoll = 20 * time.Millisecond

// WaitForHeight returns once block h is committed and the application has
// committed its state after it, so queries see block h's effects. It fails
// with ctx's error, or ErrStopped if the node stops first.
func (n *Node) WaitForHeight(ctx context.Context, h int64) error {
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for {
		cur, err := n.committedHeight()
		if err != nil {
			return err
		}
		if cur >= h {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("couldn't reach height %d, at %d: %w", h, cur, ctx.Err())
		case <-t.C:
		}
	}
}

// committedHeight is the last height the application has committed. The
// block store's height can be one ahead of it while the block executes.
func (n *Node) committedHeight() (int64, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.stopped {
		return 0, ErrStopped
	}
	st, err := n.state.Load()
	if err != nil {
		return 0, fmt.Errorf("couldn't load consensus state: %w", err)
	}
	return st.LastBlockHeight, nil
}

// dbSet opens CometBFT's databases and remembers them, so they can be
// closed even when CometBFT fails before it would close them itself.
type dbSet struct {
	mu  sync.Mutex
	dbs []*onceClosedDB
}

func (s *dbSet) provider(ctx *cmtcfg.DBContext) (dbm.DB, error) {
	db, err := cmtcfg.DefaultDBProvider(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &onceClosedDB{DB: db}
	s.dbs = append(s.dbs, d)
	return d, nil
}

func (s *dbSet) closeAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, d := range s.dbs {
		if err := d.Close(); err != nil {
			errs = append(errs, fmt.Errorf("couldn't close database: %w", err))
		}
	}
	return errors.Join(errs...)
}

// onceClosedDB makes Close idempotent: the node closes its stores, and
// dbSet closes whatever is left.
type onceClosedDB struct {
	dbm.DB
	once sync.Once
	err  error
}

func (d *onceClosedDB) Close() error {
	d.once.Do(func() { d.err = d.DB.Close() })
	return d.err
}
