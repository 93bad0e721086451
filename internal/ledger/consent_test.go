package ledger_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/tx"
)

// The consent fixture: five authorities, the demo district's credential
// types and three services published at genesis.
//
//	psb      registrar, issues resident_identity and household_registration
//	hrss     issues social_insurance
//	hsb      issues medical_insurance, runs hsb.reimburse
//	utility  issues utility_account
//	civil    runs civil.allowance and civil.certificate
//
// Residents act on consents only under pseudonyms, one per authority; the
// DID-registered residents alice, bob and carol are for delegations.

const (
	svcAllowance   = "civil.allowance"   // one_time and standing, up to 365 days
	svcReimburse   = "hsb.reimburse"     // one_time and standing, up to 730 days
	svcCertificate = "civil.certificate" // one_time only
)

func cref(typ, claim string) tx.ClaimRef { return tx.ClaimRef{Type: typ, Claim: claim} }

// Claims the fixture's services ask for, and two they never do.
var (
	clFamilyName   = cref(credential.TypeResidentIdentity, "family_name")
	clGivenName    = cref(credential.TypeResidentIdentity, "given_name")
	clBirthDate    = cref(credential.TypeResidentIdentity, "birth_date")
	clAddress      = cref(credential.TypeResidentIdentity, "registered_address")
	clAgeOver60    = cref(credential.TypeResidentIdentity, "age_over_60")
	clSex          = cref(credential.TypeResidentIdentity, "sex") // asked by no service
	clPension      = cref(credential.TypeSocialInsurance, "pension_status")
	clContribution = cref(credential.TypeSocialInsurance, "contribution_years")
	clMedicalNo    = cref(credential.TypeMedicalInsurance, "insurance_number")
	clServiceAddr  = cref(credential.TypeUtilityAccount, "service_address")
	clAccountNo    = cref(credential.TypeUtilityAccount, "account_number") // asked by no service
)

// formFor is a form with one field per claim, in the order given.
func formFor(claims ...tx.ClaimRef) []tx.FormField {
	out := make([]tx.FormField, len(claims))
	for i, c := range claims {
		out[i] = tx.FormField{Name: c.Type + "_" + c.Claim, LabelZH: "栏目 " + c.Claim, LabelEN: "Field " + c.Claim, Claim: c}
	}
	return out
}

func newService(id string, required, optional []tx.ClaimRef, modes []string, maxDays uint32) *tx.RegisterService {
	return &tx.RegisterService{
		ID: id, NameZH: "服务 " + id, NameEN: "Service " + id,
		PurposeZH: "办理 " + id, PurposeEN: "To deliver " + id, LegalBasis: "Test Regulation Art. 1",
		Required: required, Optional: optional, RetentionDays: 1825,
		Modes: modes, MaxStandingDays: maxDays,
		Form: formFor(append(slices.Clone(required), optional...)...),
	}
}

func allowanceService() *tx.RegisterService {
	return newService(svcAllowance,
		[]tx.ClaimRef{clFamilyName, clGivenName, clPension},
		[]tx.ClaimRef{clAddress, clServiceAddr},
		[]string{tx.ModeOneTime, tx.ModeStanding}, 365)
}

func reimburseService() *tx.RegisterService {
	return newService(svcReimburse,
		[]tx.ClaimRef{clMedicalNo, clGivenName},
		[]tx.ClaimRef{clAgeOver60, clContribution},
		[]string{tx.ModeOneTime, tx.ModeStanding}, 730)
}

func certificateService() *tx.RegisterService {
	return newService(svcCertificate, []tx.ClaimRef{clBirthDate}, nil, []string{tx.ModeOneTime}, 0)
}

// claimInfo is what the ledger knows of a published claim.
type claimInfo struct {
	issuer    string
	sensitive bool
}

// consentGenesis is the fixture's genesis and the facts of its claims.
type consentGenesis struct {
	psb, hrss, hsb, utility, civil *authority
	genesis                        ledger.Genesis
	claims                         map[tx.ClaimRef]claimInfo
}

func newConsentGenesis(t testing.TB) *consentGenesis {
	t.Helper()
	g := &consentGenesis{
		psb:     newAuthority(t, "psb", 10, "issuer:household_registration", "issuer:resident_identity", ledger.RoleRegistrar),
		hrss:    newAuthority(t, "hrss", 10, "issuer:social_insurance"),
		hsb:     newAuthority(t, "hsb", 10, "issuer:medical_insurance", ledger.RoleServiceProvider),
		utility: newAuthority(t, "utility", 0, "issuer:utility_account"),
		civil:   newAuthority(t, "civil", 0, ledger.RoleServiceProvider),
		claims:  map[tx.ClaimRef]claimInfo{},
	}
	g.genesis = genesisOf(g.psb, g.hrss, g.hsb, g.utility, g.civil)
	g.genesis.CredentialTypes = credential.DemoTypes("psb", "hrss", "hsb", "utility")
	for _, ct := range g.genesis.CredentialTypes {
		for _, c := range ct.Type.Claims {
			g.claims[cref(ct.Type.ID, c.Name)] = claimInfo{issuer: ct.Issuer, sensitive: c.Sensitive}
		}
	}
	for _, s := range []struct {
		by  string
		svc *tx.RegisterService
	}{{"civil", allowanceService()}, {"hsb", reimburseService()}, {"civil", certificateService()}} {
		g.genesis.Services = append(g.genesis.Services, ledger.GenesisService{Authority: s.by, Service: *s.svc})
	}
	return g
}

// consentDistrict is a chain started from the consent genesis.
type consentDistrict struct {
	*chain
	*consentGenesis
	alice, bob, carol *resident
	// wallets of residents, by name: only their pseudonym secrets matter here.
	wallets map[string]wallet
	ids     uint64 // access record ids handed out
}

func newConsentDistrict(t testing.TB) *consentDistrict {
	t.Helper()
	g := newConsentGenesis(t)
	d := &consentDistrict{
		chain:          newChain(t, memApp(t), g.genesis),
		consentGenesis: g,
		alice:          newResident(t, "alice", 1),
		bob:            newResident(t, "bob", 2),
		carol:          newResident(t, "carol", 3),
		wallets:        map[string]wallet{},
	}
	d.ok() // the genesis state is readable from block one on
	return d
}

// wallet is a resident's pseudonym secret.
type wallet struct{ secret []byte }

func newWallet(name string) wallet {
	s := sha256.Sum256([]byte("imi ledger test pseudonym secret: " + name))
	return wallet{secret: s[:]}
}

// psn is a resident's pseudonym towards one authority, with its key.
type psn struct {
	id  string
	key key.Private
}

func (w wallet) towards(t testing.TB, authority string) psn {
	t.Helper()
	k, err := pseudonym.Derive(w.secret, authority)
	if err != nil {
		t.Fatal(err)
	}
	return psn{id: pseudonym.FromKey(k.Public()).String(), key: k}
}

// psn is the pseudonym of the resident called name towards authority.
func (d *consentDistrict) psn(name, authority string) psn {
	w, ok := d.wallets[name]
	if !ok {
		w = newWallet(name)
		d.wallets[name] = w
	}
	return w.towards(d.t, authority)
}

// service is the committed service record.
func (d *consentDistrict) service(id string) *ledger.Service {
	d.t.Helper()
	s, _, err := d.app.Service(id, 0)
	if err != nil {
		d.t.Fatalf("Service(%s): %v", id, err)
	}
	return s
}

// grant is a well-formed grant of claims (the service's required claims if
// none are named) to the service's current version.
func (d *consentDistrict) grant(service, mode string, days uint32, claims ...tx.ClaimRef) *tx.GrantConsent {
	d.t.Helper()
	s := d.service(service)
	if len(claims) == 0 {
		claims = s.Required
	}
	return grantBody(d.claims, s.ID, s.Version, s.Authority, mode, days, claims)
}

// grantBody is a grant with the sensitive list and sealed subjects the
// ledger expects for claims.
func grantBody(info map[tx.ClaimRef]claimInfo, service string, version uint64, authority, mode string, days uint32, claims []tx.ClaimRef) *tx.GrantConsent {
	claims = slices.SortedFunc(slices.Values(claims), tx.ClaimRef.Compare)
	var sensitive []tx.ClaimRef
	sources := []string{authority}
	for _, c := range claims {
		ci := info[c]
		if ci.sensitive {
			sensitive = append(sensitive, c)
		}
		if ci.issuer != "" && !slices.Contains(sources, ci.issuer) {
			sources = append(sources, ci.issuer)
		}
	}
	slices.Sort(sources)
	subjects := make([]tx.SealedSubject, len(sources))
	for i, a := range sources {
		subjects[i] = tx.SealedSubject{Authority: a, Box: fakeBox(a)}
	}
	return &tx.GrantConsent{
		Service: service, ServiceVersion: version, Claims: claims, Sensitive: sensitive,
		Mode: mode, Days: days, Subjects: subjects,
	}
}

// fakeBox stands in for a sealed subject: the ledger sees only its length.
func fakeBox(authority string) tx.Bytes {
	return bytes.Repeat([]byte(authority[:1]), consent.MaxBox)
}

// sign signs body for p.
func (d *consentDistrict) sign(p psn, body tx.Body) []byte { return d.txAs(p.id, p.key, body) }

// withGuardian adds guardian g's co-signature to a grant or revocation made
// by ward, over what the ward signs.
func withGuardian(ward, g psn, body tx.Body) {
	act := &tx.GuardianAct{Pseudonym: g.id}
	switch b := body.(type) {
	case *tx.GrantConsent:
		b.Guardian = act
	case *tx.RevokeConsent:
		b.Guardian = act
	}
	act.Sig = g.key.Sign(tx.GuardianSignBytes(testChainID, ward.id, body))
}

// nextID is a fresh access record id.
func (d *consentDistrict) nextID() tx.Bytes {
	d.ids++
	h := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("access record "), d.ids))
	return h[:16]
}

// presentation is an "allowed" presentation record of claims of subject
// read by reader for service.
func (d *consentDistrict) presentation(subject psn, reader, service string, claims ...tx.ClaimRef) tx.AccessRecord {
	return tx.AccessRecord{
		ID: d.nextID(), Subject: subject.id, Reader: reader, Service: service,
		Claims: slices.SortedFunc(slices.Values(claims), tx.ClaimRef.Compare), Channel: tx.ChannelPresentation, Outcome: tx.OutcomeAllowed,
	}
}

// backOffice is an "allowed" back-office record: source releases claims of
// subject to reader for service.
func (d *consentDistrict) backOffice(subject psn, reader, source, service string, claims ...tx.ClaimRef) tx.AccessRecord {
	r := d.presentation(subject, reader, service, claims...)
	r.Channel, r.Source = tx.ChannelBackOffice, source
	return r
}

// record is a record_access transaction of a.
func (d *consentDistrict) record(a *authority, recs ...tx.AccessRecord) []byte {
	return d.tx(a.party, &tx.RecordAccess{Records: recs})
}

// stored is the access record as the ledger stored it.
func (d *consentDistrict) stored(r tx.AccessRecord) *ledger.Access {
	d.t.Helper()
	a, _, err := d.app.AccessRecord(r.Subject, r.ID, 0)
	if err != nil {
		d.t.Fatalf("AccessRecord(%s, %x): %v", r.Subject, r.ID, err)
	}
	return a
}

// wantStored checks the outcome and reason the ledger stored for r.
func (d *consentDistrict) wantStored(r tx.AccessRecord, outcome, reason string) {
	d.t.Helper()
	a := d.stored(r)
	if a.Outcome != outcome || a.Reason != reason {
		d.t.Errorf("record %x stored as %s/%q, want %s/%q", r.ID[:4], a.Outcome, a.Reason, outcome, reason)
	}
}

// decide is CheckAccess for r, which must not fail.
func (d *consentDistrict) decide(r tx.AccessRecord) *ledger.Decision {
	d.t.Helper()
	dec, err := d.app.CheckAccess(&r)
	if err != nil {
		d.t.Fatalf("CheckAccess: %v", err)
	}
	return dec
}

// wantDecision checks CheckAccess's answer to r: reason "" means allowed.
func (d *consentDistrict) wantDecision(r tx.AccessRecord, reason string) {
	d.t.Helper()
	dec := d.decide(r)
	if dec.Allowed != (reason == "") || dec.Reason != reason || dec.Height != d.height || !dec.Time.Equal(d.now) {
		d.t.Errorf("CheckAccess = allowed %v reason %q at %d %s, want reason %q at %d %s",
			dec.Allowed, dec.Reason, dec.Height, dec.Time, reason, d.height, d.now)
	}
}

// consent is subject's committed consent to service, or nil.
func (d *consentDistrict) consent(subject psn, service string) *ledger.Consent {
	d.t.Helper()
	c, _, err := d.app.Consent(subject.id, service, 0)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil
	}
	if err != nil {
		d.t.Fatalf("Consent: %v", err)
	}
	return c
}

// refused checks that raw is refused with want both by CheckTx and in a
// block, and leaves the state as it was.
func (d *consentDistrict) refused(name string, raw []byte, want ledger.Code) {
	d.t.Helper()
	if got := d.check(raw); got != want {
		d.t.Errorf("%s: CheckTx = %s, want %s", name, got.Name(), want.Name())
	}
	before := d.app.AppHash()
	res := d.block(raw)
	if got := ledger.Code(res.TxResults[0].Code); got != want {
		d.t.Errorf("%s: = %s (%s), want %s", name, got.Name(), res.TxResults[0].Log, want.Name())
	}
	if !bytes.Equal(d.app.AppHash(), before) {
		d.t.Errorf("%s: a refused transaction changed the state", name)
	}
}

func TestSetKEMKey(t *testing.T) {
	d := newConsentDistrict(t)
	d.ok(d.tx(d.psb.party, d.alice.register()))
	k := bytes.Repeat([]byte{7}, 32)
	d.refused("31 bytes", d.tx(d.civil.party, &tx.SetKEMKey{Key: k[:31]}), ledger.CodeInvalidField)
	d.refused("resident", d.tx(d.alice.party, &tx.SetKEMKey{Key: k}), ledger.CodeUnknownSigner)
	d.ok(d.tx(d.civil.party, &tx.SetKEMKey{Key: k}))
	as, _, err := d.app.Authorities(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if got := a.KEMKey; (a.ID == "civil") != bytes.Equal(got, k) {
			t.Errorf("%s has KEM key %x", a.ID, got)
		}
	}
}

func TestRegisterService(t *testing.T) {
	d := newConsentDistrict(t)
	if s := d.service(svcAllowance); s.Version != 1 || s.Authority != "civil" || s.Registered.Height != 1 {
		t.Fatalf("genesis service = version %d by %s at %d", s.Version, s.Authority, s.Registered.Height)
	}
	s := newService("civil.parking", []tx.ClaimRef{clGivenName}, []tx.ClaimRef{clServiceAddr}, []string{tx.ModeStanding}, 30)
	d.ok(d.tx(d.civil.party, s))
	s.PurposeEN = "To deliver civil.parking, and to plan parking"
	d.ok(d.tx(d.civil.party, s))
	if got := d.service("civil.parking"); got.Version != 2 || got.PurposeEN != s.PurposeEN || got.Registered.Height != d.height {
		t.Errorf("re-registered service = %+v", got)
	}
	all, _, err := d.app.Services(0)
	if err != nil || len(all) != 4 {
		t.Errorf("Services = %d services, %v; want 4", len(all), err)
	}
	if old, _, err := d.app.Service("civil.parking", d.height-1); err != nil || old.Version != 1 {
		t.Errorf("version 1 is lost from history: %+v, %v", old, err)
	}
}

func TestRegisterServiceRefusals(t *testing.T) {
	d := newConsentDistrict(t)
	d.ok(d.tx(d.psb.party, d.alice.register()))
	many := make([]tx.ClaimRef, 0, 65)
	for _, ct := range d.genesis.CredentialTypes {
		for _, c := range ct.Type.Claims {
			many = append(many, cref(ct.Type.ID, c.Name))
		}
	}
	slices.SortFunc(many, tx.ClaimRef.Compare)

	type mutation func(*tx.RegisterService)
	for _, c := range []struct {
		name string
		by   *party
		mut  mutation
		want ledger.Code
	}{
		{"not a service provider", d.hrss.party, nil, ledger.CodeNotAuthorized},
		{"resident", d.alice.party, nil, ledger.CodeUnknownSigner},
		{"another authority's service", d.hsb.party, func(s *tx.RegisterService) { s.ID = svcAllowance }, ledger.CodeNotAuthorized},
		{"bad id", nil, func(s *tx.RegisterService) { s.ID = "Civil Parking" }, ledger.CodeInvalidField},
		{"one-letter id", nil, func(s *tx.RegisterService) { s.ID = "c" }, ledger.CodeInvalidField},
		{"no Chinese name", nil, func(s *tx.RegisterService) { s.NameZH = "" }, ledger.CodeInvalidField},
		{"no English purpose", nil, func(s *tx.RegisterService) { s.PurposeEN = "" }, ledger.CodeInvalidField},
		{"control in purpose", nil, func(s *tx.RegisterService) { s.PurposeZH = "办理\n停车" }, ledger.CodeInvalidField},
		{"no legal basis", nil, func(s *tx.RegisterService) { s.LegalBasis = "" }, ledger.CodeInvalidField},
		{"nothing required", nil, func(s *tx.RegisterService) { s.Required = nil; s.Form = formFor(s.Optional...) }, ledger.CodeInvalidField},
		{"too many claims", nil, func(s *tx.RegisterService) {
			s.Required, s.Optional = many, nil
			for len(s.Required) <= 64 {
				s.Required = append(s.Required, s.Required...) // unsorted too, but the count is checked first
			}
			s.Form = formFor(s.Required...)
		}, ledger.CodeInvalidField},
		{"retention 0", nil, func(s *tx.RegisterService) { s.RetentionDays = 0 }, ledger.CodeInvalidField},
		{"retention beyond a life", nil, func(s *tx.RegisterService) { s.RetentionDays = 100*366 + 1 }, ledger.CodeInvalidField},
		{"unknown type", nil, func(s *tx.RegisterService) {
			s.Optional = []tx.ClaimRef{cref("zz_unknown", "x")}
			s.Form = formFor(append(slices.Clone(s.Required), s.Optional...)...)
		}, ledger.CodeInvalidField},
		{"unknown claim", nil, func(s *tx.RegisterService) {
			s.Optional = []tx.ClaimRef{cref(credential.TypeUtilityAccount, "meter_reading")}
			s.Form = formFor(append(slices.Clone(s.Required), s.Optional...)...)
		}, ledger.CodeInvalidField},
		{"required unsorted", nil, func(s *tx.RegisterService) {
			s.Required = []tx.ClaimRef{clGivenName, clFamilyName}
			s.Form = formFor(append(slices.Clone(s.Required), s.Optional...)...)
		}, ledger.CodeInvalidField},
		{"required repeated", nil, func(s *tx.RegisterService) {
			s.Required = []tx.ClaimRef{clGivenName, clGivenName}
		}, ledger.CodeInvalidField},
		{"required and optional", nil, func(s *tx.RegisterService) {
			s.Optional = []tx.ClaimRef{clGivenName}
			s.Form = formFor(clGivenName, clServiceAddr)
		}, ledger.CodeInvalidField},
		{"no modes", nil, func(s *tx.RegisterService) { s.Modes, s.MaxStandingDays = nil, 0 }, ledger.CodeInvalidField},
		{"modes unsorted", nil, func(s *tx.RegisterService) { s.Modes = []string{tx.ModeStanding, tx.ModeOneTime} }, ledger.CodeInvalidField},
		{"mode twice", nil, func(s *tx.RegisterService) { s.Modes = []string{tx.ModeStanding, tx.ModeStanding} }, ledger.CodeInvalidField},
		{"unknown mode", nil, func(s *tx.RegisterService) { s.Modes = []string{"forever"} }, ledger.CodeInvalidField},
		{"standing without days", nil, func(s *tx.RegisterService) { s.MaxStandingDays = 0 }, ledger.CodeInvalidField},
		{"standing too long", nil, func(s *tx.RegisterService) { s.MaxStandingDays = 10*366 + 1 }, ledger.CodeInvalidField},
		{"one-time with days", nil, func(s *tx.RegisterService) { s.Modes = []string{tx.ModeOneTime} }, ledger.CodeInvalidField},
		{"claim not on the form", nil, func(s *tx.RegisterService) { s.Form = s.Form[:1] }, ledger.CodeInvalidField},
		{"form asks for more", nil, func(s *tx.RegisterService) { s.Form = formFor(clGivenName, clServiceAddr, clSex) }, ledger.CodeInvalidField},
		{"form asks for another claim", nil, func(s *tx.RegisterService) { s.Form = formFor(clGivenName, clSex) }, ledger.CodeInvalidField},
		{"claim on the form twice", nil, func(s *tx.RegisterService) {
			s.Form = formFor(clGivenName, clServiceAddr)
			s.Form[1].Claim = clGivenName
		}, ledger.CodeInvalidField},
		{"field name repeated", nil, func(s *tx.RegisterService) { s.Form[1].Name = s.Form[0].Name }, ledger.CodeInvalidField},
		{"field name upper-case", nil, func(s *tx.RegisterService) { s.Form[0].Name = "GivenName" }, ledger.CodeInvalidField},
		{"field without label", nil, func(s *tx.RegisterService) { s.Form[0].LabelEN = "" }, ledger.CodeInvalidField},
	} {
		s := newService("civil.parking", []tx.ClaimRef{clGivenName}, []tx.ClaimRef{clServiceAddr}, []string{tx.ModeStanding}, 30)
		if c.mut != nil {
			c.mut(s)
		}
		by := c.by
		if by == nil {
			by = d.civil.party
		}
		d.refused(c.name, d.tx(by, s), c.want)
	}
	if s := d.service(svcAllowance); s.Version != 1 || s.Authority != "civil" {
		t.Errorf("a refused registration changed %s: %+v", svcAllowance, s)
	}
}

func TestGrantConsent(t *testing.T) {
	d := newConsentDistrict(t)
	p := d.psn("alice", "civil")
	g := d.grant(svcAllowance, tx.ModeStanding, 30, clFamilyName, clGivenName, clPension, clServiceAddr)
	if want := []string{"civil", "hrss", "psb", "utility"}; !slices.EqualFunc(g.Subjects, want, func(s tx.SealedSubject, a string) bool { return s.Authority == a }) {
		t.Fatalf("fixture: subjects %v, want sealed to %v", g.Subjects, want)
	}
	raw := d.sign(p, g)
	d.ok(raw)
	c := d.consent(p, svcAllowance)
	want := &ledger.Consent{
		ID: txID(raw), Subject: p.id, Service: svcAllowance, ServiceVersion: 1, Authority: "civil",
		Claims: g.Claims, Sensitive: []tx.ClaimRef{clPension}, Sources: []string{"civil", "hrss", "psb", "utility"},
		Mode: tx.ModeStanding, Granted: ledger.Stamp{Height: d.height, Time: d.now}, Until: d.now.Add(30 * 24 * time.Hour),
		Status: ledger.ConsentActive,
	}
	if !consentEqual(c, want) {
		t.Errorf("consent =\n%+v\nwant\n%+v", c, want)
	}
	boxes, _, err := d.app.ConsentBoxes(p.id, svcAllowance, 0)
	if err != nil || !slices.EqualFunc(boxes, g.Subjects, func(a, b tx.SealedSubject) bool { return a.Authority == b.Authority && bytes.Equal(a.Box, b.Box) }) {
		t.Errorf("ConsentBoxes = %v, %v", boxes, err)
	}
	// A one-time consent lasts OneTimeWindow; a new grant replaces the old.
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeOneTime, 0)))
	if c := d.consent(p, svcAllowance); c.Mode != tx.ModeOneTime || !c.Until.Equal(d.now.Add(ledger.OneTimeWindow)) || len(c.Claims) != 3 {
		t.Errorf("one-time consent = %+v", c)
	}
	if cs, _, err := d.app.Consents(p.id, 0); err != nil || len(cs) != 1 {
		t.Errorf("Consents = %d, %v; want the one latest grant", len(cs), err)
	}
	// Alice's pseudonym towards hsb is another name: no link to civil's.
	q := d.psn("alice", "hsb")
	if q.id == p.id {
		t.Fatal("one pseudonym for two authorities")
	}
	d.ok(d.sign(q, d.grant(svcReimburse, tx.ModeStanding, 730, clMedicalNo, clGivenName, clContribution)))
	if c := d.consent(q, svcReimburse); !slices.Equal(c.Sources, []string{"hrss", "hsb", "psb"}) || !slices.Equal(c.Sensitive, []tx.ClaimRef{clMedicalNo, clContribution}) {
		t.Errorf("reimburse consent = %+v", c)
	}
}

// txID is the id the ledger gives a record made by the transaction raw.
func txID(raw []byte) string {
	h := sha256.Sum256(raw)
	return fmt.Sprintf("%x", h[:16])
}

func consentEqual(a, b *ledger.Consent) bool {
	ta, _ := tx.Marshal(a)
	tb, _ := tx.Marshal(b)
	return bytes.Equal(ta, tb)
}

func TestGrantConsentRefusals(t *testing.T) {
	d := newConsentDistrict(t)
	d.ok(d.tx(d.psb.party, d.alice.register()))
	p := d.psn("alice", "civil")
	guardian := d.psn("bob", "civil")
	for _, c := range []struct {
		name string
		body func() *tx.GrantConsent
		// sign signs the body; nil: p signs it.
		sign func(*tx.GrantConsent) []byte
		want ledger.Code
	}{
		{"unknown service", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Service = "civil.unknown"
			return g
		}, nil, ledger.CodeNotFound},
		{"version ahead", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.ServiceVersion = 2
			return g
		}, nil, ledger.CodeInvalidField},
		{"version 0", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.ServiceVersion = 0
			return g
		}, nil, ledger.CodeInvalidField},
		{"missing required claim", func() *tx.GrantConsent {
			return d.grant(svcAllowance, tx.ModeStanding, 30, clFamilyName, clGivenName)
		}, nil, ledger.CodeInvalidField},
		{"claim not asked", func() *tx.GrantConsent {
			return d.grant(svcAllowance, tx.ModeStanding, 30, clFamilyName, clGivenName, clSex, clPension)
		}, nil, ledger.CodeInvalidField},
		{"claim of no type", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Claims = append(g.Claims, cref("zz_unknown", "x"))
			return g
		}, nil, ledger.CodeInvalidField},
		{"claims unsorted", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Claims[0], g.Claims[1] = g.Claims[1], g.Claims[0]
			return g
		}, nil, ledger.CodeInvalidField},
		{"claim repeated", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Claims = slices.Insert(g.Claims, 0, g.Claims[0])
			return g
		}, nil, ledger.CodeInvalidField},
		{"sensitive claim not listed", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Sensitive = nil
			return g
		}, nil, ledger.CodeInvalidField},
		{"non-sensitive claim listed", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Sensitive = []tx.ClaimRef{clFamilyName, clPension}
			return g
		}, nil, ledger.CodeInvalidField},
		{"sensitive claim not granted", func() *tx.GrantConsent {
			g := d.grant(svcReimburse, tx.ModeStanding, 30)
			g.Sensitive = []tx.ClaimRef{clContribution, clMedicalNo}
			return g
		}, nil, ledger.CodeInvalidField},
		{"standing not offered", func() *tx.GrantConsent {
			g := d.grant(svcCertificate, tx.ModeOneTime, 0)
			g.Mode, g.Days = tx.ModeStanding, 30
			return g
		}, nil, ledger.CodeInvalidField},
		{"unknown mode", func() *tx.GrantConsent { return d.grant(svcAllowance, "forever", 0) }, nil, ledger.CodeInvalidField},
		{"one-time with days", func() *tx.GrantConsent { return d.grant(svcAllowance, tx.ModeOneTime, 1) }, nil, ledger.CodeInvalidField},
		{"standing 0 days", func() *tx.GrantConsent { return d.grant(svcAllowance, tx.ModeStanding, 0) }, nil, ledger.CodeInvalidField},
		{"standing beyond the service's maximum", func() *tx.GrantConsent { return d.grant(svcAllowance, tx.ModeStanding, 366) }, nil, ledger.CodeInvalidField},
		{"subject missing", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Subjects = g.Subjects[1:]
			return g
		}, nil, ledger.CodeInvalidField},
		{"no subjects", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Subjects = nil
			return g
		}, nil, ledger.CodeInvalidField},
		{"extra subject", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Subjects = append(g.Subjects, tx.SealedSubject{Authority: "utility", Box: fakeBox("utility")})
			return g
		}, nil, ledger.CodeInvalidField},
		{"subject for a non-party", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Subjects[1].Authority = "hsb"
			return g
		}, nil, ledger.CodeInvalidField},
		{"subjects unsorted", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Subjects[0], g.Subjects[1] = g.Subjects[1], g.Subjects[0]
			return g
		}, nil, ledger.CodeInvalidField},
		{"empty box", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Subjects[0].Box = nil
			return g
		}, nil, ledger.CodeInvalidField},
		{"oversized box", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			g.Subjects[2].Box = make([]byte, ledger.MaxBoxBytes+1)
			return g
		}, nil, ledger.CodeInvalidField},
		{"DID signer", func() *tx.GrantConsent { return d.grant(svcAllowance, tx.ModeStanding, 30) },
			func(g *tx.GrantConsent) []byte { return d.tx(d.alice.party, g) }, ledger.CodeNotAuthorized},
		{"authority signer", func() *tx.GrantConsent { return d.grant(svcAllowance, tx.ModeStanding, 30) },
			func(g *tx.GrantConsent) []byte { return d.tx(d.civil.party, g) }, ledger.CodeNotAuthorized},
		{"signed by another key", func() *tx.GrantConsent { return d.grant(svcAllowance, tx.ModeStanding, 30) },
			func(g *tx.GrantConsent) []byte { return d.txAs(p.id, guardian.key, g) }, ledger.CodeBadSignature},
		{"malformed pseudonym", func() *tx.GrantConsent { return d.grant(svcAllowance, tx.ModeStanding, 30) },
			func(g *tx.GrantConsent) []byte { return d.txAs("psn:abc", p.key, g) }, ledger.CodeMalformed},
		{"bad guardian signature", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			withGuardian(p, guardian, g)
			g.Days++ // after the guardian signed
			return g
		}, nil, ledger.CodeBadSignature},
		{"guardian signature by the ward", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			withGuardian(p, psn{id: guardian.id, key: p.key}, g)
			return g
		}, nil, ledger.CodeBadSignature},
		{"guardian is the ward", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			withGuardian(p, p, g)
			return g
		}, nil, ledger.CodeInvalidField},
		{"guardian not a pseudonym", func() *tx.GrantConsent {
			g := d.grant(svcAllowance, tx.ModeStanding, 30)
			withGuardian(p, psn{id: d.bob.did, key: guardian.key}, g)
			return g
		}, nil, ledger.CodeInvalidField},
	} {
		g := c.body()
		raw := []byte(nil)
		if c.sign != nil {
			raw = c.sign(g)
		} else {
			raw = d.sign(p, g)
		}
		d.refused(c.name, raw, c.want)
		if got := d.consent(p, svcAllowance); got != nil {
			t.Fatalf("%s: a consent was stored: %+v", c.name, got)
		}
	}
}

func TestGuardianConsent(t *testing.T) {
	d := newConsentDistrict(t)
	ward, guardian := d.psn("alice", "civil"), d.psn("bob", "civil")
	g := d.grant(svcAllowance, tx.ModeStanding, 30)
	withGuardian(ward, guardian, g)
	d.ok(d.sign(ward, g))
	c := d.consent(ward, svcAllowance)
	if c.ByGuardian != guardian.id || c.Subject != ward.id {
		t.Fatalf("consent by guardian = %+v", c)
	}
	if d.consent(guardian, svcAllowance) != nil {
		t.Fatal("the guardian got a consent of their own")
	}
	r := d.presentation(ward, "civil", svcAllowance, clGivenName)
	d.ok(d.record(d.civil, r))
	if a := d.stored(r); a.ByGuardian != guardian.id || a.Consent != c.ID || a.Outcome != tx.OutcomeAllowed {
		t.Errorf("access under a guardian's consent = %+v", a)
	}
	rv := &tx.RevokeConsent{Service: svcAllowance}
	withGuardian(ward, guardian, rv)
	d.ok(d.sign(ward, rv))
	if c := d.consent(ward, svcAllowance); c.Status != ledger.ConsentRevoked || c.EndedByGuardian != guardian.id || c.Ended.Height != d.height {
		t.Errorf("revoked by guardian = %+v", c)
	}
}

func TestRevokeConsentRefusals(t *testing.T) {
	d := newConsentDistrict(t)
	d.ok(d.tx(d.psb.party, d.alice.register()))
	alice, aliceHSB := d.psn("alice", "civil"), d.psn("alice", "hsb")
	other := d.psn("bob", "civil")
	revoke := &tx.RevokeConsent{Service: svcAllowance}

	d.refused("no consent", d.sign(alice, revoke), ledger.CodeNoConsent)
	d.refused("unknown service", d.sign(alice, &tx.RevokeConsent{Service: "civil.unknown"}), ledger.CodeNoConsent)
	d.ok(d.sign(alice, d.grant(svcAllowance, tx.ModeStanding, 1)))
	// Consents are named by pseudonym: another resident's, or alice's own
	// towards another authority, finds nothing to revoke.
	d.refused("another resident's pseudonym", d.sign(other, revoke), ledger.CodeNoConsent)
	d.refused("alice's pseudonym towards hsb", d.sign(aliceHSB, revoke), ledger.CodeNoConsent)
	d.refused("DID signer", d.tx(d.alice.party, revoke), ledger.CodeNotAuthorized)
	d.refused("signed by another key", d.txAs(alice.id, other.key, revoke), ledger.CodeBadSignature)
	bad := &tx.RevokeConsent{Service: svcAllowance}
	withGuardian(alice, other, bad)
	bad.Guardian.Sig[0] ^= 1
	d.refused("bad guardian signature", d.sign(alice, bad), ledger.CodeBadSignature)
	self := &tx.RevokeConsent{Service: svcAllowance}
	withGuardian(alice, alice, self)
	d.refused("guardian is the ward", d.sign(alice, self), ledger.CodeInvalidField)
	if c := d.consent(alice, svcAllowance); c.Status != ledger.ConsentActive {
		t.Fatalf("after refused revocations: %+v", c)
	}

	d.ok(d.sign(alice, revoke))
	d.refused("already revoked", d.sign(alice, revoke), ledger.CodeNoConsent)

	// Expired: the block at the end of the window finds nothing to revoke.
	d.ok(d.sign(alice, d.grant(svcAllowance, tx.ModeStanding, 1)))
	granted := d.now
	res := d.blockAt(granted.Add(24*time.Hour), d.sign(alice, revoke))
	wantCodes(t, res, ledger.CodeNoConsent)
	if c := d.consent(alice, svcAllowance); c.Status != ledger.ConsentActive {
		t.Errorf("expired consent = %+v, want it kept as granted", c)
	}

	// Used: a one-time consent read once is spent.
	d.ok(d.sign(alice, d.grant(svcAllowance, tx.ModeOneTime, 0)))
	d.ok(d.record(d.civil, d.presentation(alice, "civil", svcAllowance, clGivenName)))
	d.refused("used", d.sign(alice, revoke), ledger.CodeNoConsent)
}

func TestRecordAccessRefusals(t *testing.T) {
	d := newConsentDistrict(t)
	d.ok(d.tx(d.psb.party, d.alice.register()))
	p := d.psn("alice", "civil")
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 30)))
	good := func() tx.AccessRecord { return d.presentation(p, "civil", svcAllowance, clGivenName) }
	for _, c := range []struct {
		name string
		by   *party
		mut  func(*tx.AccessRecord)
		want ledger.Code
	}{
		{"resident signer", d.alice.party, nil, ledger.CodeUnknownSigner},
		{"presentation recorded by another authority", d.hsb.party, nil, ledger.CodeInvalidField},
		{"presentation with a source", nil, func(r *tx.AccessRecord) { r.Source = "psb" }, ledger.CodeInvalidField},
		{"back office recorded by the reader", nil, func(r *tx.AccessRecord) { r.Channel, r.Source = tx.ChannelBackOffice, "psb" }, ledger.CodeInvalidField},
		{"back office recorded by another than the source", d.hrss.party, func(r *tx.AccessRecord) { r.Channel, r.Source = tx.ChannelBackOffice, "psb" }, ledger.CodeInvalidField},
		{"back office from the reader itself", nil, func(r *tx.AccessRecord) { r.Channel, r.Source = tx.ChannelBackOffice, "civil" }, ledger.CodeInvalidField},
		{"unknown channel", nil, func(r *tx.AccessRecord) { r.Channel = "telephone" }, ledger.CodeInvalidField},
		{"unknown service", nil, func(r *tx.AccessRecord) { r.Service = "civil.unknown" }, ledger.CodeInvalidField},
		{"unknown reader", nil, func(r *tx.AccessRecord) { r.Reader = "police" }, ledger.CodeInvalidField},
		{"subject is a DID", nil, func(r *tx.AccessRecord) { r.Subject = d.alice.did }, ledger.CodeInvalidField},
		{"id too short", nil, func(r *tx.AccessRecord) { r.ID = r.ID[:15] }, ledger.CodeInvalidField},
		{"id too long", nil, func(r *tx.AccessRecord) { r.ID = make([]byte, 33) }, ledger.CodeInvalidField},
		{"no claims", nil, func(r *tx.AccessRecord) { r.Claims = nil }, ledger.CodeInvalidField},
		{"unknown claim", nil, func(r *tx.AccessRecord) { r.Claims = []tx.ClaimRef{cref(credential.TypeResidentIdentity, "shoe_size")} }, ledger.CodeInvalidField},
		{"claims unsorted", nil, func(r *tx.AccessRecord) { r.Claims = []tx.ClaimRef{clGivenName, clFamilyName} }, ledger.CodeInvalidField},
		{"allowed with a reason", nil, func(r *tx.AccessRecord) { r.Reason = ledger.DenyRevoked }, ledger.CodeInvalidField},
		{"denied without a reason", nil, func(r *tx.AccessRecord) { r.Outcome = tx.OutcomeDenied }, ledger.CodeInvalidField},
		{"denied with an unknown reason", nil, func(r *tx.AccessRecord) { r.Outcome, r.Reason = tx.OutcomeDenied, "bad_weather" }, ledger.CodeInvalidField},
		{"unknown outcome", nil, func(r *tx.AccessRecord) { r.Outcome = "maybe" }, ledger.CodeInvalidField},
	} {
		r := good()
		if c.mut != nil {
			c.mut(&r)
		}
		by := c.by
		if by == nil {
			by = d.civil.party
		}
		d.refused(c.name, d.tx(by, &tx.RecordAccess{Records: []tx.AccessRecord{r}}), c.want)
	}

	// The batch is one transaction: a bad record refuses all of it.
	ok1, bad, ok2 := good(), good(), good()
	bad.Reader = "police"
	d.refused("one bad record in a batch", d.record(d.civil, ok1, bad, ok2), ledger.CodeInvalidField)
	if log, _, err := d.app.AccessLog(p.id, 0); err != nil || len(log) != 0 {
		t.Errorf("AccessLog after refused batches = %d records, %v", len(log), err)
	}
	d.refused("empty batch", d.tx(d.civil.party, &tx.RecordAccess{}), ledger.CodeInvalidField)
	big := make([]tx.AccessRecord, ledger.MaxAccessBatch+1)
	for i := range big {
		big[i] = good()
	}
	d.refused("batch too large", d.record(d.civil, big...), ledger.CodeInvalidField)
	d.ok(d.record(d.civil, big[:ledger.MaxAccessBatch]...))
	if log, _, err := d.app.AccessLog(p.id, 0); err != nil || len(log) != ledger.MaxAccessBatch {
		t.Errorf("AccessLog = %d records, %v; want a full batch", len(log), err)
	}
}

// TestRevocationDeniesLaterBlocks: a revocation committed at height H denies
// every access recorded in a block above H, and in H itself every access
// after it.
func TestRevocationDeniesLaterBlocks(t *testing.T) {
	d := newConsentDistrict(t)
	p := d.psn("alice", "civil")
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 30)))
	read := func() tx.AccessRecord { return d.presentation(p, "civil", svcAllowance, clGivenName, clPension) }
	fetch := func() tx.AccessRecord { return d.backOffice(p, "civil", "hrss", svcAllowance, clPension) }
	early, earlyBO := read(), fetch()
	d.ok(d.record(d.civil, early), d.record(d.hrss, earlyBO))
	d.wantStored(early, tx.OutcomeAllowed, "")
	d.wantStored(earlyBO, tx.OutcomeAllowed, "")
	d.wantDecision(read(), "")

	before, after := read(), read()
	d.ok(d.record(d.civil, before), d.sign(p, &tx.RevokeConsent{Service: svcAllowance}), d.record(d.civil, after))
	h := d.height
	d.wantStored(before, tx.OutcomeAllowed, "")
	d.wantStored(after, tx.OutcomeDenied, ledger.DenyRevoked)
	if c := d.consent(p, svcAllowance); c.Status != ledger.ConsentRevoked || c.Ended.Height != h {
		t.Fatalf("revoked consent = %+v", c)
	}
	if c, _, err := d.app.Consent(p.id, svcAllowance, h-1); err != nil || c.Status != ledger.ConsentActive {
		t.Errorf("consent before the revocation = %+v, %v", c, err)
	}
	for i := range 3 {
		d.wantDecision(read(), ledger.DenyRevoked)
		d.wantDecision(fetch(), ledger.DenyRevoked)
		r, bo := read(), fetch()
		d.blockAt(d.now.Add(time.Duration(i+1)*time.Hour), d.record(d.civil, r), d.record(d.hrss, bo))
		d.wantStored(r, tx.OutcomeDenied, ledger.DenyRevoked)
		d.wantStored(bo, tx.OutcomeDenied, ledger.DenyRevoked)
		if a := d.stored(r); a.At.Height <= h {
			t.Errorf("record at %d, want above %d", a.At.Height, h)
		}
	}
	// A record the node itself denied is stored as it says.
	r := read()
	r.Outcome, r.Reason = tx.OutcomeDenied, ledger.DenyRevoked
	d.ok(d.record(d.civil, r))
	d.wantStored(r, tx.OutcomeDenied, ledger.DenyRevoked)
	// Records made before the revocation stay as they were.
	d.wantStored(early, tx.OutcomeAllowed, "")
}

// TestConsentExpiry: a standing consent allows up to the last second of its
// window, by block time, and denies from its end on.
func TestConsentExpiry(t *testing.T) {
	d := newConsentDistrict(t)
	p := d.psn("alice", "civil")
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 2)))
	until := d.now.Add(2 * 24 * time.Hour)
	if c := d.consent(p, svcAllowance); !c.Until.Equal(until) {
		t.Fatalf("until = %s, want %s", c.Until, until)
	}
	read := func() tx.AccessRecord { return d.presentation(p, "civil", svcAllowance, clFamilyName) }

	last := read()
	d.blockAt(until.Add(-time.Second), d.record(d.civil, last))
	d.wantStored(last, tx.OutcomeAllowed, "")
	d.wantDecision(read(), "")

	late := read()
	d.blockAt(until, d.record(d.civil, late))
	d.wantStored(late, tx.OutcomeDenied, ledger.DenyExpired)
	d.wantDecision(read(), ledger.DenyExpired)
	if c := d.consent(p, svcAllowance); c.Status != ledger.ConsentActive {
		t.Errorf("an expired consent is %s; expiry is computed, not stored", c.Status)
	}

	// A one-time consent expires after OneTimeWindow unused.
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeOneTime, 0)))
	end := d.now.Add(ledger.OneTimeWindow)
	d.blockAt(end.Add(-time.Second))
	d.wantDecision(read(), "")
	r := read()
	d.blockAt(end, d.record(d.civil, r))
	d.wantStored(r, tx.OutcomeDenied, ledger.DenyExpired)
}

// TestServiceChangeInvalidatesConsents: a new version of a service needs a
// new grant.
func TestServiceChangeInvalidatesConsents(t *testing.T) {
	d := newConsentDistrict(t)
	p := d.psn("alice", "civil")
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 30)))
	old := d.grant(svcAllowance, tx.ModeStanding, 30) // reviewed before the change
	read := func() tx.AccessRecord { return d.presentation(p, "civil", svcAllowance, clGivenName) }
	d.wantDecision(read(), "")

	v2 := allowanceService()
	v2.PurposeEN = "To deliver the allowance, and to survey households"
	d.ok(d.tx(d.civil.party, v2))
	d.wantDecision(read(), ledger.DenyServiceChanged)
	r := read()
	d.ok(d.record(d.civil, r))
	d.wantStored(r, tx.OutcomeDenied, ledger.DenyServiceChanged)

	d.refused("grant for the old version", d.sign(p, old), ledger.CodeInvalidField)
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 30)))
	if c := d.consent(p, svcAllowance); c.ServiceVersion != 2 {
		t.Fatalf("new consent for version %d", c.ServiceVersion)
	}
	d.wantDecision(read(), "")
	// Withdrawing a consent to an old version stays possible.
	d.ok(d.tx(d.civil.party, v2))
	d.ok(d.sign(p, &tx.RevokeConsent{Service: svcAllowance}))
}

// TestOneTimeConsent: allowed once, then used, even within one batch.
func TestOneTimeConsent(t *testing.T) {
	d := newConsentDistrict(t)
	p := d.psn("alice", "civil")
	d.ok(d.sign(p, d.grant(svcCertificate, tx.ModeOneTime, 0)))
	read := func() tx.AccessRecord { return d.presentation(p, "civil", svcCertificate, clBirthDate) }
	d.wantDecision(read(), "")

	// A record the node denied does not spend the consent.
	denied := read()
	denied.Outcome, denied.Reason = tx.OutcomeDenied, ledger.DenyClaimNotAllowed
	first, second := read(), read()
	d.ok(d.record(d.civil, denied, first, second))
	d.wantStored(denied, tx.OutcomeDenied, ledger.DenyClaimNotAllowed)
	d.wantStored(first, tx.OutcomeAllowed, "")
	d.wantStored(second, tx.OutcomeDenied, ledger.DenyUsed)
	c := d.consent(p, svcCertificate)
	if c.Status != ledger.ConsentUsed || c.Ended.Height != d.height {
		t.Errorf("spent consent = %+v", c)
	}
	d.wantDecision(read(), ledger.DenyUsed)
	later := read()
	d.ok(d.record(d.civil, later))
	d.wantStored(later, tx.OutcomeDenied, ledger.DenyUsed)
	// The same request recorded again is one effect, not a second use.
	d.ok(d.record(d.civil, first))
	d.wantStored(first, tx.OutcomeAllowed, "")
	// A new grant allows once more.
	d.ok(d.sign(p, d.grant(svcCertificate, tx.ModeOneTime, 0)))
	d.wantDecision(read(), "")
}

// TestBackOfficeRules: back-office reads need a standing consent, come from
// a source party to the consent, and release only what the source issues.
func TestBackOfficeRules(t *testing.T) {
	d := newConsentDistrict(t)
	p, q := d.psn("alice", "civil"), d.psn("bob", "civil")
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeOneTime, 0)),
		d.sign(q, d.grant(svcAllowance, tx.ModeStanding, 30, clAddress, clFamilyName, clGivenName, clPension)))
	for _, c := range []struct {
		name string
		r    tx.AccessRecord
		by   *authority
		want string
	}{
		{"one-time consent", d.backOffice(p, "civil", "hrss", svcAllowance, clPension), d.hrss, ledger.DenyNotStanding},
		{"standing consent", d.backOffice(q, "civil", "hrss", svcAllowance, clPension), d.hrss, ""},
		{"standing, identity from psb", d.backOffice(q, "civil", "psb", svcAllowance, clAddress, clFamilyName), d.psb, ""},
		{"source a party, not the claim's issuer", d.backOffice(q, "civil", "psb", svcAllowance, clPension), d.psb, ledger.DenySourceNotParty},
		{"source issues one claim of two", d.backOffice(q, "civil", "hrss", svcAllowance, clGivenName, clPension), d.hrss, ledger.DenySourceNotParty},
		{"source not a party", d.backOffice(q, "civil", "hsb", svcAllowance, clGivenName), d.hsb, ledger.DenySourceNotParty},
		{"utility, whose claim was not granted", d.backOffice(q, "civil", "utility", svcAllowance, clServiceAddr), d.utility, ledger.DenyClaimNotAllowed},
		{"wrong reader", d.backOffice(q, "hsb", "hrss", svcAllowance, clPension), d.hrss, ledger.DenyWrongReader},
		{"claim outside the consent", d.presentation(q, "civil", svcAllowance, clServiceAddr), d.civil, ledger.DenyClaimNotAllowed},
		{"no consent to that service", d.presentation(q, "civil", svcCertificate, clBirthDate), d.civil, ledger.DenyNoConsent},
	} {
		dec := d.decide(c.r)
		if dec.Reason != c.want {
			t.Errorf("%s: CheckAccess reason %q, want %q", c.name, dec.Reason, c.want)
		}
		d.ok(d.record(c.by, c.r))
		a := d.stored(c.r)
		wantOutcome := tx.OutcomeAllowed
		if c.want != "" {
			wantOutcome = tx.OutcomeDenied
		}
		if a.Outcome != wantOutcome || a.Reason != c.want || a.Recorder != c.by.id {
			t.Errorf("%s: stored %s/%q by %s, want %s/%q by %s", c.name, a.Outcome, a.Reason, a.Recorder, wantOutcome, c.want, c.by.id)
		}
	}
	if c := d.consent(p, svcAllowance); c.Status != ledger.ConsentActive {
		t.Errorf("a refused back-office read spent the one-time consent: %+v", c)
	}
}

// TestRegrantAndReplay: after a revocation a new grant works, while the
// bytes of the old grant are a replay that cannot bring the consent back.
func TestRegrantAndReplay(t *testing.T) {
	d := newConsentDistrict(t)
	p := d.psn("alice", "civil")
	g1 := d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 30))
	d.ok(g1)
	first := d.consent(p, svcAllowance)
	rv := d.sign(p, &tx.RevokeConsent{Service: svcAllowance})
	d.ok(rv)

	if got := d.check(g1); got != ledger.CodeBadSequence {
		t.Errorf("CheckTx(old grant) = %s, want bad_sequence", got.Name())
	}
	d.want1(g1, ledger.CodeBadSequence)
	if c := d.consent(p, svcAllowance); c.Status != ledger.ConsentRevoked {
		t.Fatalf("the replayed grant resurrected the consent: %+v", c)
	}
	read := func() tx.AccessRecord { return d.presentation(p, "civil", svcAllowance, clGivenName) }
	d.wantDecision(read(), ledger.DenyRevoked)

	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 30)))
	second := d.consent(p, svcAllowance)
	if second.Status != ledger.ConsentActive || second.ID == first.ID {
		t.Fatalf("re-grant = %+v (first %s)", second, first.ID)
	}
	d.wantDecision(read(), "")
	r := read()
	d.ok(d.record(d.civil, r))
	if a := d.stored(r); a.Consent != second.ID || a.Outcome != tx.OutcomeAllowed {
		t.Errorf("access under the re-grant = %+v", a)
	}
	// Neither old transaction applies again, in either order.
	d.want([][]byte{rv, g1}, ledger.CodeBadSequence, ledger.CodeBadSequence)
	if c := d.consent(p, svcAllowance); c.ID != second.ID || c.Status != ledger.ConsentActive {
		t.Errorf("after replays: %+v", c)
	}
}

// TestDuplicateAccessRecord: a record id is recorded once per subject; the
// same request sent again (in the same batch, the same block or later) has
// one effect.
func TestDuplicateAccessRecord(t *testing.T) {
	d := newConsentDistrict(t)
	p := d.psn("alice", "civil")
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 30)))
	r := d.presentation(p, "civil", svcAllowance, clGivenName)
	again := r
	again.Claims = []tx.ClaimRef{clFamilyName, clGivenName}
	d.ok(d.record(d.civil, r, again), d.record(d.civil, again))
	d.ok(d.record(d.civil, again))
	log, _, err := d.app.AccessLog(p.id, 0)
	if err != nil || len(log) != 1 {
		t.Fatalf("AccessLog = %d records, %v; want 1", len(log), err)
	}
	if !slices.Equal(log[0].Claims, r.Claims) || log[0].At.Height != d.height-1 {
		t.Errorf("kept record = %+v, want the first", log[0])
	}
	if got, _, err := d.app.AuthorityAccess("civil", 0, 100, 0); err != nil || len(got) != 1 {
		t.Errorf("AuthorityAccess(civil) = %d records, %v; want 1", len(got), err)
	}
	// The same id for another subject is another record.
	q := d.psn("bob", "civil")
	other := r
	other.Subject = q.id
	d.ok(d.record(d.civil, other))
	d.wantStored(other, tx.OutcomeDenied, ledger.DenyNoConsent)
}

// TestAuthorityAccess: an authority lists the records in which it is the
// reader or the source, and no others.
func TestAuthorityAccess(t *testing.T) {
	d := newConsentDistrict(t)
	p, q := d.psn("alice", "civil"), d.psn("alice", "hsb")
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 30)), d.sign(q, d.grant(svcReimburse, tx.ModeStanding, 30)))
	pres := d.presentation(p, "civil", svcAllowance, clGivenName)
	bo := d.backOffice(p, "civil", "hrss", svcAllowance, clPension)
	hsbRead := d.presentation(q, "hsb", svcReimburse, clMedicalNo)
	d.ok(d.record(d.civil, pres), d.record(d.hrss, bo))
	h1 := d.height
	denied := d.backOffice(q, "hsb", "psb", svcReimburse, clGivenName)
	denied.Outcome, denied.Reason = tx.OutcomeDenied, ledger.DenyNotGuardian
	d.ok(d.record(d.hsb, hsbRead), d.record(d.psb, denied))

	ids := func(as []ledger.Access) [][]byte {
		var out [][]byte
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	for _, c := range []struct {
		authority string
		from      int64
		limit     int
		want      []tx.AccessRecord
	}{
		{"civil", 0, 10, []tx.AccessRecord{pres, bo}},
		{"hrss", 0, 10, []tx.AccessRecord{bo}},
		{"hsb", 0, 10, []tx.AccessRecord{hsbRead, denied}},
		{"psb", 0, 10, []tx.AccessRecord{denied}},
		{"utility", 0, 10, nil},
		{"civil", h1 + 1, 10, nil},
		{"hsb", h1, 10, []tx.AccessRecord{hsbRead, denied}},
		{"hsb", h1 + 1, 10, []tx.AccessRecord{hsbRead, denied}},
		{"hsb", 0, 1, nil}, // one of the two: which one depends on the key order
		{"hs", 0, 10, nil},
	} {
		got, h, err := d.app.AuthorityAccess(c.authority, c.from, c.limit, 0)
		if err != nil || h != d.height {
			t.Fatalf("AuthorityAccess(%s): %v at %d", c.authority, err, h)
		}
		if c.limit == 1 {
			if len(got) != 1 {
				t.Errorf("AuthorityAccess(%s, limit 1) = %d records", c.authority, len(got))
			}
			continue
		}
		want := ids(nil)
		for _, r := range c.want {
			want = append(want, r.ID)
		}
		g := ids(got)
		slices.SortFunc(g, bytes.Compare)
		slices.SortFunc(want, bytes.Compare)
		if !slices.EqualFunc(g, want, bytes.Equal) {
			t.Errorf("AuthorityAccess(%s, from %d) = %x, want %x", c.authority, c.from, g, want)
		}
	}
	// Pages of one record each walk all of hsb's records, two of them in
	// one block, without repeating or skipping one.
	var paged [][]byte
	cursor := fmt.Sprintf("%016x/", 0)
	for range 4 {
		page, next, _, err := d.app.AuthorityAccessAfter("hsb", cursor, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, ids(page)...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(paged) != 2 || bytes.Equal(paged[0], paged[1]) {
		t.Errorf("paging hsb's records one at a time gave %x", paged)
	}
	// Each record is on its subject's log, whoever recorded it.
	if log, _, _ := d.app.AccessLog(p.id, 0); len(log) != 2 {
		t.Errorf("AccessLog(civil pseudonym) = %d records, want 2", len(log))
	}
	if log, _, _ := d.app.AccessLog(q.id, 0); len(log) != 2 {
		t.Errorf("AccessLog(hsb pseudonym) = %d records, want 2", len(log))
	}
}

// TestProveAccess: an access record comes with a Merkle proof against the
// app hash, and a changed record does not verify.
func TestProveAccess(t *testing.T) {
	d := newConsentDistrict(t)
	p := d.psn("alice", "civil")
	d.ok(d.sign(p, d.grant(svcAllowance, tx.ModeStanding, 30)))
	r, other := d.presentation(p, "civil", svcAllowance, clGivenName), d.presentation(p, "civil", svcAllowance, clSex)
	d.ok(d.record(d.civil, r, other))
	h := d.height
	appHash := d.hashes[h]

	pr, err := d.app.ProveAccess(p.id, r.ID, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := pr.Verify(appHash); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	got, err := ledger.AccessFromProof(pr)
	if err != nil {
		t.Fatal(err)
	}
	if want := d.stored(r); !bytes.Equal(got.ID, want.ID) || got.Outcome != want.Outcome || got.At.Height != want.At.Height || !got.At.Time.Equal(want.At.Time) || got.Consent != want.Consent {
		t.Errorf("AccessFromProof = %+v, want %+v", got, want)
	}

	// Any change to the value breaks the proof.
	bad := *pr
	bad.Value = bytes.Replace(pr.Value, []byte(`"allowed"`), []byte(`"denied"`), 1)
	if bytes.Equal(bad.Value, pr.Value) {
		t.Fatal("fixture: nothing replaced")
	}
	if err := bad.Verify(appHash); !errors.Is(err, ledger.ErrBadProof) {
		t.Errorf("tampered value: Verify = %v, want ErrBadProof", err)
	}
	// Another record's value under this key verifies against nothing, and
	// AccessFromProof refuses it without a proof check too.
	po, err := d.app.ProveAccess(p.id, other.ID, h)
	if err != nil {
		t.Fatal(err)
	}
	swapped := *pr
	swapped.Value = po.Value
	if err := swapped.Verify(appHash); !errors.Is(err, ledger.ErrBadProof) {
		t.Errorf("swapped value: Verify = %v, want ErrBadProof", err)
	}
	if _, err := ledger.AccessFromProof(&swapped); !errors.Is(err, ledger.ErrBadProof) {
		t.Errorf("AccessFromProof(swapped) = %v, want ErrBadProof", err)
	}
	// The wrong app hash does not verify either.
	if err := pr.Verify(d.hashes[h-1]); !errors.Is(err, ledger.ErrBadProof) {
		t.Errorf("older app hash: Verify = %v, want ErrBadProof", err)
	}
	// Absence is provable, and is no record.
	missing := d.nextID()
	pa, err := d.app.ProveAccess(p.id, missing, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.Verify(appHash); err != nil {
		t.Errorf("absence proof: %v", err)
	}
	if _, err := ledger.AccessFromProof(pa); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("AccessFromProof(absent) = %v, want ErrNotFound", err)
	}
	// A proof of something else is not an access record.
	pd, err := d.app.Prove([]byte("meta"), h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.AccessFromProof(pd); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("AccessFromProof(meta) = %v, want ErrNotFound", err)
	}
}

// TestCheckAccessNeedsABlock: a node that restarted has no block time yet
// and does not guess.
func TestCheckAccessNeedsABlock(t *testing.T) {
	g := newConsentGenesis(t)
	dir := filepath.Join(t.TempDir(), "state")
	app, err := ledger.Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := tx.AccessRecord{Subject: newWallet("restart").towards(t, "civil").id, Reader: "civil", Service: svcAllowance, Claims: []tx.ClaimRef{clGivenName}, Channel: tx.ChannelPresentation}
	if _, err := app.CheckAccess(&r); !errors.Is(err, ledger.ErrNoVersions) {
		t.Errorf("CheckAccess before any commit = %v, want ErrNoVersions", err)
	}
	c := newChain(t, app, g.genesis)
	c.block()
	if _, err := app.CheckAccess(&r); err != nil {
		t.Fatal(err)
	}
	app.Close()
	app, err = ledger.Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	c.app = app
	if _, err := app.CheckAccess(&r); !errors.Is(err, ledger.ErrNoBlockTime) {
		t.Errorf("CheckAccess after a restart = %v, want ErrNoBlockTime", err)
	}
	c.block()
	if dec, err := app.CheckAccess(&r); err != nil || dec.Allowed || dec.Reason != ledger.DenyNoConsent || !dec.Time.Equal(c.now) {
		t.Errorf("CheckAccess after a block = %+v, %v", dec, err)
	}
	// A request record_access would refuse is never "allowed": it is a bad
	// request, whatever the consents.
	for name, edit := range map[string]func(*tx.AccessRecord){
		"no claims":              func(r *tx.AccessRecord) { r.Claims = nil },
		"unknown channel":        func(r *tx.AccessRecord) { r.Channel = "telephone" },
		"presentation w/ source": func(r *tx.AccessRecord) { r.Source = "psb" },
		"source is the reader":   func(r *tx.AccessRecord) { r.Channel, r.Source = tx.ChannelBackOffice, r.Reader },
		"malformed pseudonym":    func(r *tx.AccessRecord) { r.Subject = "psn:x" },
	} {
		bad := r
		edit(&bad)
		if dec, err := app.CheckAccess(&bad); err != nil || dec.Allowed || dec.Reason != ledger.DenyBadRequest {
			t.Errorf("%s: CheckAccess = %+v, %v; want bad_request", name, dec, err)
		}
	}
}

func TestDelegations(t *testing.T) {
	d := newConsentDistrict(t)
	d.ok(d.tx(d.psb.party, d.alice.register()), d.tx(d.psb.party, d.bob.register()), d.tx(d.psb.party, d.carol.register()))
	d.ok(d.tx(d.psb.party, &tx.Deactivate{DID: d.carol.did, Reason: ledger.ReasonMovedAway}))
	deleg := func(basis string) *tx.RecordDelegation {
		return &tx.RecordDelegation{Guardian: d.bob.did, Ward: d.alice.did, Basis: basis, Reference: "PSB/2030/0001",
			Scope: []string{svcAllowance, svcReimburse}, Days: 365, GuardianConsent: basis == tx.BasisMinor}
	}
	stranger := newParty(t, "stranger")
	for _, c := range []struct {
		name string
		by   *party
		mut  func(*tx.RecordDelegation)
		want ledger.Code
	}{
		{"not a registrar", d.hrss.party, nil, ledger.CodeNotAuthorized},
		{"a resident", d.bob.party, nil, ledger.CodeUnknownSigner},
		{"unknown guardian", nil, func(b *tx.RecordDelegation) { b.Guardian = stranger.did }, ledger.CodeNotFound},
		{"unknown ward", nil, func(b *tx.RecordDelegation) { b.Ward = stranger.did }, ledger.CodeNotFound},
		{"deactivated guardian", nil, func(b *tx.RecordDelegation) { b.Guardian = d.carol.did }, ledger.CodeNotFound},
		{"own guardian", nil, func(b *tx.RecordDelegation) { b.Guardian = b.Ward }, ledger.CodeInvalidField},
		{"unknown basis", nil, func(b *tx.RecordDelegation) { b.Basis = "friendship" }, ledger.CodeInvalidField},
		{"assisted adult with guardian consent", nil, func(b *tx.RecordDelegation) {
			b.Basis, b.GuardianConsent = tx.BasisAdultAssisted, true
		}, ledger.CodeInvalidField},
		{"no reference", nil, func(b *tx.RecordDelegation) { b.Reference = "" }, ledger.CodeInvalidField},
		{"reference with spaces", nil, func(b *tx.RecordDelegation) { b.Reference = "PSB 1" }, ledger.CodeInvalidField},
		{"0 days", nil, func(b *tx.RecordDelegation) { b.Days = 0 }, ledger.CodeInvalidField},
		{"beyond 18 years", nil, func(b *tx.RecordDelegation) { b.Days = 18*366 + 1 }, ledger.CodeInvalidField},
		{"no scope", nil, func(b *tx.RecordDelegation) { b.Scope = nil }, ledger.CodeInvalidField},
		{"scope unsorted", nil, func(b *tx.RecordDelegation) { b.Scope = []string{svcReimburse, svcAllowance} }, ledger.CodeInvalidField},
		{"scope unknown service", nil, func(b *tx.RecordDelegation) { b.Scope = []string{"civil.unknown"} }, ledger.CodeNotFound},
		{"star with another", nil, func(b *tx.RecordDelegation) { b.Scope = []string{"*", svcAllowance} }, ledger.CodeNotFound},
	} {
		b := deleg(tx.BasisMinor)
		if c.mut != nil {
			c.mut(b)
		}
		by := c.by
		if by == nil {
			by = d.psb.party
		}
		d.refused(c.name, d.tx(by, b), c.want)
	}

	minor := d.tx(d.psb.party, deleg(tx.BasisMinor))
	d.ok(minor)
	minorID := txID(minor)
	all := deleg(tx.BasisAdultAssisted)
	all.Scope = []string{"*"}
	d.ok(d.tx(d.psb.party, all))
	ds, _, err := d.app.Delegations(d.alice.did, 0)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Delegations = %d, %v", len(ds), err)
	}
	var adultID string
	for _, dl := range ds {
		if dl.Basis == tx.BasisAdultAssisted {
			adultID = dl.ID
			if !dl.Covers("any.service") || !dl.ActiveAt(d.now) || !dl.Until.Equal(d.now.Add(365*24*time.Hour)) || dl.Registrar != "psb" {
				t.Errorf("adult delegation = %+v", dl)
			}
		} else if dl.ID != minorID || !dl.Covers(svcAllowance) || dl.Covers(svcCertificate) {
			t.Errorf("minor delegation = %+v, want id %s", dl, minorID)
		}
	}
	if gs, _, err := d.app.GuardianOf(d.bob.did, 0); err != nil || len(gs) != 2 {
		t.Errorf("GuardianOf(bob) = %d, %v", len(gs), err)
	}
	if gs, _, err := d.app.GuardianOf(d.alice.did, 0); err != nil || len(gs) != 0 {
		t.Errorf("GuardianOf(alice) = %d, %v", len(gs), err)
	}

	end := func(id string) *tx.EndDelegation { return &tx.EndDelegation{Ward: d.alice.did, ID: id} }
	d.refused("unknown delegation", d.tx(d.psb.party, end("00")), ledger.CodeNotFound)
	d.refused("minor ends own", d.tx(d.alice.party, end(minorID)), ledger.CodeNotAuthorized)
	d.refused("guardian ends", d.tx(d.bob.party, end(minorID)), ledger.CodeUnknownSigner)
	d.refused("not a registrar", d.tx(d.hrss.party, end(minorID)), ledger.CodeNotAuthorized)
	d.refused("ward's signature by another key", d.txAs(d.alice.did, d.bob.key, end(adultID)), ledger.CodeBadSignature)
	d.ok(d.tx(d.alice.party, end(adultID)))
	d.refused("ended twice", d.tx(d.alice.party, end(adultID)), ledger.CodeInvalidField)
	d.ok(d.tx(d.psb.party, end(minorID)))
	ds, _, _ = d.app.Delegations(d.alice.did, 0)
	for _, dl := range ds {
		wantBy := "psb"
		if dl.ID == adultID {
			wantBy = d.alice.did
		}
		if dl.ActiveAt(d.now) || dl.EndedBy != wantBy || dl.Ended.Height == 0 {
			t.Errorf("ended delegation = %+v, want ended by %s", dl, wantBy)
		}
	}

	// A delegation that ran out cannot be ended again.
	short := deleg(tx.BasisAdultIncapable)
	short.Days = 1
	raw := d.tx(d.psb.party, short)
	d.ok(raw)
	shortID := txID(raw)
	d.blockAt(d.now.Add(24 * time.Hour))
	d.refused("expired", d.tx(d.psb.party, end(shortID)), ledger.CodeInvalidField)
}

func TestDenyReasonText(t *testing.T) {
	for _, r := range []string{
		ledger.DenyNoConsent, ledger.DenyRevoked, ledger.DenyExpired, ledger.DenyUsed, ledger.DenyServiceChanged,
		ledger.DenyClaimNotAllowed, ledger.DenyWrongReader, ledger.DenyNotStanding, ledger.DenySourceNotParty,
		ledger.DenyNotGuardian, ledger.DenySubjectUnknown, ledger.DenyBadRequest,
	} {
		en, zh := ledger.DenyReasonText(r)
		if en == "denied" || zh == "已拒绝" || en == "" || zh == "" {
			t.Errorf("%s has no explanation", r)
		}
	}
	if en, zh := ledger.DenyReasonText("bad_weather"); en != "denied" || zh != "已拒绝" {
		t.Errorf("unknown reason explained as %q, %q", en, zh)
	}
}
