package node

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Home: "/srv/imi"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cfg.cometConfig()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"root", cc.RootDir, filepath.Join("/srv/imi", "comet")},
		{"p2p listen", cc.P2P.ListenAddress, DefaultP2PListen},
		{"pex", cc.P2P.PexReactor, false},
		{"rpc listen", cc.RPC.ListenAddress, ""},
		{"grpc listen", cc.RPC.GRPCListenAddress, ""},
		{"pprof listen", cc.RPC.PprofListenAddress, ""},
		{"timeout commit", cc.Consensus.TimeoutCommit, 500 * time.Millisecond},
		{"create empty blocks", cc.Consensus.CreateEmptyBlocks, true},
		{"empty blocks interval", cc.Consensus.CreateEmptyBlocksInterval, time.Second},
		{"mempool size", cc.Mempool.Size, 50000},
		{"max tx bytes", cc.Mempool.MaxTxBytes, 64 * 1024},
		{"recheck", cc.Mempool.Recheck, true},
		{"tx indexer", cc.TxIndex.Indexer, "null"},
		{"prometheus listener", cc.Instrumentation.Prometheus, false},
		{"genesis file", cc.GenesisFile(), filepath.Join("/srv/imi", "comet", "config", "genesis.json")},
		{"node key file", cc.NodeKeyFile(), filepath.Join("/srv/imi", "comet", "config", "node_key.json")},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestConfigSettings(t *testing.T) {
	cfg, err := Config{
		Home:                "/srv/imi",
		Moniker:             "city-hall",
		P2PListen:           "tcp://0.0.0.0:26656",
		PersistentPeers:     "0123456789abcdef0123456789abcdef01234567@10.0.0.2:26656",
		AllowDuplicateIP:    true,
		TimeoutCommit:       2 * time.Second,
		EmptyBlocksInterval: 10 * time.Second,
		MempoolSize:         10,
		MaxTxBytes:          1000,
		CometRPCListen:      "tcp://127.0.0.1:26657",
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cfg.cometConfig()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"moniker", cc.Moniker, "city-hall"},
		{"p2p listen", cc.P2P.ListenAddress, "tcp://0.0.0.0:26656"},
		{"persistent peers", cc.P2P.PersistentPeers, cfg.PersistentPeers},
		{"duplicate IP", cc.P2P.AllowDuplicateIP, true},
		{"timeout commit", cc.Consensus.TimeoutCommit, 2 * time.Second},
		{"empty blocks interval", cc.Consensus.CreateEmptyBlocksInterval, 10 * time.Second},
		{"mempool size", cc.Mempool.Size, 10},
		{"max tx bytes", cc.Mempool.MaxTxBytes, 1000},
		{"rpc listen", cc.RPC.ListenAddress, "tcp://127.0.0.1:26657"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no home", Config{}},
		{"negative timeout", Config{Home: "h", TimeoutCommit: -1}},
		{"negative interval", Config{Home: "h", EmptyBlocksInterval: -1}},
		{"negative mempool", Config{Home: "h", MempoolSize: -1}},
		{"negative tx size", Config{Home: "h", MaxTxBytes: -1}},
		{"long chain ID", Config{Home: "h", ChainID: "123456789012345678901234567890123456789012345678901"}},
		{"state sync, one RPC server", Config{Home: "h", StateSync: goodStateSync(func(s *StateSync) { s.RPCServers = s.RPCServers[:1] })}},
		{"state sync, empty RPC server", Config{Home: "h", StateSync: goodStateSync(func(s *StateSync) { s.RPCServers[1] = "" })}},
		{"state sync, no trusted height", Config{Home: "h", StateSync: goodStateSync(func(s *StateSync) { s.TrustHeight = 0 })}},
		{"state sync, short trusted hash", Config{Home: "h", StateSync: goodStateSync(func(s *StateSync) { s.TrustHash = s.TrustHash[:20] })}},
		{"state sync, negative trust period", Config{Home: "h", StateSync: goodStateSync(func(s *StateSync) { s.TrustPeriod = -time.Hour })}},
		{"state sync, short discovery", Config{Home: "h", StateSync: goodStateSync(func(s *StateSync) { s.DiscoveryTime = time.Second })}},
	}
	for _, tt := range tests {
		if _, err := tt.cfg.withDefaults(); err == nil {
			t.Errorf("%s: withDefaults succeeded", tt.name)
		}
	}
}

// goodStateSync is a valid state sync setting, changed by f.
func goodStateSync(f func(*StateSync)) StateSync {
	s := StateSync{
		Enable:      true,
		RPCServers:  []string{"http://10.0.0.2:26657", "http://10.0.0.3:26657"},
		TrustHeight: 1200,
		TrustHash:   bytes.Repeat([]byte{0xab}, 32),
	}
	f(&s)
	return s
}

func TestConfigStateSync(t *testing.T) {
	// Off by default; the settings are ignored while it is off.
	cfg, err := Config{Home: "/srv/imi", StateSync: StateSync{RPCServers: []string{"x"}}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cfg.cometConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cc.StateSync.Enable || len(cc.StateSync.RPCServers) != 0 {
		t.Errorf("state sync off, but CometBFT's is %+v", cc.StateSync)
	}

	cfg, err = Config{Home: "/srv/imi", StateSync: goodStateSync(func(*StateSync) {})}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	cc, err = cfg.cometConfig()
	if err != nil {
		t.Fatal(err)
	}
	ss := cc.StateSync
	tests := []struct {
		name      string
		got, want any
	}{
		{"enable", ss.Enable, true},
		{"rpc servers", strings.Join(ss.RPCServers, ","), "http://10.0.0.2:26657,http://10.0.0.3:26657"},
		{"trust height", ss.TrustHeight, int64(1200)},
		{"trust hash", ss.TrustHash, strings.Repeat("ab", 32)},
		{"trust period", ss.TrustPeriod, DefaultTrustPeriod},
		{"discovery time", ss.DiscoveryTime, DefaultDiscoveryTime},
		{"chunk spool", ss.TempDir, filepath.Join("/srv/imi", "comet", "data")},
		{"chunk fetchers", ss.ChunkFetchers, int32(4)},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}
