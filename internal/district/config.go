// Package district runs an IMI node for a district: it reads the operator's
// configuration file, builds the genesis of the founding authorities, and
// wires the ledger, the CometBFT node and the HTTP API together.
package district

import (
	"bytes"
	"encoding/base64"
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
	// Genesis describes the network at its first block. It is read only
	// until the chain starts; after that, authorities change by proposals.
	Genesis GenesisConfig `toml:"genesis"`
}

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
	return nc, nil
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
