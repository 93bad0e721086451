package service_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/sdjwt"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
	"github.com/imi-city/imi/internal/wallet"
)

// The harness is one node of the demo district over an in-memory ledger.
// Its desk acts for the public security bureau, the social insurance bureau
// and the health security bureau, not for the utility; blocks come from a
// fake chain that commits every accepted transaction in a block of its own
// before Submit returns, so each test sees the same heights every run.

const chainID = "imi-test-1"

// The demo district's authorities.
const (
	psb     = "cc-psb"
	hrss    = "cc-hrss"
	hsb     = "cc-hsb"
	utility = "cc-utility"
)

var genesisTime = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// chain stands in for CometBFT: Submit runs CheckTx and, when the ledger
// accepts the transaction, finalizes and commits a block holding only it, so
// App.Watch waiters registered before Submit fire before Submit returns.
// Block time advances one second per block.
type chain struct {
	app *ledger.App

	mu     sync.Mutex
	height int64
	now    time.Time
	// submitted counts transactions the ledger accepted into a block;
	// offered counts every call of Submit.
	submitted, offered int
}

func (c *chain) Submit(ctx context.Context, raw []byte) (*abci.ResponseCheckTx, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offered++
	res, err := c.app.CheckTx(ctx, &abci.RequestCheckTx{Tx: raw, Type: abci.CheckTxType_New})
	if err != nil || res.Code != 0 {
		return res, err
	}
	if err := c.block(raw); err != nil {
		return nil, err
	}
	c.submitted++
	return res, nil
}

// block runs one block of txs; the caller holds c.mu.
func (c *chain) block(txs ...[]byte) error {
	c.height++
	c.now = c.now.Add(time.Second)
	if _, err := c.app.FinalizeBlock(context.Background(), &abci.RequestFinalizeBlock{Height: c.height, Time: c.now, Txs: txs}); err != nil {
		return fmt.Errorf("finalize block %d: %w", c.height, err)
	}
	if _, err := c.app.Commit(context.Background(), &abci.RequestCommit{}); err != nil {
		return fmt.Errorf("commit block %d: %w", c.height, err)
	}
	return nil
}

type harness struct {
	chain *chain
	app   *ledger.App
	desk  *service.Desk
	store service.Store
	// keys are every demo authority's ledger key; the desk holds deskKeys.
	keys map[string]key.Private
	dids map[string]string
	// skew moves the desk's clock ahead of block time.
	skew atomic.Int64
	// residents counts registrations, for distinct ID numbers and tags.
	residents int
}

// deskHolds are the authorities the harness's desk acts for.
var deskHolds = []string{psb, hrss, hsb}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ids := []string{psb, hrss, hsb, utility}
	roles := [][]string{
		{ledger.RoleIssuerPrefix + credential.TypeHouseholdRegistration, ledger.RoleIssuerPrefix + credential.TypeResidentIdentity, ledger.RoleRegistrar, ledger.RoleServiceProvider},
		{ledger.RoleIssuerPrefix + credential.TypeSocialInsurance, ledger.RoleServiceProvider},
		{ledger.RoleIssuerPrefix + credential.TypeMedicalInsurance, ledger.RoleServiceProvider},
		{ledger.RoleIssuerPrefix + credential.TypeUtilityAccount, ledger.RoleServiceProvider},
	}
	g := ledger.Genesis{DistrictZH: "禅城区", DistrictEN: "Chancheng",
		CredentialTypes: credential.DemoTypes(psb, hrss, hsb, utility),
		Services:        service.Demo(psb, hrss, hsb, utility)}
	h := &harness{keys: map[string]key.Private{}, dids: map[string]string{}}
	for i, id := range ids {
		k, err := key.FromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		if err != nil {
			t.Fatal(err)
		}
		kem, err := consent.KEMKey(k.Seed())
		if err != nil {
			t.Fatal(err)
		}
		spec := tx.AuthoritySpec{ID: id, NameZH: "机构" + id, NameEN: "Authority " + id, Key: k.Public(), Roles: roles[i],
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
	if _, err := app.InitChain(context.Background(), &abci.RequestInitChain{ChainId: chainID, InitialHeight: 1, Time: genesisTime, AppStateBytes: state}); err != nil {
		t.Fatal(err)
	}
	h.app, h.chain = app, &chain{app: app, now: genesisTime}
	h.chain.mu.Lock()
	err = h.chain.block()
	h.chain.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if h.store, err = service.OpenStore(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	held := map[string]key.Private{}
	for _, id := range deskHolds {
		held[id] = h.keys[id]
	}
	h.desk, err = service.NewDesk(service.DeskConfig{App: app, Chain: h.chain, Store: h.store, Keys: held, Now: h.deskNow})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// now is block time, the ledger's clock.
func (h *harness) now() time.Time { return h.app.LastBlock().Time }

// deskNow is the desk's clock: block time plus the test's skew.
func (h *harness) deskNow() time.Time { return h.now().Add(time.Duration(h.skew.Load())) }

// commit submits raw and waits for its block; the ledger must accept it.
func (h *harness) commit(t testing.TB, raw []byte) {
	t.Helper()
	if err := h.tryCommit(raw); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) tryCommit(raw []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wait, stop := h.app.Watch(tx.Hash(raw))
	defer stop()
	res, err := h.chain.Submit(ctx, raw)
	if err != nil {
		return err
	}
	if res.Code != 0 {
		return fmt.Errorf("CheckTx refused: %s: %s", ledger.Code(res.Code).Name(), res.Log)
	}
	tr, err := wait(ctx)
	if err != nil {
		return err
	}
	if tr.Code != ledger.OK {
		return fmt.Errorf("block refused: %s: %s", tr.Code.Name(), tr.Log)
	}
	return nil
}

// as signs body as authority id on lane 0 and commits it.
func (h *harness) as(t testing.TB, id string, body tx.Body) {
	t.Helper()
	d := h.dids[id]
	x, err := tx.New(chainID, d, 0, h.app.NextSeq(d, 0), body)
	if err != nil {
		t.Fatal(err)
	}
	x.Sign(h.keys[id])
	h.commit(t, x.Encode())
}

func (h *harness) authority(t testing.TB, id string) *ledger.Authority {
	t.Helper()
	au, _, err := h.app.Authorities(0)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(au, func(a ledger.Authority) bool { return a.ID == id })
	if i < 0 {
		t.Fatalf("no authority %s", id)
	}
	return &au[i]
}

func (h *harness) service(t testing.TB, id string) *ledger.Service {
	t.Helper()
	s, _, err := h.app.Service(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// kems are the authorities' published KEM keys, as a wallet reads them.
func (h *harness) kems(t testing.TB) map[string][]byte {
	t.Helper()
	au, _, err := h.app.Authorities(0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, a := range au {
		out[a.ID] = a.KEMKey
	}
	return out
}

// resident is a registered resident and their wallet.
type resident struct {
	name   string
	key    key.Private
	wallet *wallet.Contents
	secret []byte
	number idnumber.Number
	// status is each credential's status entry, by wallet index.
	status []tx.StatusRef
}

// newResident registers a resident born on 7 March of year, with an empty
// wallet holding the DID key's seed and a pseudonym secret.
func (h *harness) newResident(t testing.TB, name string, year int) *resident {
	t.Helper()
	h.residents++
	n, err := idnumber.Example("440604", year, 3, 7, h.residents)
	if err != nil {
		t.Fatal(err)
	}
	seed := sha256.Sum256([]byte("imi service test resident: " + name))
	k, err := key.FromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	rseed := sha256.Sum256([]byte("imi service test recovery: " + name))
	rk, err := key.FromSeed(rseed[:])
	if err != nil {
		t.Fatal(err)
	}
	d := did.FromKey(k.Public()).String()
	h.as(t, psb, &tx.RegisterResident{DID: d, Key: k.Public(), RecoveryHash: key.RecoveryHash(rk.Public()),
		UniquenessTag: tx.Hash32(sha256.Sum256([]byte("tag " + name))), Assurance: "high"})
	r := &resident{name: name, key: k, number: n, wallet: &wallet.Contents{DID: d, Key: k.Seed()}}
	if r.secret, _, err = service.PseudonymSecret(r.wallet); err != nil {
		t.Fatal(err)
	}
	return r
}

// psnKey is r's pseudonym key towards authority.
func (r *resident) psnKey(t testing.TB, authority string) key.Private {
	t.Helper()
	ks, err := service.Pseudonyms(r.secret, []string{authority})
	if err != nil {
		t.Fatal(err)
	}
	return ks[authority]
}

// psn is r's pseudonym towards authority.
func (r *resident) psn(t testing.TB, authority string) string {
	t.Helper()
	return pseudonym.FromKey(r.psnKey(t, authority).Public()).String()
}

// issue has issuer issue a credential of typ to r, added to r's wallet.
func (h *harness) issue(t testing.TB, r *resident, issuer, typ string, claims map[string]any) {
	t.Helper()
	ct, _, err := h.app.CredentialType(typ, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ref tx.StatusRef
	is := &credential.Issuer{
		Authority: h.authority(t, issuer), Key: h.keys[issuer], Type: ct, Rand: rand.Reader, Now: h.now,
		Fill: func(context.Context) ([]uint64, error) { return h.app.StatusListFill(issuer) },
		Reserve: func(_ context.Context, list, idx uint32) error {
			ref = tx.StatusRef{List: list, Index: idx}
			d := h.dids[issuer]
			x, err := tx.New(chainID, d, 0, h.app.NextSeq(d, 0), &tx.ReserveStatus{Type: typ, List: list, Indices: []uint32{idx}})
			if err != nil {
				return err
			}
			x.Sign(h.keys[issuer])
			if err := h.tryCommit(x.Encode()); err != nil {
				if strings.Contains(err.Error(), "taken") {
					return credential.ErrIndexTaken
				}
				return err
			}
			return nil
		},
	}
	iss, err := is.Issue(context.Background(), credential.Subject{DID: r.wallet.DID, Key: r.key.Public()}, claims, 0)
	if err != nil {
		t.Fatal(err)
	}
	r.wallet.Credentials = append(r.wallet.Credentials, wallet.Credential{
		ID: fmt.Sprintf("%s-%d", typ, len(r.wallet.Credentials)), SDJWT: iss.SDJWT, Type: iss.Type, VCT: iss.VCT,
		Issuer: iss.IssuerDID, IssuerID: iss.Issuer, IssuedAt: iss.IssuedAt, ExpiresAt: iss.ExpiresAt,
		StatusURI: iss.StatusURI, StatusIdx: uint64(iss.StatusIdx), Added: h.now(),
	})
	r.status = append(r.status, ref)
}

// The claim values the harness issues.
const (
	familyName  = "王"
	givenName   = "秀英"
	address     = "广东省佛山市禅城区祖庙路1号"
	siNumber    = "440604195503070014"
	bankAccount = "6222 0200 0000 0000"
)

// identity issues r's resident identity credential (wallet index 0 by
// convention).
func (h *harness) identity(t testing.TB, r *resident) {
	t.Helper()
	h.issue(t, r, psb, credential.TypeResidentIdentity, map[string]any{
		"family_name": familyName, "given_name": givenName, "resident_id_number": r.number.String(),
		"registered_address": address, "ethnicity": "汉",
	})
}

// pensioner is a resident born in 1955 holding an identity credential
// (index 0) and a social insurance credential (index 1): everything the
// pension form needs.
func (h *harness) pensioner(t testing.TB, name string) *resident {
	t.Helper()
	r := h.newResident(t, name, 1955)
	h.identity(t, r)
	h.issue(t, r, hrss, credential.TypeSocialInsurance, map[string]any{
		"insurance_number": siNumber, "pension_status": "contributing", "contribution_years": 32,
	})
	return r
}

// approve fills svc's form from r's wallet for application a and approves
// it with ch, as a wallet does. ch.Seq is filled in from the ledger.
func (h *harness) approve(t testing.TB, r *resident, a *service.Application, ch service.Choice) *service.Submission {
	t.Helper()
	svc := h.service(t, a.Service)
	types, _, err := h.app.CredentialTypes(0)
	if err != nil {
		t.Fatal(err)
	}
	form := consent.Prefill(&svc.RegisterService, svc.Version, service.Held(r.wallet, h.now()), service.Sensitivity(types))
	ch.Seq = h.app.NextSeq(r.psn(t, svc.Authority), 0)
	sub, err := service.Approve(r.wallet, r.secret, a, svc, form, h.kems(t), chainID, ch, h.now())
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// standing is the choice of a one-year standing consent with the bank
// account typed in.
func standing() service.Choice {
	return service.Choice{Mode: tx.ModeStanding, Days: 365, Typed: map[string]string{"bank_account": bankAccount}}
}

func (h *harness) open(t testing.TB, authority, svc string) *service.Application {
	t.Helper()
	a, err := h.desk.Open(authority, svc)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// applyPension takes r's pension application with a standing consent through
// the desk.
func (h *harness) applyPension(t testing.TB, r *resident) *service.Application {
	t.Helper()
	a := h.open(t, hrss, service.Pension)
	got, err := h.desk.Submit(context.Background(), a.ID, h.approve(t, r, a, standing()))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return got
}

// present makes a presentation of r's credential i disclosing claims, bound
// to aud and nonce.
func (h *harness) present(t testing.TB, r *resident, i int, aud, nonce string, claims ...string) string {
	t.Helper()
	p, err := sdjwt.Present(r.wallet.Credentials[i].SDJWT, claims)
	if err != nil {
		t.Fatal(err)
	}
	p, err = sdjwt.AddKeyBinding(p, credential.Signer(r.key), aud, nonce, h.now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// regrant decodes sub's grant, lets edit change it, and signs it again as
// signer with k.
func regrant(t testing.TB, sub *service.Submission, signer string, k key.Private, edit func(*tx.GrantConsent)) {
	t.Helper()
	x, body, err := tx.Decode(sub.Grant)
	if err != nil {
		t.Fatal(err)
	}
	g := body.(*tx.GrantConsent)
	edit(g)
	y, err := tx.New(x.ChainID, signer, x.Lane, x.Seq, g)
	if err != nil {
		t.Fatal(err)
	}
	y.Sign(k)
	sub.Grant = y.Encode()
}

// grantOf decodes sub's grant.
func grantOf(t testing.TB, sub *service.Submission) *tx.GrantConsent {
	t.Helper()
	_, body, err := tx.Decode(sub.Grant)
	if err != nil {
		t.Fatal(err)
	}
	return body.(*tx.GrantConsent)
}

// wantRejection checks err is the desk's refusal with the words en and, if
// detail is not "", that detail.
func wantRejection(t testing.TB, err error, en, detail string) {
	t.Helper()
	var rej *service.Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("err = %v (%T), want a *service.Rejection %q", err, err, en)
	}
	if rej.EN != en || rej.ZH == "" {
		t.Errorf("rejection = %q (zh %q), want %q", rej.EN, rej.ZH, en)
	}
	if detail != "" && rej.Detail != detail {
		t.Errorf("rejection detail = %q, want %q", rej.Detail, detail)
	}
}

// wantDenyRejection checks err is the desk's refusal for the ledger's deny
// reason why, in the ledger's words.
func wantDenyRejection(t testing.TB, err error, why string) {
	t.Helper()
	en, _ := ledger.DenyReasonText(why)
	wantRejection(t, err, en, why)
}

// nothingStored checks a refused submission of application a by the
// pseudonym subject left no trace: no consent and no access record on the
// ledger, no transaction under the pseudonym, nothing received, and the
// application still open.
func (h *harness) nothingStored(t testing.TB, a *service.Application, subject string) {
	t.Helper()
	if c, _, err := h.app.Consent(subject, a.Service, 0); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("consent of %s after a refusal = %+v, %v; want none", subject, c, err)
	}
	if log, _, err := h.app.AccessLog(subject, 0); err != nil || len(log) != 0 {
		t.Errorf("access log of %s after a refusal = %+v, %v; want empty", subject, log, err)
	}
	if n := h.app.NextSeq(subject, 0); n != 0 {
		t.Errorf("%s has %d transactions on the ledger, want 0", subject, n)
	}
	rcv, err := h.desk.Received(a.Authority)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(rcv, func(x service.Application) bool { return x.ID == a.ID }) {
		t.Errorf("the refused application %s is among those received", a.ID)
	}
	got, err := h.desk.Get(a.ID)
	if err != nil || got.Status != service.StatusOpen || got.Subject != "" || len(got.Values) != 0 {
		t.Errorf("application after a refusal = %+v, %v; want it open and empty", got, err)
	}
}

func newRequestID(t testing.TB) tx.Bytes {
	t.Helper()
	id := make(tx.Bytes, 16)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	return id
}

// zeroKey stands for "no guardian" where consent.NewSubject wants a key.
var zeroKey key.Private

// delegate records, as the registrar, that guardian consents for ward (a
// minor) to the services in scope.
func (h *harness) delegate(t testing.TB, guardian, ward *resident, scope []string) {
	t.Helper()
	h.as(t, psb, &tx.RecordDelegation{Guardian: guardian.wallet.DID, Ward: ward.wallet.DID, Basis: tx.BasisMinor,
		Reference: "CC/2030/0001", Scope: scope, Days: 365, GuardianConsent: true})
}

// medical is the choice of a standing consent to medical insurance
// enrolment, made with guardian when not nil.
func medical(guardian *resident) service.Choice {
	ch := service.Choice{Mode: tx.ModeStanding, Days: 365}
	if guardian != nil {
		ch.Guardian = &service.Guardian{Contents: guardian.wallet, Secret: guardian.secret}
	}
	return ch
}

// unregistered is a wallet whose DID the ledger does not know.
func unregistered(t testing.TB, name string) (*wallet.Contents, key.Private) {
	t.Helper()
	seed := sha256.Sum256([]byte("imi service test unregistered: " + name))
	k, err := key.FromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return &wallet.Contents{DID: did.FromKey(k.Public()).String(), Key: k.Seed()}, k
}
