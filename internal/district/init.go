package district

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/node"
	"github.com/imi-city/imi/internal/service"
)

// Demo district: Chancheng District of Foshan, with its four founding
// authorities. The Public Security Bureau's node is the one validator.
const (
	DemoChainID  = "imi-chancheng-1"
	RegistrarID  = "cc-psb"
	demoDistrict = "佛山市禅城区"
)

type demoAuthority struct {
	id, zh, en string
	roles      []string
}

var demoAuthorities = []demoAuthority{
	{RegistrarID, "佛山市公安局禅城分局", "Chancheng Branch of the Foshan Public Security Bureau",
		[]string{"registrar", "issuer:resident_identity", "issuer:household_registration", "service_provider"}},
	{"cc-hrss", "禅城区人力资源和社会保障局", "Chancheng Human Resources and Social Security Bureau",
		[]string{"issuer:social_insurance", "service_provider"}},
	{"cc-hsb", "禅城区医疗保障局", "Chancheng Healthcare Security Bureau",
		[]string{"issuer:medical_insurance", "service_provider"}},
	{"cc-utility", "禅城区供水供电服务公司", "Chancheng Water and Power Utility",
		[]string{"issuer:utility_account", "service_provider"}},
}

// KeyFile is where the key of authority id lives under home.
func KeyFile(home, id string) string { return filepath.Join(home, "keys", id+".key") }

// UniquenessKeyFile is where the registrars' shared HMAC key lives.
func UniquenessKeyFile(home string) string {
	return filepath.Join(home, "keys", "registrar-uniqueness.key")
}

// InitOptions are the settings of `imi init`.
type InitOptions struct {
	ChainID string
	HTTP    string
	P2P     string
	// GenesisTime is written into imi.toml; the caller decides it.
	GenesisTime time.Time
}

// Initialized reports whether home already holds a configuration.
func Initialized(home string) bool {
	_, err := os.Stat(filepath.Join(home, ConfigFile))
	return err == nil
}

// InitDemo writes a new demo district into home: a key file for each
// founding authority, the registrars' uniqueness key, this node's CometBFT
// keys and a documented imi.toml. It refuses to touch an existing home.
func InitDemo(home string, o InitOptions) error {
	if Initialized(home) {
		return fmt.Errorf("%s already holds %s; use another --home or remove it", home, ConfigFile)
	}
	if o.ChainID == "" {
		o.ChainID = DemoChainID
	}
	if o.HTTP == "" {
		o.HTTP = "127.0.0.1:8080"
	}
	if o.P2P == "" {
		o.P2P = node.DefaultP2PListen
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("couldn't create home: %w", err)
	}
	valKey, _, err := node.EnsureKeys(node.Config{Home: home, ChainID: o.ChainID})
	if err != nil {
		return err
	}
	c := demoConfig(o.ChainID, o.HTTP, o.P2P, o.GenesisTime)
	for i, a := range demoAuthorities {
		k, err := key.Generate()
		if err != nil {
			return err
		}
		if err := k.WriteFile(KeyFile(home, a.id)); err != nil {
			return err
		}
		// In the demo one node serves every authority, so its address is
		// each one's public endpoint (where status lists are fetched).
		ac := a.config(k.Public(), "http://"+o.HTTP)
		if ac.KEMKey, err = kemPublic(k); err != nil {
			return err
		}
		// The registrar's node is the one validator.
		if i == 0 {
			ac.ValidatorKey, ac.Power = base64.StdEncoding.EncodeToString(valKey), 10
		}
		c.Genesis.Authorities = append(c.Genesis.Authorities, ac)
	}
	c.Genesis.CredentialTypes = demoCredentialTypes(c.Genesis.Authorities)
	c.Genesis.Services = demoServices(c.Genesis.Authorities)
	hk, err := key.GenerateHMAC()
	if err != nil {
		return err
	}
	if err := hk.WriteFile(UniquenessKeyFile(home)); err != nil {
		return err
	}
	if err := writeDemoStaff(home); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(home, ConfigFile), c.encodeFile(), 0o600)
}

// demoConfig is the settings part of a demo imi.toml; the caller adds the
// founding authorities and the credential types.
func demoConfig(chainID, http, p2p string, genesisTime time.Time) *Config {
	return &Config{
		ChainID: chainID, HTTP: http, P2P: p2p, TimeoutCommit: "500ms", LogLevel: "info",
		Genesis: GenesisConfig{Time: genesisTime.UTC(), DistrictZH: demoDistrict, DistrictEN: "Chancheng District, Foshan"},
	}
}

// config is a as a founding authority with key k and no validator.
func (a demoAuthority) config(k key.Public, endpoint string) AuthorityConfig {
	roles := slices.Clone(a.roles)
	slices.Sort(roles)
	return AuthorityConfig{ID: a.id, NameZH: a.zh, NameEN: a.en, Roles: roles, PublicKey: k.String(), Endpoint: endpoint}
}

// demoCredentialTypes are the demo credential types whose issuer is among
// the founding authorities: the ledger refuses a type from an issuer it
// does not know.
func demoCredentialTypes(founders []AuthorityConfig) []CredentialTypeConfig {
	var out []CredentialTypeConfig
	for _, gt := range credential.DemoTypes(demoAuthorities[0].id, demoAuthorities[1].id, demoAuthorities[2].id, demoAuthorities[3].id) {
		if !slices.ContainsFunc(founders, func(a AuthorityConfig) bool { return a.ID == gt.Issuer }) {
			continue
		}
		t := gt.Type
		ct := CredentialTypeConfig{Issuer: gt.Issuer, ID: t.ID, VCT: t.VCT, NameZH: t.NameZH, NameEN: t.NameEN, MaxValidityDays: t.MaxValidityDays}
		for _, cl := range t.Claims {
			ct.Claims = append(ct.Claims, ClaimConfig{Name: cl.Name, NameZH: cl.NameZH, NameEN: cl.NameEN, Sensitive: cl.Sensitive})
		}
		out = append(out, ct)
	}
	return out
}

// demoServices are the demo services whose authority is a founder.
func demoServices(founders []AuthorityConfig) []string {
	var out []string
	for _, s := range service.Demo(demoAuthorities[0].id, demoAuthorities[1].id, demoAuthorities[2].id, demoAuthorities[3].id) {
		if slices.ContainsFunc(founders, func(a AuthorityConfig) bool { return a.ID == s.Authority }) {
			out = append(out, s.Service.ID)
		}
	}
	return out
}

// kemPublic is the KEM key an authority with key k publishes.
func kemPublic(k key.Private) (string, error) {
	kem, err := consent.KEMKey(k.Seed())
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(kem.PublicKey().Bytes()), nil
}

// encode writes c as a documented imi.toml, the file an operator edits.
// LoadConfig reads it back into an equal Config.
func (c *Config) encode() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, configHeader, q(c.ChainID), q(c.Moniker), q(c.HTTP), q(c.P2P), q(c.PersistentPeers), q(c.TimeoutCommit), q(c.LogLevel), q(c.PortalIdleTimeout), c.PortalBehindProxy)
	g := &c.Genesis
	fmt.Fprintf(&b, "\n[genesis]\ntime = %s\ndistrict_zh = %s\ndistrict_en = %s\n",
		g.Time.UTC().Format(time.RFC3339Nano), q(g.DistrictZH), q(g.DistrictEN))
	fmt.Fprintf(&b, "%sservices = [%s]\n", servicesHeader, quoteList(g.Services))
	for _, a := range g.Authorities {
		fmt.Fprintf(&b, "\n[[genesis.authority]]\nid = %s\nname_zh = %s\nname_en = %s\nroles = [%s]\npublic_key = %s\n",
			q(a.ID), q(a.NameZH), q(a.NameEN), quoteList(a.Roles), q(a.PublicKey))
		if a.ValidatorKey != "" {
			fmt.Fprintf(&b, "validator_key = %s\npower = %d\n", q(a.ValidatorKey), a.Power)
		} else {
			b.WriteString("# validator_key = \"\"   # this authority runs no validator yet\npower = 0\n")
		}
		fmt.Fprintf(&b, "endpoint = %s\n", q(a.Endpoint))
		if a.KEMKey != "" {
			fmt.Fprintf(&b, "kem_key = %s\n", q(a.KEMKey))
		}
	}
	b.WriteString(credentialTypesHeader)
	for _, t := range g.CredentialTypes {
		fmt.Fprintf(&b, "\n[[genesis.credential_type]]\nissuer = %s\nid = %s\nvct = %s\nname_zh = %s\nname_en = %s\nmax_validity_days = %d\nclaims = [\n",
			q(t.Issuer), q(t.ID), q(t.VCT), q(t.NameZH), q(t.NameEN), t.MaxValidityDays)
		for _, cl := range t.Claims {
			fmt.Fprintf(&b, "  { name = %s, name_zh = %s, name_en = %s, sensitive = %t },\n", q(cl.Name), q(cl.NameZH), q(cl.NameEN), cl.Sensitive)
		}
		b.WriteString("]\n")
	}
	return []byte(b.String())
}

const servicesHeader = `
# Services from the demo catalogue, published at the first block by their
# authority (which must hold the role service_provider). Later services and
# changes: a transaction register_service.
`

const credentialTypesHeader = `
# Credential types, published at the first block by their issuer, which must
# hold the role issuer:<id>. Claim names only, never values; sensitive marks
# sensitive personal information (PIPL Art. 28), which residents consent to
# separately. Later types: a transaction register_credential_type.
`

func q(s string) string { return strconv.Quote(s) }

func quoteList(l []string) string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = q(s)
	}
	return strings.Join(out, ", ")
}

const configHeader = `# IMI node configuration (imi.toml).
#
# Secrets never go in this file: each authority's signing key is a file under
# keys/, CometBFT's validator and node keys are under comet/config/, and the
# registrars' uniqueness key is keys/registrar-uniqueness.key. Keep them 0600.
#
# Unknown settings are an error, so a typo is caught at start.

# The network's name. Every node of the district uses the same one; a
# transaction signed for one chain is refused on any other.
chain_id = %s

# Name of this node among its peers (ASCII). Empty: the host name.
moniker = %s

# Where this node serves the HTTP API (/v1, /healthz, /metrics). Keep it on
# loopback unless a TLS reverse proxy stands in front. imi up --http overrides.
http = %s

# Where CometBFT listens for the other authorities' nodes.
p2p = %s

# The other validators' nodes, as node-id@host:port, comma-separated. A node
# whose p2p address is on loopback accepts several peers from 127.0.0.1 (a
# network on one machine); otherwise one peer per IP address.
persistent_peers = %s

# Pause after each block before the next height; shorter means lower latency
# and more blocks. Go duration syntax.
timeout_commit = %s

# debug, info, warn or error.
log_level = %s

# The web portal signs a resident or a staff member out after this long
# without a request (Go duration; empty: 15m).
portal_idle_timeout = %s

# true when a TLS reverse proxy stands in front of http and appends each
# client's address to X-Forwarded-For: sign-in limits then count clients.
# Leave false otherwise, or anyone could claim any address.
portal_behind_proxy = %t

# The founding state of the network. Read when the chain starts at height 1
# and ignored after that, except that it must not change: from then on,
# authorities, roles and validators change only by proposals approved by more
# than two-thirds of the authorities (imi authority propose / vote).
#
# roles: registrar, service_provider, issuer:<credential type>; sorted.
# validator_key: base64 Ed25519 public key from the authority node's
#   comet/config/priv_validator_key.json; power > 0 makes it a validator.
`
