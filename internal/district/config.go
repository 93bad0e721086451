// Package district runs an IMI node for a district: it reads the operator's
// configuration file, builds the genesis of the founding authorities, and
// wires the ledger, the CometBFT node and the HTTP API together.
package district

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/node"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// ConfigFile is the operator's configuration, relative to the home directory.
const ConfigFile = "imi.toml"

// Config is the configuration manual of a node: every field an operator may
// set is here, and imi.toml is this struct in TOML. Secrets are never in it:
// keys live in files under the home directory.
type Config struct {
	// ChainID names the network. Every node of one district uses the same.
	ChainID string `toml:"chain_id"`
	// Moniker is this node's name among its peers (ASCII).
	Moniker string `toml:"moniker"`
	// HTTP is where the node serves its API. Keep it on loopback unless a
	// reverse proxy with TLS stands in front.
	HTTP string `toml:"http"`
	// P2P is where CometBFT listens for the other authorities' nodes.
	P2P string `toml:"p2p"`
	// PersistentPeers are the other validators, as node-id@host:port,
	// comma-separated.
	PersistentPeers string `toml:"persistent_peers"`
	// TimeoutCommit is the pause after each block (Go duration, "500ms").
	TimeoutCommit string `toml:"timeout_commit"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// PortalIdleTimeout signs a portal session out after this long without
	// a request (Go duration; "" is 15 minutes).
	PortalIdleTimeout string `toml:"portal_idle_timeout"`
	// PortalBehindProxy says a TLS reverse proxy stands in front and appends
	// each client's address to X-Forwarded-For; sign-in limits then count
	// clients, not the proxy.
	PortalBehindProxy bool `toml:"portal_behind_proxy"`
	// Genesis describes the network at its first block. It is read only
	// until the chain starts; after that, authorities change by proposals.
	Genesis GenesisConfig `toml:"genesis"`
	// StateSync is the [state_sync] section: the snapshots this node takes
	// and serves, the CometBFT RPC that joining nodes check them with, and
	// whether this node itself joins from a snapshot.
	StateSync StateSyncConfig `toml:"state_sync"`
}

// DefaultSnapshotInterval is the snapshot interval of a node whose
// imi.toml does not set one: twenty minutes or so of blocks at the default
// pace.
const DefaultSnapshotInterval = 1000

// StateSyncConfig is the [state_sync] section of imi.toml.
//
// A node joining a long chain can replay every block since genesis (block
// sync, the default), or restore a recent snapshot of the ledger's state
// from its peers and replay only the blocks after it (state sync). To let
// nodes join by state sync, the existing nodes take snapshots
// (snapshot_interval) and serve CometBFT's RPC (comet_rpc), from which
// the joining node's light client reads signed headers to check the
// snapshot against. The joining node sets enable, rpc_servers (two or more
// of those comet_rpc addresses), and trust_height and trust_hash.
//
// Where trust_height and trust_hash come from: from a node the operator
// trusts, say a founding authority's, by a channel the operator trusts.
// `imi status --json --node URL` prints chain.latest_height and
// chain.latest_block_hash; or GET URL/v1/blocks/{h}/commit and take
// commit.block_id.hash. Any recent height does; the hash pins the chain, so
// that peers cannot hand the new node another history.
type StateSyncConfig struct {
	// SnapshotInterval: a snapshot of the state is taken after every block
	// whose height is a multiple of it, and the last two are kept under
	// state/snapshots/. Absent: DefaultSnapshotInterval. 0: none.
	SnapshotInterval *int64 `toml:"snapshot_interval"`
	// CometRPC is where this node serves CometBFT's RPC for the light
	// clients of joining nodes, as tcp://host:port. Empty: not served. Keep
	// it on loopback or a private network. If the port is taken the node
	// runs without it, and logs an error.
	CometRPC string `toml:"comet_rpc"`

	// Enable makes this node, if it has no chain data yet, join by state
	// sync. Once it has synced it ignores the settings below.
	Enable bool `toml:"enable"`
	// RPCServers are the comet_rpc addresses of at least two other nodes,
	// as http://host:port.
	RPCServers []string `toml:"rpc_servers"`
	// TrustHeight is a height of the chain and TrustHash the hash of its
	// block (hex), from a node you trust.
	TrustHeight int64  `toml:"trust_height"`
	TrustHash   string `toml:"trust_hash"`
	// TrustPeriod is how old that block may be (Go duration). Default
	// "168h".
	TrustPeriod string `toml:"trust_period"`
	// DiscoveryTime is how long the node gathers snapshot offers before it
	// picks the newest (Go duration, at least "5s"). Default "15s".
	DiscoveryTime string `toml:"discovery_time"`
}

// snapshotInterval is the configured interval, or the default.
func (s *StateSyncConfig) snapshotInterval() int64 {
	if s.SnapshotInterval == nil {
		return DefaultSnapshotInterval
	}
	return *s.SnapshotInterval
}

// nodeStateSync translates the section into the node's settings.
func (s *StateSyncConfig) nodeStateSync() (node.StateSync, error) {
	out := node.StateSync{Enable: s.Enable, RPCServers: s.RPCServers, TrustHeight: s.TrustHeight}
	if s.snapshotInterval() < 0 {
		return out, fmt.Errorf("%s: state_sync.snapshot_interval is negative", ConfigFile)
	}
	for name, p := range map[string]struct {
		in  string
		out *time.Duration
	}{"trust_period": {s.TrustPeriod, &out.TrustPeriod}, "discovery_time": {s.DiscoveryTime, &out.DiscoveryTime}} {
		if p.in == "" {
			continue
		}
		d, err := time.ParseDuration(p.in)
		if err != nil {
			return out, fmt.Errorf("%s: state_sync.%s: %w", ConfigFile, name, err)
		}
		*p.out = d
	}
	if !s.Enable {
		return out, nil
	}
	h, err := hex.DecodeString(s.TrustHash)
	if err != nil || len(h) != 32 {
		return out, fmt.Errorf("%s: state_sync.trust_hash must be the 64 hex digits of a block hash, from a node you trust", ConfigFile)
	}
	out.TrustHash = h
	if len(s.RPCServers) < 2 {
		return out, fmt.Errorf("%s: state_sync.rpc_servers must name at least two nodes' comet_rpc (http://host:port)", ConfigFile)
	}
	if s.TrustHeight < 1 {
		return out, fmt.Errorf("%s: state_sync.trust_height is not set", ConfigFile)
	}
	return out, nil
}

// encode writes the section as a documented part of imi.toml.
func (s *StateSyncConfig) encode() string {
	var b strings.Builder
	b.WriteString(stateSyncHeader)
	if s.SnapshotInterval != nil {
		fmt.Fprintf(&b, "snapshot_interval = %d\n", *s.SnapshotInterval)
	} else {
		fmt.Fprintf(&b, "# snapshot_interval = %d\n", DefaultSnapshotInterval)
	}
	fmt.Fprintf(&b, "comet_rpc = %s\n", q(s.CometRPC))
	b.WriteString(stateSyncJoinHeader)
	fmt.Fprintf(&b, "enable = %t\nrpc_servers = [%s]\ntrust_height = %d\ntrust_hash = %s\n",
		s.Enable, quoteList(s.RPCServers), s.TrustHeight, q(s.TrustHash))
	if s.TrustPeriod != "" {
		fmt.Fprintf(&b, "trust_period = %s\n", q(s.TrustPeriod))
	} else {
		b.WriteString("# trust_period = \"168h\"\n")
	}
	if s.DiscoveryTime != "" {
		fmt.Fprintf(&b, "discovery_time = %s\n", q(s.DiscoveryTime))
	} else {
		b.WriteString("# discovery_time = \"15s\"\n")
	}
	return b.String()
}

// encodeFile is c as imi.toml: encode's settings and [genesis], with the
// [state_sync] section between the two, next to the settings it belongs
// with rather than after the founding state.
func (c *Config) encodeFile() []byte {
	b := c.encode()
	at := bytes.Index(b, []byte("\n# The founding state of the network."))
	if at < 0 {
		at = bytes.Index(b, []byte("\n[genesis]\n"))
	}
	if at < 0 {
		at = len(b)
	}
	out := slices.Concat(b[:at], []byte(c.StateSync.encode()), b[at:])
	return out
}

const stateSyncHeader = `
# State sync: a node that joins a long chain restores a recent snapshot of
# the ledger's state from its peers instead of replaying every block.
#
# Serving: a snapshot is taken after every snapshot_interval blocks (absent:
# 1000; 0: none) and the last two are kept under state/snapshots/; comet_rpc
# serves CometBFT's RPC (tcp://host:port; empty: off), from which joining
# nodes read signed headers. Keep comet_rpc on loopback or a private network.
[state_sync]
`

const stateSyncJoinHeader = `
# Joining: with enable = true a node that has no blocks yet starts from the
# newest snapshot its peers offer, checked by a light client against at least
# two rpc_servers (other nodes' comet_rpc, as http://host:port) from the block
# trust_height whose hash is trust_hash. Take both from a node you trust:
#   imi status --json --node URL   (chain.latest_height, chain.latest_block_hash)
# trust_period (default 168h) bounds the age of that block; discovery_time
# (default 15s, at least 5s) is how long to gather snapshot offers. A node that
# state synced has no blocks, and no transaction results, before the snapshot.
`

// GenesisConfig is the founding state of the district.
type GenesisConfig struct {
	Time        time.Time         `toml:"time"`
	DistrictZH  string            `toml:"district_zh"`
	DistrictEN  string            `toml:"district_en"`
	Authorities []AuthorityConfig `toml:"authority"`
	// CredentialTypes are published at the first block by their issuers.
	CredentialTypes []CredentialTypeConfig `toml:"credential_type"`
	// Services are ids from the demo service catalogue (package service),
	// published at the first block by the authority each belongs to.
	Services []string `toml:"services"`
}

// CredentialTypeConfig is a credential type an issuer publishes at genesis.
// It names claims and marks the sensitive ones; it never holds values.
type CredentialTypeConfig struct {
	Issuer          string        `toml:"issuer"`
	ID              string        `toml:"id"`
	VCT             string        `toml:"vct"`
	NameZH          string        `toml:"name_zh"`
	NameEN          string        `toml:"name_en"`
	MaxValidityDays uint32        `toml:"max_validity_days"`
	Claims          []ClaimConfig `toml:"claims"`
}

// ClaimConfig is one claim of a credential type.
type ClaimConfig struct {
	Name      string `toml:"name"`
	NameZH    string `toml:"name_zh"`
	NameEN    string `toml:"name_en"`
	Sensitive bool   `toml:"sensitive"`
}

// AuthorityConfig is one founding authority.
type AuthorityConfig struct {
	ID     string   `toml:"id"`
	NameZH string   `toml:"name_zh"`
	NameEN string   `toml:"name_en"`
	Roles  []string `toml:"roles"`
	// PublicKey is the authority's signing key (ed25519-pub:…). The private
	// half stays in the authority's own key file.
	PublicKey string `toml:"public_key"`
	// ValidatorKey is the base64 Ed25519 consensus key of the authority's
	// node (comet/config/priv_validator_key.json's public half); empty for an
	// authority that runs no validator.
	ValidatorKey string `toml:"validator_key"`
	Power        int64  `toml:"power"`
	Endpoint     string `toml:"endpoint"`
	// KEMKey is the base64 X25519 key residents seal their consents to,
	// derived from the authority's key; empty if it takes no consents yet.
	KEMKey string `toml:"kem_key"`
}

// LoadConfig reads home/imi.toml strictly: an unknown or misspelt setting is
// an error, not silently ignored.
func LoadConfig(home string) (*Config, error) {
	b, err := os.ReadFile(filepath.Join(home, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("couldn't read configuration: %w", err)
	}
	var c Config
	d := toml.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return nil, fmt.Errorf("%s: %s", ConfigFile, sm.String())
		}
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	if c.ChainID == "" {
		return nil, fmt.Errorf("%s: chain_id is not set", ConfigFile)
	}
	return &c, nil
}

// genesis turns the configuration into CometBFT's genesis and the ledger's
// founding state. The same imi.toml gives byte-identical files on every node.
func (c *Config) genesis() (node.Genesis, error) {
	g := ledger.Genesis{DistrictZH: c.Genesis.DistrictZH, DistrictEN: c.Genesis.DistrictEN}
	var vals []node.GenesisValidator
	for _, a := range c.Genesis.Authorities {
		pub, err := key.ParsePublic(a.PublicKey)
		if err != nil {
			return node.Genesis{}, fmt.Errorf("authority %s: public_key: %w", a.ID, err)
		}
		spec := tx.AuthoritySpec{ID: a.ID, NameZH: a.NameZH, NameEN: a.NameEN, Key: pub, Roles: a.Roles, Power: a.Power, Endpoint: a.Endpoint}
		if spec.Roles == nil {
			spec.Roles = []string{}
		}
		if a.ValidatorKey != "" {
			vk, err := base64.StdEncoding.DecodeString(a.ValidatorKey)
			if err != nil || len(vk) != 32 {
				return node.Genesis{}, fmt.Errorf("authority %s: validator_key must be a base64 Ed25519 public key", a.ID)
			}
			spec.ValidatorKey = vk
			vals = append(vals, node.GenesisValidator{Name: a.ID, PubKey: vk, Power: a.Power})
		}
		g.Authorities = append(g.Authorities, spec)
		if a.KEMKey != "" {
			kk, err := base64.StdEncoding.DecodeString(a.KEMKey)
			if err != nil || len(kk) != 32 {
				return node.Genesis{}, fmt.Errorf("authority %s: kem_key must be a base64 X25519 public key", a.ID)
			}
			g.KEMKeys = append(g.KEMKeys, ledger.GenesisKEMKey{Authority: a.ID, Key: kk})
		}
	}
	if len(vals) == 0 {
		return node.Genesis{}, errors.New("no authority has a validator_key: the network needs at least one validator")
	}
	for _, t := range c.Genesis.CredentialTypes {
		gt := ledger.GenesisCredentialType{Issuer: t.Issuer, Type: tx.RegisterCredentialType{
			ID: t.ID, VCT: t.VCT, NameZH: t.NameZH, NameEN: t.NameEN, MaxValidityDays: t.MaxValidityDays, Claims: []tx.ClaimSpec{},
		}}
		for _, cl := range t.Claims {
			gt.Type.Claims = append(gt.Type.Claims, tx.ClaimSpec{Name: cl.Name, NameZH: cl.NameZH, NameEN: cl.NameEN, Sensitive: cl.Sensitive})
		}
		g.CredentialTypes = append(g.CredentialTypes, gt)
	}
	catalogue := service.Demo(demoAuthorities[0].id, demoAuthorities[1].id, demoAuthorities[2].id, demoAuthorities[3].id)
	for _, id := range c.Genesis.Services {
		i := slices.IndexFunc(catalogue, func(s ledger.GenesisService) bool { return s.Service.ID == id })
		if i < 0 {
			return node.Genesis{}, fmt.Errorf("services: %q is not in the demo catalogue", id)
		}
		g.Services = append(g.Services, catalogue[i])
	}
	state, err := tx.Marshal(g)
	if err != nil {
		return node.Genesis{}, err
	}
	return node.Genesis{ChainID: c.ChainID, GenesisTime: c.Genesis.Time.UTC(), Validators: vals, AppState: state}, nil
}

func (c *Config) nodeConfig(home string) (node.Config, error) {
	nc := node.Config{Home: home, ChainID: c.ChainID, Moniker: c.Moniker, P2PListen: c.P2P, PersistentPeers: c.PersistentPeers, Metrics: true, MaxTxBytes: tx.MaxBytes}
	// CometBFT reports every block at info; an operator wants those only
	// when debugging.
	nc.LogLevel = slog.LevelWarn
	if c.LogLevel == "debug" {
		nc.LogLevel = slog.LevelDebug
	}
	if c.TimeoutCommit != "" {
		d, err := time.ParseDuration(c.TimeoutCommit)
		if err != nil {
			return nc, fmt.Errorf("%s: timeout_commit: %w", ConfigFile, err)
		}
		nc.TimeoutCommit = d
	}
	nc.CometRPCListen = c.StateSync.CometRPC
	ss, err := c.StateSync.nodeStateSync()
	if err != nil {
		return nc, err
	}
	nc.StateSync = ss
	return nc, nil
}

// snapshotConfig is where and how often the ledger of the node in home
// takes snapshots.
func (c *Config) snapshotConfig(home string) ledger.SnapshotConfig {
	return ledger.SnapshotConfig{Dir: filepath.Join(home, "state", "snapshots"), Interval: c.StateSync.snapshotInterval()}
}

// loopbackListen reports whether CometBFT's listen address (tcp://host:port,
// empty for the default) is on loopback. Such a node can be reached only
// from its own host, so every peer it has comes from 127.0.0.1 (several
// nodes on one machine, as imi testnet writes them), and CometBFT's rule of
// one peer per IP address, which keeps one remote host from taking many peer
// slots, would admit just one of them.
func loopbackListen(listen string) bool {
	if listen == "" {
		listen = node.DefaultP2PListen
	}
	host, _, err := net.SplitHostPort(strings.TrimPrefix(listen, "tcp://"))
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
