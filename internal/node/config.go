package node

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	cmttypes "github.com/cometbft/cometbft/types"
)

// Defaults used for the zero value of the matching Config field.
const (
	DefaultP2PListen           = "tcp://127.0.0.1:26656"
	DefaultTimeoutCommit       = 500 * time.Millisecond
	DefaultEmptyBlocksInterval = 1 * time.Second
	DefaultMempoolSize         = 50_000
	DefaultMaxTxBytes          = 64 << 10
	DefaultTrustPeriod         = 168 * time.Hour
	DefaultDiscoveryTime       = 15 * time.Second
)

// Config is the node's configuration manual. Home is required; every other
// field has a usable zero value, which selects the default named in its
// comment.
type Config struct {
	// Home is the node's directory. CometBFT's own home (config/ with keys
	// and genesis.json, data/ with the block store, state and WAL) is
	// Home/comet; other IMI components may keep their data elsewhere under
	// Home.
	Home string

	// ChainID must match the chain_id of the genesis file. Empty accepts
	// whatever the genesis file says, for nodes joining an existing network.
	ChainID string

	// Moniker is the human-readable node name shown to peers. ASCII only.
	// Default: the host name.
	Moniker string

	// P2PListen is where CometBFT accepts peer connections, as
	// "tcp://host:port". Default: DefaultP2PListen, which is reachable only
	// from this host.
	P2PListen string

	// PersistentPeers lists peers to stay connected to, comma-separated, each
	// as node-id@host:port. Peers are not discovered otherwise: the node
	// doesn't exchange peer addresses, and accepts peers that dial it.
	PersistentPeers string

	// AllowDuplicateIP accepts several peers from one IP address. CometBFT
	// refuses that by default; turn it on when several nodes share a host
	// (tests) or a NAT gateway.
	AllowDuplicateIP bool

	// TimeoutCommit is how long the node waits after committing a block
	// before starting the next height, to collect straggling precommits.
	// Default: DefaultTimeoutCommit.
	TimeoutCommit time.Duration

	// EmptyBlocksInterval bounds how long the chain sits idle: when the
	// mempool is empty, a block (empty) is still proposed after this long.
	// Transactions don't wait for it; they go into the next block as soon as
	// TimeoutCommit has passed. Default: DefaultEmptyBlocksInterval.
	//
	// Why not create no empty blocks at all: IMI reads time from block
	// headers (consent expiry, credential validity), and a block's time is
	// the median of the votes that committed the previous block. After an
	// idle stretch a transaction's block would carry a time as stale as the
	// stretch was long. Proposing at least every EmptyBlocksInterval bounds
	// that staleness to about EmptyBlocksInterval+TimeoutCommit, at the cost
	// of roughly one small block per interval on disk.
	EmptyBlocksInterval time.Duration

	// MempoolSize is the most transactions the mempool holds; beyond it
	// CheckTx fails with ErrMempoolFull. Default: DefaultMempoolSize.
	MempoolSize int

	// MaxTxBytes is the largest transaction accepted; larger ones fail with
	// ErrTxTooLarge. Default: DefaultMaxTxBytes.
	MaxTxBytes int

	// CometRPCListen, if set (for example "tcp://127.0.0.1:26657"), serves
	// CometBFT's own JSON-RPC there, for debugging and CometBFT tooling,
	// and for the light clients of nodes that join by state sync (see
	// StateSync.RPCServers). Keep it on loopback or a private network: it
	// also takes transactions and reveals the node's view of its peers.
	// Default: empty, off: residents and apps use IMI's HTTP API.
	CometRPCListen string

	// StateSync lets a node with no chain data start from a snapshot of the
	// application state that its peers serve, instead of executing every
	// block since genesis. Default: off.
	StateSync StateSync

	// LogLevel is the lowest level of CometBFT's own log lines passed to the
	// slog.Logger given to Start. CometBFT's debug lines map to
	// slog.LevelDebug, info to slog.LevelInfo, errors to slog.LevelError.
	// Default: slog.LevelInfo.
	LogLevel slog.Level

	// Metrics registers CometBFT's Prometheus metrics (namespace "cometbft",
	// label chain_id) in prometheus.DefaultRegisterer. CometBFT doesn't serve
	// them itself; serve promhttp.Handler. Prometheus allows one registration
	// per metric name per process, so all nodes in a process with Metrics set
	// must share a chain ID, and they share the metrics: that only happens
	// in tests.
	Metrics bool
}

// StateSync configures CometBFT's state sync. It is used only while the
// node has no blocks: once it has synced (or started from genesis), the
// node goes on from its own data and ignores these settings.
//
// The node finds snapshots among its peers (the application must serve
// them, see ledger.App.EnableSnapshots), picks the newest, and restores
// it. Its light client checks the app hash of the snapshot's height
// against headers it fetches from RPCServers, starting from the one header
// the operator trusts: TrustHeight and TrustHash, taken from a node the
// operator trusts (GET /v1/status's chain.latest_height and
// chain.latest_block_hash, or GET /v1/blocks/{h}/commit's
// commit.block_id.hash). A node that state synced has no blocks below the
// snapshot's height.
type StateSync struct {
	// Enable turns state sync on.
	Enable bool
	// RPCServers are CometBFT RPC addresses ("http://host:port") of nodes
	// of the network (their CometRPCListen); CometBFT wants at least two,
	// the light client's primary and a witness it cross-checks.
	RPCServers []string
	// TrustHeight and TrustHash (the 32-byte header hash of that block) are
	// the light client's root of trust.
	TrustHeight int64
	TrustHash   []byte
	// TrustPeriod is how old the trusted header may be. Default:
	// DefaultTrustPeriod.
	TrustPeriod time.Duration
	// DiscoveryTime is how long the node collects snapshot offers from its
	// peers before it picks one; at least 5 s. Default:
	// DefaultDiscoveryTime.
	DiscoveryTime time.Duration
}

// cometHome is the directory CometBFT treats as its root.
func (c Config) cometHome() string { return filepath.Join(c.Home, "comet") }

// withDefaults fills in zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Home == "" {
		return c, errors.New("home directory not set")
	}
	if len(c.ChainID) > cmttypes.MaxChainIDLen {
		return c, fmt.Errorf("chain ID longer than %d bytes", cmttypes.MaxChainIDLen)
	}
	if c.P2PListen == "" {
		c.P2PListen = DefaultP2PListen
	}
	if c.TimeoutCommit == 0 {
		c.TimeoutCommit = DefaultTimeoutCommit
	}
	if c.EmptyBlocksInterval == 0 {
		c.EmptyBlocksInterval = DefaultEmptyBlocksInterval
	}
	if c.MempoolSize == 0 {
		c.MempoolSize = DefaultMempoolSize
	}
	if c.MaxTxBytes == 0 {
		c.MaxTxBytes = DefaultMaxTxBytes
	}
	switch {
	case c.TimeoutCommit < 0:
		return c, errors.New("negative commit timeout")
	case c.EmptyBlocksInterval < 0:
		return c, errors.New("negative empty blocks interval")
	case c.MempoolSize < 0:
		return c, errors.New("negative mempool size")
	case c.MaxTxBytes < 0:
		return c, errors.New("negative maximum transaction size")
	}
	if c.StateSync.Enable {
		ss := &c.StateSync
		if ss.TrustPeriod == 0 {
			ss.TrustPeriod = DefaultTrustPeriod
		}
		if ss.DiscoveryTime == 0 {
			ss.DiscoveryTime = DefaultDiscoveryTime
		}
		switch {
		case len(ss.RPCServers) < 2 || slices.Contains(ss.RPCServers, ""):
			return c, errors.New("state sync needs at least two RPC servers")
		case ss.TrustHeight < 1:
			return c, errors.New("state sync needs a trusted height")
		case len(ss.TrustHash) != sha256.Size:
			return c, fmt.Errorf("state sync needs the %d-byte hash of the trusted block", sha256.Size)
		case ss.TrustPeriod < 0:
			return c, errors.New("negative state sync trust period")
		case ss.DiscoveryTime < 5*time.Second:
			return c, errors.New("state sync discovery time shorter than 5s")
		}
	}
	return c, nil
}

// cometConfig translates c, which must have defaults applied, into
// CometBFT's configuration. Everything not set here keeps CometBFT's
// default.
func (c Config) cometConfig() (*cmtcfg.Config, error) {
	cc := cmtcfg.DefaultConfig()
	cc.SetRoot(c.cometHome())
	if c.Moniker != "" {
		cc.Moniker = c.Moniker
	}

	cc.P2P.ListenAddress = c.P2PListen
	cc.P2P.PersistentPeers = c.PersistentPeers
	cc.P2P.AllowDuplicateIP = c.AllowDuplicateIP
	// No peer exchange: nodes connect to PersistentPeers and accept whoever
	// dials them, as CometBFT advises for validators. It also keeps Stop
	// clean: the exchange's address book saves itself from a goroutine that
	// outlives the node's Stop, and nothing exported can wait for it.
	cc.P2P.PexReactor = false
	// Without peer exchange the address book only records connected peers;
	// strictness would just log errors for the private addresses a city
	// network is likely to use.
	cc.P2P.AddrBookStrict = false

	// An empty address turns CometBFT's RPC server off; node.OnStart checks.
	cc.RPC.ListenAddress = c.CometRPCListen
	cc.RPC.GRPCListenAddress = ""
	cc.RPC.PprofListenAddress = ""

	cc.Consensus.TimeoutCommit = c.TimeoutCommit
	cc.Consensus.CreateEmptyBlocks = true
	cc.Consensus.CreateEmptyBlocksInterval = c.EmptyBlocksInterval

	cc.Mempool.Type = cmtcfg.MempoolTypeFlood
	cc.Mempool.Size = c.MempoolSize
	cc.Mempool.MaxTxBytes = c.MaxTxBytes
	// Recheck after every block drops transactions the block made invalid
	// (a consent already revoked, a nonce already used), so they are not
	// proposed again.
	cc.Mempool.Recheck = true
	cc.Mempool.Broadcast = true

	if c.StateSync.Enable {
		ss := c.StateSync
		cc.StateSync.Enable = true
		cc.StateSync.RPCServers = slices.Clone(ss.RPCServers)
		cc.StateSync.TrustHeight = ss.TrustHeight
		cc.StateSync.TrustHash = hex.EncodeToString(ss.TrustHash)
		cc.StateSync.TrustPeriod = ss.TrustPeriod
		cc.StateSync.DiscoveryTime = ss.DiscoveryTime
		// Chunks are spooled beside the node's databases, not in the
		// system's temporary directory, which may be small or in memory.
		cc.StateSync.TempDir = cc.DBDir()
	}

	// The app keeps its own transaction records; CometBFT's indexer would
	// only duplicate them on disk.
	cc.TxIndex.Indexer = "null"
	// Per-block ABCI results serve only CometBFT's /block_results RPC. The
	// last block's are kept regardless, for crash recovery.
	cc.Storage.DiscardABCIResponses = true

	// Metrics are registered by our MetricsProvider; CometBFT must not start
	// its own HTTP listener for them.
	cc.Instrumentation.Prometheus = false

	if err := cc.ValidateBasic(); err != nil {
		return nil, fmt.Errorf("couldn't validate CometBFT config: %w", err)
	}
	return cc, nil
}
