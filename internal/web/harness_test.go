package web

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// The harness is one node of the demo district in process: the ledger over
// a chain that commits each transaction in a block of its own before Submit
// returns, the node's HTTP API and service desk, and the portal, all behind
// one httptest server as imi up serves them. The node holds the keys of all
// four authorities, the registrars' uniqueness key and a lookup key, and
// has a counter clerk and a caseworker. Browsers are browserless clients
// with their own cookie jars.

const harnessChainID = "imi-web-test-1"

// The demo district's authorities.
const (
	psbID     = "cc-psb"
	hrssID    = "cc-hrss"
	hsbID     = "cc-hsb"
	utilityID = "cc-utility"
)

// Staff accounts of the harness, and their passphrases.
const (
	clerkAccount      = "clerk"
	clerkPassphrase   = "counter clerk passphrase"
	caseworkerAccount = "caseworker"
	caseworkerPass    = "pension caseworker passphrase"
)

// syncChain stands in for CometBFT: Submit runs CheckTx and, when the
// ledger accepts the transaction, finalizes and commits a block holding
// only it. The API registers its waiter before it submits, so a write is
// committed by the time the API answers. Block time follows the wall
// clock, as a live network's does, but moves at least a second per block.
type syncChain struct {
	app    *ledger.App
	clock  func() time.Time
	mu     sync.Mutex
	height int64
	now    time.Time
}

func (c *syncChain) Submit(ctx context.Context, raw []byte) (*abci.ResponseCheckTx, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res, err := c.app.CheckTx(ctx, &abci.RequestCheckTx{Tx: raw, Type: abci.CheckTxType_New})
	if err != nil || res.Code != 0 {
		return res, err
	}
	return res, c.blockLocked(raw)
}

// blockLocked runs one block of txs; the caller holds c.mu.
func (c *syncChain) blockLocked(txs ...[]byte) error {
	c.height++
	c.now = c.now.Add(time.Second)
	if w := c.clock(); w.After(c.now) {
		c.now = w.UTC()
	}
	if _, err := c.app.FinalizeBlock(context.Background(), &abci.RequestFinalizeBlock{Height: c.height, Time: c.now, Txs: txs}); err != nil {
		return fmt.Errorf("finalize block %d: %w", c.height, err)
	}
	if _, err := c.app.Commit(context.Background(), &abci.RequestCommit{}); err != nil {
		return fmt.Errorf("commit block %d: %w", c.height, err)
	}
	return nil
}

func (c *syncChain) Status() httpapi.ChainStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return httpapi.ChainStatus{LatestHeight: c.height, LatestTime: c.now}
}

func (c *syncChain) Commit(h int64) (any, error) { return map[string]int64{"height": h}, nil }

// Height is the last committed block.
func (c *syncChain) Height() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.height
}

// logBuffer collects the portal's log lines, so a test can check what
// they do not say.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type harness struct {
	t      testing.TB
	app    *ledger.App
	chain  *syncChain
	desk   *service.Desk
	store  service.Store
	portal *Portal
	srv    *httptest.Server
	clock  *clock
	log    *logBuffer
	// keys and dids are every authority's ledger key and DID.
	keys map[string]key.Private
	dids map[string]string
	// uniq is the registrars' uniqueness key; lookup the node's.
	uniq, lookup key.HMAC
	// numbers counts the ID numbers made, so each is new.
	numbers int
}

// newHarness starts a node of the demo district and its portal. A test
// passes its *testing.T, a benchmark its *testing.B.
func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, clock: newClock(), log: &logBuffer{}, keys: map[string]key.Private{}, dids: map[string]string{}}
	ids := []string{psbID, hrssID, hsbID, utilityID}
	roles := [][]string{
		{ledger.RoleIssuerPrefix + credential.TypeHouseholdRegistration, ledger.RoleIssuerPrefix + credential.TypeResidentIdentity, ledger.RoleRegistrar, ledger.RoleServiceProvider},
		{ledger.RoleIssuerPrefix + credential.TypeSocialInsurance, ledger.RoleServiceProvider},
		{ledger.RoleIssuerPrefix + credential.TypeMedicalInsurance, ledger.RoleServiceProvider},
		{ledger.RoleIssuerPrefix + credential.TypeUtilityAccount, ledger.RoleServiceProvider},
	}
	names := [][2]string{{"禅城区公安分局", "Chancheng Public Security Bureau"}, {"禅城区人力资源和社会保障局", "Chancheng Human Resources and Social Security Bureau"},
		{"禅城区医疗保障局", "Chancheng Healthcare Security Bureau"}, {"禅城区水务电力公司", "Chancheng Water and Power"}}
	g := ledger.Genesis{DistrictZH: "禅城区", DistrictEN: "Chancheng",
		CredentialTypes: credential.DemoTypes(psbID, hrssID, hsbID, utilityID),
		Services:        service.Demo(psbID, hrssID, hsbID, utilityID)}
	for i, id := range ids {
		k, err := key.FromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		if err != nil {
			t.Fatal(err)
		}
		kem, err := consent.KEMKey(k.Seed())
		if err != nil {
			t.Fatal(err)
		}
		spec := tx.AuthoritySpec{ID: id, NameZH: names[i][0], NameEN: names[i][1], Key: k.Public(), Roles: roles[i],
			Endpoint: "https://" + id + ".example"}
		if i == 0 {
			spec.ValidatorKey, spec.Power = bytes.Repeat([]byte{7}, 32), 10
		}
		g.Authorities = append(g.Authorities, spec)
		g.KEMKeys = append(g.KEMKeys, ledger.GenesisKEMKey{Authority: id, Key: kem.PublicKey().Bytes()})
		h.keys[id] = k
		h.dids[id] = did.FromKey(k.Public()).String()
	}
	app, err := ledger.OpenMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	state, err := tx.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	genesis := h.clock.now().Add(-time.Minute)
	if _, err := app.InitChain(context.Background(), &abci.RequestInitChain{ChainId: harnessChainID, InitialHeight: 1, Time: genesis, AppStateBytes: state}); err != nil {
		t.Fatal(err)
	}
	h.app, h.chain = app, &syncChain{app: app, clock: h.clock.now, now: genesis}
	h.chain.mu.Lock()
	err = h.chain.blockLocked()
	h.chain.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if h.store, err = service.OpenStore(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	logger := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if h.desk, err = service.NewDesk(service.DeskConfig{App: app, Chain: h.chain, Store: h.store, Keys: h.keys, Now: h.clock.now, Log: logger}); err != nil {
		t.Fatal(err)
	}
	// The API keeps the real clock: the node client signs its requests
	// with time.Now, and the API checks their age against its own.
	api := httpapi.New(app, h.chain, httpapi.Config{CommitTimeout: 10 * time.Second, Gatherer: prometheus.NewRegistry(),
		IssuerKeys: h.keys, Desk: h.desk}, logger)
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	mux.Handle("/healthz", api)
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)

	if h.uniq, err = key.GenerateHMAC(); err != nil {
		t.Fatal(err)
	}
	if h.lookup, err = key.GenerateHMAC(); err != nil {
		t.Fatal(err)
	}
	clerk, err := NewStaffAccount(clerkAccount, psbID, []string{RoleCounter, RoleConsole}, clerkPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	cw, err := NewStaffAccount(caseworkerAccount, hrssID, []string{RoleConsole}, caseworkerPass)
	if err != nil {
		t.Fatal(err)
	}
	node, err := client.New(h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	h.portal, err = New(Config{App: app, Node: node, Desk: h.desk, Store: h.store, Keys: h.keys,
		UniquenessKey: &h.uniq, LookupKey: h.lookup, Staff: []StaffAccount{clerk, cw},
		WalletParams: cheapParams(), IdleTimeout: 15 * time.Minute, Now: h.clock.now, Log: logger.With("module", "web")})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", h.portal)
	return h
}

// browser is a new browser with no cookies. Browsers report through a
// *testing.T, so only a test's harness has them.
func (h *harness) browser() *browserless {
	h.t.Helper()
	t, ok := h.t.(*testing.T)
	if !ok {
		h.t.Fatal("harness: browsers are for tests; a benchmark makes its own client")
	}
	return newBrowserless(t, h.srv.URL)
}

// staff is a browser signed in as a staff account.
func (h *harness) staff(account, passphrase string) *browserless {
	h.t.Helper()
	b := h.browser()
	res, _ := b.submit("/staff/signin", "/staff/signin", url.Values{"account": {account}, "passphrase": {passphrase}})
	if res.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("staff sign-in of %s: %d, want 303", account, res.StatusCode)
	}
	return b
}

// clerk is a browser signed in as the registrar's counter clerk.
func (h *harness) clerk() *browserless { return h.staff(clerkAccount, clerkPassphrase) }

// number makes a new valid ID number of a person of sex ("male" or
// "female") born on the date given.
func (h *harness) number(year, month, day int, sex string) idnumber.Number {
	h.t.Helper()
	for {
		h.numbers++
		n, err := idnumber.Example("440604", year, month, day, h.numbers)
		if err != nil {
			h.t.Fatal(err)
		}
		if sexOfNumber(n) == sex {
			return n
		}
	}
}

// formTokenRE finds each form's action and the first one-time token in it.
var formTokenRE = regexp.MustCompile(`(?s)<form[^>]*\saction="([^"]*)"[^>]*>.*?name="csrf" value="([^"]+)"`)

// formToken returns the one-time token of the form on page body that posts
// to action.
func formToken(t testing.TB, body, action string) string {
	t.Helper()
	for _, m := range formTokenRE.FindAllStringSubmatch(body, -1) {
		if m[1] == action {
			return m[2]
		}
	}
	t.Fatalf("no form posting to %s on the page", action)
	return ""
}

// submit opens page, fills in the form that posts to action with form and
// sends it, as a person at a browser does. Redirects are not followed.
func (b *browserless) submit(page, action string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	res, body := b.get(page)
	if res.StatusCode != http.StatusOK {
		b.t.Fatalf("GET %s: %d", page, res.StatusCode)
	}
	v := url.Values{}
	for k, vs := range form {
		v[k] = vs
	}
	v.Set("csrf", formToken(b.t, body, action))
	return b.post(action, v)
}

// person is what the clerk copies from an ID card, and the passphrase the
// resident picks.
type person struct {
	number                        idnumber.Number
	family, given, sex, ethnicity string
	address, passphrase           string
}

// newPerson is a person born on the date given, with a passphrase of
// their own.
func (h *harness) newPerson(family, given, sex string, year, month, day int) *person {
	return &person{number: h.number(year, month, day, sex), family: family, given: given, sex: sex, ethnicity: "汉",
		address: "广东省佛山市禅城区祖庙路" + fmt.Sprint(h.numbers) + "号", passphrase: "passphrase of " + given}
}

// form is p as the registration form takes it.
func (p *person) form() url.Values {
	return url.Values{"id_number": {p.number.String()}, "family_name": {p.family}, "given_name": {p.given}, "sex": {p.sex},
		"ethnicity": {p.ethnicity}, "registered_address": {p.address}, "passphrase": {p.passphrase}, "passphrase2": {p.passphrase}}
}

// receipt is what a printed receipt tells.
type receipt struct {
	code, did, masked string
	body              string
}

var (
	codeRE   = regexp.MustCompile(`class="code">([A-Z0-9-]+)<`)
	didRE    = regexp.MustCompile(`did:imi:[A-Za-z0-9_-]+`)
	maskedRE = regexp.MustCompile(`[0-9]{6}\*{8}[0-9]{3}[0-9X]`)
)

func readReceipt(t testing.TB, body string) *receipt {
	t.Helper()
	r := &receipt{body: body}
	if m := codeRE.FindStringSubmatch(body); m != nil {
		r.code = m[1]
	}
	r.did = didRE.FindString(body)
	r.masked = maskedRE.FindString(body)
	if !strings.Contains(body, `class="receipt"`) || r.code == "" || r.did == "" || r.masked == "" {
		t.Fatalf("not a receipt (code %q, DID %q, number %q):\n%s", r.code, r.did, r.masked, body)
	}
	return r
}

// register has the clerk register p and returns the receipt.
func (h *harness) register(clerk *browserless, p *person) *receipt {
	h.t.Helper()
	res, body := clerk.submit("/counter/register", "/counter/register", p.form())
	if res.StatusCode != http.StatusOK {
		h.t.Fatalf("registration: %d\n%s", res.StatusCode, body)
	}
	return readReceipt(h.t, body)
}

// residentsOnLedger is how many residents the ledger has registered.
func (h *harness) residentsOnLedger() uint64 {
	h.t.Helper()
	m, _, err := h.app.Meta(0)
	if err != nil {
		h.t.Fatal(err)
	}
	return m.Residents
}
