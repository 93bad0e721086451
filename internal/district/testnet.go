package district

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/node"
)

// Defaults of TestnetOptions, and the layout WriteTestnet writes.
const (
	DefaultTestnetChainID  = "imi-testnet-1"
	DefaultTestnetBasePort = 26700
	// TestnetIndexFile, in the testnet's directory, lists its nodes.
	TestnetIndexFile = "testnet.json"
	// TestnetPower is the voting power of each testnet validator.
	TestnetPower = 10
	// p2pPortOffset separates a node's P2P port from its HTTP port, and so
	// bounds the number of nodes; rpcPortOffset its CometBFT RPC port.
	p2pPortOffset   = 100
	rpcPortOffset   = 200
	maxTestnetNodes = p2pPortOffset
	// DefaultTestnetSnapshotInterval: a testnet makes a block or two a
	// second, so a snapshot every minute or so.
	DefaultTestnetSnapshotInterval = 100
	// testnetDiscoveryTime is how long a node joining a testnet by state
	// sync gathers snapshot offers: its peers are on this host.
	testnetDiscoveryTime = "5s"
)

// TestnetOptions configures WriteTestnet.
type TestnetOptions struct {
	// Validators is the number of founding authorities, each running a
	// validator of power TestnetPower. At least 1.
	Validators int
	// Standby is the number of extra authorities that are not in the
	// genesis, each with a ready node home, to join later by a vote.
	Standby int
	// ChainID names the network. Default: DefaultTestnetChainID.
	ChainID string
	// BasePort places the nodes: node i serves HTTP on 127.0.0.1:BasePort+i,
	// listens for peers on 127.0.0.1:BasePort+100+i, and serves CometBFT's
	// RPC, for nodes joining by state sync, on 127.0.0.1:BasePort+200+i.
	// Default: DefaultTestnetBasePort.
	BasePort int
	// SnapshotInterval is every node's [state_sync] snapshot_interval.
	// Default: DefaultTestnetSnapshotInterval; negative: no snapshots.
	SnapshotInterval int64
	// GenesisTime is the time of the first block; the caller decides it,
	// and must set it.
	GenesisTime time.Time
}

// TestnetNode is one node home written by WriteTestnet.
type TestnetNode struct {
	// Name is node0, node1, ...
	Name string `json:"name"`
	// Home is DIR/node0, ...: start the node with imi node --home Home.
	Home string `json:"home"`
	// AuthorityID is the authority whose node it is. Its key, the only
	// authority key in the home, is KeyFile(Home, AuthorityID).
	AuthorityID string `json:"authority_id"`
	// HTTP and P2P are the node's API and peer addresses, host:port.
	HTTP string `json:"http"`
	P2P  string `json:"p2p"`
	// RPC is where the node serves CometBFT's RPC, host:port: what the
	// rpc_servers of a node joining by state sync name.
	RPC string `json:"rpc,omitempty"`
	// NodeID is the node's CometBFT ID, as peers name it.
	NodeID string `json:"node_id"`
	// ValidatorKey is the node's Ed25519 consensus public key.
	ValidatorKey []byte `json:"validator_key"`
	// AuthorityKey is the authority's signing key.
	AuthorityKey key.Public `json:"authority_key"`
	// Validator reports whether the node is in the genesis validator set;
	// the others are standby.
	Validator bool `json:"validator"`
	// KEMKey is the authority's published X25519 key (base64).
	KEMKey string `json:"kem_key"`
}

// Authority is n's authority as the genesis names a founding one: what an
// add_authority proposal for a standby node carries.
func (n TestnetNode) Authority() AuthorityConfig {
	a := demoAuthority{id: n.AuthorityID, roles: []string{"service_provider"}}
	if i := slices.IndexFunc(demoAuthorities, func(d demoAuthority) bool { return d.id == n.AuthorityID }); i >= 0 {
		a = demoAuthorities[i]
	} else if num, ok := strings.CutPrefix(n.AuthorityID, "authority-"); ok {
		if i, err := strconv.Atoi(num); err == nil {
			a = testnetAuthority(i)
		}
	}
	ac := a.config(n.AuthorityKey, "http://"+n.HTTP)
	ac.ValidatorKey, ac.Power = base64.StdEncoding.EncodeToString(n.ValidatorKey), TestnetPower
	ac.KEMKey = n.KEMKey
	return ac
}

// testnetIndex is the content of TestnetIndexFile. Homes are stored
// relative to the directory, so that it can be moved.
type testnetIndex struct {
	ChainID string        `json:"chain_id"`
	Nodes   []TestnetNode `json:"nodes"`
}

// testnetAuthority is the authority of node i: the demo district's four,
// then authority-4, authority-5, ... as service providers.
func testnetAuthority(i int) demoAuthority {
	if i < len(demoAuthorities) {
		return demoAuthorities[i]
	}
	n := strconv.Itoa(i)
	return demoAuthority{"authority-" + n, "测试机构" + n, "Test Authority " + n, []string{"service_provider"}}
}

// WriteTestnet writes the homes of a network of authority nodes on
// loopback under dir, which must be empty or absent, and returns them.
//
// Every home has the same [genesis] in its imi.toml (and so the same
// CometBFT genesis.json, written too): the founding authorities with their
// nodes' validator keys at power TestnetPower, their endpoints, and the demo
// credential types of those of them that issue one. Each home has its own
// CometBFT keys, persistent_peers naming every other founding node (a
// standby node names all of them), and under keys/ only its own authority's
// key, plus the registrars' uniqueness key on a registrar's node. The first
// four authorities are the demo district's (cc-psb, cc-hrss, cc-hsb,
// cc-utility, with their roles); later ones are authority-N, service
// providers. Standby nodes come after the founding ones, with the same
// genesis, which does not name their authorities: they join by a proposal.
func WriteTestnet(dir string, o TestnetOptions) ([]TestnetNode, error) {
	if o.ChainID == "" {
		o.ChainID = DefaultTestnetChainID
	}
	if o.BasePort == 0 {
		o.BasePort = DefaultTestnetBasePort
	}
	total := o.Validators + o.Standby
	switch {
	case o.Validators < 1:
		return nil, errors.New("a testnet needs at least one validator")
	case o.Standby < 0:
		return nil, errors.New("negative number of standby nodes")
	case total > maxTestnetNodes:
		return nil, fmt.Errorf("at most %d nodes: P2P ports are %d above HTTP ports", maxTestnetNodes, p2pPortOffset)
	case o.BasePort < 1 || o.BasePort+rpcPortOffset+total-1 > 65535:
		return nil, fmt.Errorf("base port %d leaves no room for %d nodes (ports up to base+%d)", o.BasePort, total, rpcPortOffset+total-1)
	case len(o.ChainID) > cmttypes.MaxChainIDLen:
		return nil, fmt.Errorf("chain ID longer than %d bytes", cmttypes.MaxChainIDLen)
	case o.GenesisTime.IsZero():
		return nil, errors.New("genesis time not set")
	}
	if err := emptyDir(dir); err != nil {
		return nil, err
	}

	nodes := make([]TestnetNode, total)
	for i := range nodes {
		n := &nodes[i]
		a := testnetAuthority(i)
		n.Name = "node" + strconv.Itoa(i)
		n.Home = filepath.Join(dir, n.Name)
		n.AuthorityID = a.id
		n.HTTP = net.JoinHostPort("127.0.0.1", strconv.Itoa(o.BasePort+i))
		n.P2P = net.JoinHostPort("127.0.0.1", strconv.Itoa(o.BasePort+p2pPortOffset+i))
		n.RPC = net.JoinHostPort("127.0.0.1", strconv.Itoa(o.BasePort+rpcPortOffset+i))
		n.Validator = i < o.Validators
		if err := os.Mkdir(n.Home, 0o700); err != nil {
			return nil, fmt.Errorf("couldn't create %s: %w", n.Home, err)
		}
		vk, id, err := node.EnsureKeys(node.Config{Home: n.Home, ChainID: o.ChainID})
		if err != nil {
			return nil, err
		}
		n.ValidatorKey, n.NodeID = vk, id
		k, err := key.Generate()
		if err != nil {
			return nil, err
		}
		if err := k.WriteFile(KeyFile(n.Home, a.id)); err != nil {
			return nil, err
		}
		n.AuthorityKey = k.Public()
		if n.KEMKey, err = kemPublic(k); err != nil {
			return nil, err
		}
	}

	// One imi.toml per node, differing only in the settings above [genesis].
	c := demoConfig(o.ChainID, "", "", o.GenesisTime)
	for _, n := range nodes[:o.Validators] {
		c.Genesis.Authorities = append(c.Genesis.Authorities, n.Authority())
	}
	c.Genesis.CredentialTypes = demoCredentialTypes(c.Genesis.Authorities)
	c.Genesis.Services = demoServices(c.Genesis.Authorities)
	// The registrars share one uniqueness key, so that each finds a person
	// another one registered.
	hk, err := key.GenerateHMAC()
	if err != nil {
		return nil, err
	}
	for i, n := range nodes {
		c.Moniker, c.HTTP, c.P2P = n.Name, n.HTTP, "tcp://"+n.P2P
		var peers []string
		for j, p := range nodes[:o.Validators] {
			if j != i {
				peers = append(peers, p.NodeID+"@"+p.P2P)
			}
		}
		c.PersistentPeers = strings.Join(peers, ",")
		c.StateSync = testnetStateSync(o, n, nodes[:o.Validators])
		if err := os.WriteFile(filepath.Join(n.Home, ConfigFile), c.encodeFile(), 0o600); err != nil {
			return nil, fmt.Errorf("couldn't write configuration: %w", err)
		}
		// The genesis as Run will read it, from the file just written.
		rc, err := LoadConfig(n.Home)
		if err != nil {
			return nil, err
		}
		g, err := rc.genesis()
		if err != nil {
			return nil, err
		}
		if err := node.WriteGenesis(node.Config{Home: n.Home, ChainID: o.ChainID}, g); err != nil {
			return nil, err
		}
		if slices.Contains(testnetAuthority(i).roles, "registrar") {
			if err := hk.WriteFile(UniquenessKeyFile(n.Home)); err != nil {
				return nil, err
			}
		}
	}

	idx := testnetIndex{ChainID: o.ChainID, Nodes: slices.Clone(nodes)}
	for i := range idx.Nodes {
		idx.Nodes[i].Home = idx.Nodes[i].Name
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, err
	}
	// Public keys and addresses only: the index may be shared.
	if err := os.WriteFile(filepath.Join(dir, TestnetIndexFile), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("couldn't write %s: %w", TestnetIndexFile, err)
	}
	return nodes, nil
}

// testnetStateSync is the [state_sync] section of node n: every node takes
// snapshots and serves CometBFT's RPC on loopback, and names two founding
// nodes' RPC (the same one twice if there is only one) for when it joins
// by state sync. Joining is off: the operator turns it on for a node not
// yet started, with a trusted height and hash from a running node.
func testnetStateSync(o TestnetOptions, n TestnetNode, founders []TestnetNode) StateSyncConfig {
	iv := o.SnapshotInterval
	switch {
	case iv == 0:
		iv = DefaultTestnetSnapshotInterval
	case iv < 0:
		iv = 0
	}
	s := StateSyncConfig{SnapshotInterval: &iv, CometRPC: "tcp://" + n.RPC, DiscoveryTime: testnetDiscoveryTime, RPCServers: []string{}}
	for _, f := range founders {
		if f.Name != n.Name && len(s.RPCServers) < 2 {
			s.RPCServers = append(s.RPCServers, "http://"+f.RPC)
		}
	}
	if len(s.RPCServers) == 1 {
		s.RPCServers = append(s.RPCServers, s.RPCServers[0])
	}
	return s
}

// emptyDir creates dir, or checks that it exists and is empty.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("couldn't create %s: %w", dir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("couldn't read %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty; write a testnet into a new directory", dir)
	}
	return nil
}

// ReadTestnet reads the nodes of the testnet WriteTestnet wrote into dir,
// from its TestnetIndexFile.
func ReadTestnet(dir string) ([]TestnetNode, error) {
	b, err := os.ReadFile(filepath.Join(dir, TestnetIndexFile))
	if err != nil {
		return nil, fmt.Errorf("couldn't read testnet: %w", err)
	}
	var idx testnetIndex
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&idx); err != nil {
		return nil, fmt.Errorf("couldn't read testnet: %s: %w", TestnetIndexFile, err)
	}
	if len(idx.Nodes) == 0 {
		return nil, fmt.Errorf("couldn't read testnet: %s lists no nodes", TestnetIndexFile)
	}
	for i := range idx.Nodes {
		n := &idx.Nodes[i]
		if !filepath.IsLocal(n.Home) {
			return nil, fmt.Errorf("couldn't read testnet: node %q: home %q is outside %s", n.Name, n.Home, dir)
		}
		n.Home = filepath.Join(dir, n.Home)
	}
	return idx.Nodes, nil
}
