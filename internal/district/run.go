package district

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	cmtjson "github.com/cometbft/cometbft/libs/json"
	"github.com/prometheus/client_golang/prometheus"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/node"
	"github.com/imi-city/imi/internal/service"
)

// RunOptions are the per-start settings that are not in imi.toml.
type RunOptions struct {
	// HTTP overrides the configured API address when set.
	HTTP string
	// P2P overrides the configured CometBFT listen address when set.
	P2P string
	// Log receives the node's log; nil discards it.
	Log *slog.Logger
	// Ready is called once the API listens, with its address.
	Ready func(Info)
}

// Info describes a running node, for the operator.
type Info struct {
	Home    string
	HTTP    string
	ChainID string
	NodeID  string
	Height  int64
	// StaffFile lists the portal's staff accounts; DemoStaff is the file
	// with the demo district's staff passphrases, "" if there is none.
	StaffFile string
	DemoStaff string
}

// ledgerMetrics is registered once per process: Prometheus refuses a second
// registration, and a process runs one node outside tests.
var ledgerMetrics *ledger.Metrics

// Run runs the node in home until ctx ends, then shuts down cleanly: the
// API stops taking requests, CometBFT stops, the state database closes.
func Run(ctx context.Context, home string, opts RunOptions) error {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := LoadConfig(home)
	if err != nil {
		return err
	}
	nc, err := cfg.nodeConfig(home)
	if err != nil {
		return err
	}
	if opts.P2P != "" {
		nc.P2PListen = opts.P2P
	}
	nc.AllowDuplicateIP = loopbackListen(nc.P2PListen)
	g, err := cfg.genesis()
	if err != nil {
		return fmt.Errorf("%s: genesis: %w", ConfigFile, err)
	}
	if err := node.WriteGenesis(nc, g); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("the [genesis] section of %s no longer matches this chain's genesis; after the first block, change authorities with `imi authority propose`: %w", ConfigFile, err)
		}
		return err
	}
	if ledgerMetrics == nil {
		ledgerMetrics = ledger.NewMetrics(prometheus.DefaultRegisterer)
	} else {
		nc.Metrics = false
	}
	app, err := ledger.Open(filepath.Join(home, "state"), log, ledgerMetrics)
	if err != nil {
		return err
	}
	defer app.Close()
	// Before the node starts: its handshake may replay blocks due for one.
	if err := app.EnableSnapshots(cfg.snapshotConfig(home)); err != nil {
		return err
	}
	if nc.CometRPCListen != "" {
		err := portFree(nc.CometRPCListen)
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			// The RPC serves other nodes' light clients, not this node: a
			// node whose port is taken (a copy of a home started beside
			// the original, say) runs without it rather than not at all.
			log.Error("not serving CometBFT's RPC; nodes joining by state sync cannot use this node as an rpc_server", "comet_rpc", nc.CometRPCListen, "err", err)
			nc.CometRPCListen = ""
		case err != nil:
			return fmt.Errorf("%s: state_sync.comet_rpc: %w", ConfigFile, err)
		}
	}
	if nc.StateSync.Enable && app.Height() == 0 {
		log.Info("joining by state sync", "rpc_servers", strings.Join(nc.StateSync.RPCServers, ","), "trust_height", nc.StateSync.TrustHeight)
	}
	n, err := node.Start(ctx, nc, app, log.With("module", "cometbft"))
	if err != nil {
		return fmt.Errorf("couldn't start the node: %w", err)
	}
	defer n.Stop()

	addr := cfg.HTTP
	if opts.HTTP != "" {
		addr = opts.HTTP
	}
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("couldn't listen for the API on %s: %w", addr, err)
	}
	keys := issuerKeys(home, log)
	store, err := service.OpenStore(filepath.Join(home, "data", "offchain"))
	if err != nil {
		return err
	}
	defer store.Close()
	desk, err := service.NewDesk(service.DeskConfig{App: app, Chain: NewChain(n), Store: store, Keys: keys, Log: log.With("module", "desk")})
	if err != nil {
		return err
	}
	api := httpapi.New(app, NewChain(n), httpapi.Config{IssuerKeys: keys, Desk: desk}, log.With("module", "http"))
	idle, err := cfg.portalIdleTimeout()
	if err != nil {
		return err
	}
	portal, err := newPortal(home, "http://"+ln.Addr().String(), app, desk, store, keys, idle, cfg.PortalBehindProxy, log.With("module", "web"))
	if err != nil {
		return err
	}
	// The API keeps its paths; the portal has the rest.
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	mux.Handle("/healthz", api)
	mux.Handle("/metrics", api)
	mux.Handle("/", portal)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	st := n.Status()
	log.Info("node running", "chain_id", st.ChainID, "node_id", st.NodeID, "http", ln.Addr().String(), "height", st.LatestHeight)
	if opts.Ready != nil {
		opts.Ready(Info{Home: home, HTTP: ln.Addr().String(), StaffFile: StaffFile(home), DemoStaff: demoStaffIfAny(home), ChainID: st.ChainID, NodeID: st.NodeID, Height: st.LatestHeight})
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("the API server stopped: %w", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("API shutdown", "err", err)
	}
	if err := n.Stop(); err != nil {
		return fmt.Errorf("couldn't stop the node cleanly: %w", err)
	}
	log.Info("stopped")
	return nil
}

// portFree reports whether CometBFT could listen on addr (tcp://host:port).
func portFree(addr string) error {
	ln, err := net.Listen("tcp", strings.TrimPrefix(addr, "tcp://"))
	if err != nil {
		return err
	}
	return ln.Close()
}

// NewChain adapts a running node to what the API needs.
func NewChain(n *node.Node) httpapi.Chain { return chain{n} }

type chain struct{ n *node.Node }

func (c chain) Submit(ctx context.Context, raw []byte) (*abci.ResponseCheckTx, error) {
	res, err := c.n.CheckTx(ctx, raw)
	switch {
	case errors.Is(err, node.ErrTxInCache):
		return nil, fmt.Errorf("%w: %w", httpapi.ErrInCache, err)
	case errors.Is(err, node.ErrMempoolFull):
		return nil, fmt.Errorf("%w: %w", httpapi.ErrMempoolFull, err)
	case errors.Is(err, node.ErrTxTooLarge):
		return nil, fmt.Errorf("%w: %w", httpapi.ErrTooLarge, err)
	}
	return res, err
}

func (c chain) Status() httpapi.ChainStatus {
	s := c.n.Status()
	out := httpapi.ChainStatus{
		NodeID: s.NodeID, LatestHeight: s.LatestHeight, LatestAppHash: hex.EncodeToString(s.LatestAppHash),
		LatestBlock: hex.EncodeToString(s.LatestBlockHash), LatestTime: s.LatestBlockTime, CatchingUp: s.CatchingUp, Peers: s.Peers,
	}
	for _, v := range s.Validators {
		out.Validators = append(out.Validators, httpapi.Validator{Address: hex.EncodeToString(v.Address), PubKey: base64.StdEncoding.EncodeToString(v.PubKey), Power: v.Power})
	}
	return out
}

// SignedBlock is the light-client evidence for one block: its header, the
// commit signing it and the validator set that signed.
type SignedBlock struct {
	Header     json.RawMessage `json:"header"`
	Commit     json.RawMessage `json:"commit"`
	Validators json.RawMessage `json:"validators"`
	Canonical  bool            `json:"canonical"`
}

func (c chain) Commit(h int64) (any, error) {
	b, err := c.n.Block(h)
	if err != nil {
		return nil, err
	}
	vals, err := c.n.ValidatorSet(h)
	if err != nil {
		return nil, err
	}
	enc := func(v any) (json.RawMessage, error) { return cmtjson.Marshal(v) }
	hdr, err := enc(b.Header)
	if err != nil {
		return nil, err
	}
	cm, err := enc(b.Commit)
	if err != nil {
		return nil, err
	}
	vs, err := enc(vals)
	if err != nil {
		return nil, err
	}
	return SignedBlock{Header: hdr, Commit: cm, Validators: vs, Canonical: b.Canonical}, nil
}

// issuerKeys loads every authority key this home holds (keys/<id>.key), so
// the node can sign those authorities' status-list tokens: founding ones and
// ones that joined later by a vote alike. A key that is not an authority's
// current key is refused when a token is asked for.
func issuerKeys(home string, log *slog.Logger) map[string]key.Private {
	out := map[string]key.Private{}
	files, _ := filepath.Glob(filepath.Join(home, "keys", "*.key"))
	for _, f := range files {
		id := strings.TrimSuffix(filepath.Base(f), ".key")
		if f == UniquenessKeyFile(home) {
			continue
		}
		k, err := key.ReadFile(f)
		if err != nil {
			continue // not an authority key (the registrars' HMAC key, say)
		}
		out[id] = k
	}
	log.Info("status lists signed here", "authorities", len(out))
	return out
}
