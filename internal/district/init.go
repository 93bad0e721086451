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

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/node"
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
	var b strings.Builder
	fmt.Fprintf(&b, configHeader, q(o.ChainID), q(o.HTTP), q(o.P2P))
	fmt.Fprintf(&b, "\n[genesis]\ntime = %s\ndistrict_zh = %s\ndistrict_en = %s\n",
		o.GenesisTime.UTC().Format(time.RFC3339), q(demoDistrict), q("Chancheng District, Foshan"))
	for i, a := range demoAuthorities {
		k, err := key.Generate()
		if err != nil {
			return err
		}
		if err := k.WriteFile(KeyFile(home, a.id)); err != nil {
			return err
		}
		roles := slices.Clone(a.roles)
		slices.Sort(roles)
		fmt.Fprintf(&b, "\n[[genesis.authority]]\nid = %s\nname_zh = %s\nname_en = %s\nroles = [%s]\npublic_key = %s\n",
			q(a.id), q(a.zh), q(a.en), quoteList(roles), q(k.Public().String()))
		if i == 0 {
			fmt.Fprintf(&b, "validator_key = %s\npower = 10\n", q(base64.StdEncoding.EncodeToString(valKey)))
		} else {
			b.WriteString("# validator_key = \"\"   # this authority runs no validator yet\npower = 0\n")
		}
		// In the demo one node serves every authority, so its address is
		// each one's public endpoint (where status lists are fetched).
		fmt.Fprintf(&b, "endpoint = %s\n", q("http://"+o.HTTP))
	}
	b.WriteString(credentialTypesHeader)
	for _, gt := range credential.DemoTypes(demoAuthorities[0].id, demoAuthorities[1].id, demoAuthorities[2].id, demoAuthorities[3].id) {
		t := gt.Type
		fmt.Fprintf(&b, "\n[[genesis.credential_type]]\nissuer = %s\nid = %s\nvct = %s\nname_zh = %s\nname_en = %s\nmax_validity_days = %d\nclaims = [\n",
			q(gt.Issuer), q(t.ID), q(t.VCT), q(t.NameZH), q(t.NameEN), t.MaxValidityDays)
		for _, c := range t.Claims {
			fmt.Fprintf(&b, "  { name = %s, name_zh = %s, name_en = %s, sensitive = %t },\n", q(c.Name), q(c.NameZH), q(c.NameEN), c.Sensitive)
		}
		b.WriteString("]\n")
	}
	hk, err := key.GenerateHMAC()
	if err != nil {
		return err
	}
	if err := hk.WriteFile(UniquenessKeyFile(home)); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(home, ConfigFile), []byte(b.String()), 0o600)
}

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
moniker = ""

# Where this node serves the HTTP API (/v1, /healthz, /metrics). Keep it on
# loopback unless a TLS reverse proxy stands in front. imi up --http overrides.
http = %s

# Where CometBFT listens for the other authorities' nodes.
p2p = %s

# The other validators' nodes, as node-id@host:port, comma-separated.
persistent_peers = ""

# Pause after each block before the next height; shorter means lower latency
# and more blocks. Go duration syntax.
timeout_commit = "500ms"

# debug, info, warn or error.
log_level = "info"

# The founding state of the network. Read when the chain starts at height 1
# and ignored after that, except that it must not change: from then on,
# authorities, roles and validators change only by proposals approved by more
# than two-thirds of the authorities (imi authority propose / vote).
#
# roles: registrar, service_provider, issuer:<credential type>; sorted.
# validator_key: base64 Ed25519 public key from the authority node's
#   comet/config/priv_validator_key.json; power > 0 makes it a validator.
`
