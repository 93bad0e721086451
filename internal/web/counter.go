package web

// The service-centre counter: a registrar's clerk, with the resident in
// front of them and the ID card in hand, registers the resident (DID,
// identity credential, hosted wallet), re-proofs one who lost access, and
// records a guardian.
//
// Every form is checked in full before anything is written, so a typo
// costs the clerk a correction and never leaves half a registration behind.
// The ID number goes into the ledger only as the registrars' keyed
// uniqueness tag, into the store only as the node's keyed lookup hash, and
// into no URL and no log line.

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/hosted"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
	"github.com/imi-city/imi/internal/wallet"
)

func init() {
	routeTable = append(routeTable,
		route{"GET /counter", counterStaff, (*Portal).counterMenu},
		route{"GET /counter/register", counterStaff, (*Portal).registerPage},
		route{"POST /counter/register", counterStaff, (*Portal).register},
		route{"GET /counter/reproof", counterStaff, (*Portal).reproofPage},
		route{"POST /counter/reproof", counterStaff, (*Portal).reproof},
		route{"GET /counter/guardian", counterStaff, (*Portal).guardianPage},
		route{"POST /counter/guardian", counterStaff, (*Portal).guardian},
	)
}

const (
	// counterAssurance: the clerk saw the card and the person in front of it.
	counterAssurance = "high"
	// counterMinPassphrase is the shortest passphrase a resident may set, in
	// characters. The hosted wallet's lockout, not the length, is what
	// stops online guessing; the length slows down a stolen store.
	counterMinPassphrase = 8
	// counterMaxPassphrase bounds what is fed to Argon2id.
	counterMaxPassphrase = 1024
	// counterMaxDays is the ledger's bound on a delegation (18 years).
	counterMaxDays = 18 * 366
	// counterMaxScope is the ledger's bound on the services a delegation names.
	counterMaxScope = 32
)

// Text limits of the ID-card fields, in characters; the credential layer's
// own bound is 512 bytes per value.
var counterTextLimits = map[string]int{
	"family_name":        32,
	"given_name":         64,
	"ethnicity":          32,
	"registered_address": 160,
}

// delegationReferenceRe is the ledger's form of a delegation's file reference: a
// short code, so no free text (and no name) reaches the chain.
var delegationReferenceRe = regexp.MustCompile(`^[A-Za-z0-9._/:-]{1,64}$`)

// counterField is one input of a counter form as its template draws it.
// Label, Help and Error are catalogue keys.
type counterField struct {
	Name, Label, Help string
	Kind              string // "id", "text", "sex", "password"
	Value             string
	Error             string
	Max               int
	Auto              string // autocomplete
}

// Described is the ids aria-describedby names: help, the live ID check
// and the error.
func (f counterField) Described() string {
	var ids []string
	if f.Help != "" {
		ids = append(ids, f.Name+"_help")
	}
	if f.Kind == "id" {
		ids = append(ids, f.Name+"_check")
	}
	if f.Error != "" {
		ids = append(ids, f.Name+"_error")
	}
	return strings.Join(ids, " ")
}

// counterError is one line of a form's error summary.
type counterError struct{ Name, Label, Error string }

// counterErrors lists the fields with errors, in form order.
func counterErrors(groups ...[]counterField) []counterError {
	var out []counterError
	for _, g := range groups {
		for _, f := range g {
			if f.Error != "" {
				out = append(out, counterError{f.Name, f.Label, f.Error})
			}
		}
	}
	return out
}

// counterBlocked says, as a catalogue key, why the clerk's authority cannot
// do counter work on this node, or "" when it can. needTag is for the
// writes that need the registrars' uniqueness key.
func (p *Portal) counterBlocked(a *StaffAccount, needTag bool) string {
	if needTag && p.cfg.UniquenessKey == nil {
		return "err.counter_no_uniqueness_key"
	}
	if _, ok := p.cfg.Keys[a.Authority]; !ok {
		return "err.counter_no_key"
	}
	au, _, err := p.cfg.App.Authority(a.Authority, 0)
	if err != nil || !au.HasRole(ledger.RoleRegistrar) {
		return "err.counter_not_registrar"
	}
	return ""
}

// blockedMessage is what a form page says when the counter cannot do its
// work here.
func blockedMessage(key string) message {
	if key == "" {
		return message{}
	}
	return say(key)
}

// logReason is what a log line may say about a failed write: the ledger's
// reason code, never its detail (which can name a DID) nor the error text
// of issuing (which can quote a claim value).
func logReason(err error) string {
	if pr := problemOf(err); pr != nil {
		return pr.Reason
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "failed"
}

// maskedNumber shows the first six and the last four characters of an ID
// number: enough for the resident to recognise it on a printed slip.
func maskedNumber(n idnumber.Number) string {
	s := n.String()
	return s[:6] + strings.Repeat("*", len(s)-10) + s[len(s)-4:]
}

// ageOn is the age in whole years of the holder of n at t (China time).
func ageOn(n idnumber.Number, t time.Time) int {
	y, m, d := n.BirthDate()
	t = t.In(cst)
	age := t.Year() - y
	if t.Month() < time.Month(m) || t.Month() == time.Month(m) && t.Day() < d {
		age--
	}
	return age
}

// idError turns idnumber's refusal into a catalogue key.
func idError(err error) string {
	switch {
	case errors.Is(err, idnumber.ErrLength):
		return "err.counter_id_length"
	case errors.Is(err, idnumber.ErrCharacters):
		return "err.counter_id_chars"
	case errors.Is(err, idnumber.ErrBirthDate):
		return "err.counter_id_date"
	}
	return "err.counter_id_check"
}

// parseNumber reads and checks an ID number field.
func (p *Portal) parseNumber(s string) (idnumber.Number, string) {
	s = normalNumber(s)
	if s == "" {
		return idnumber.Number{}, "err.counter_required"
	}
	n, err := idnumber.Parse(s)
	if err != nil {
		return idnumber.Number{}, idError(err)
	}
	if ageOn(n, p.cfg.Now()) < 0 {
		return idnumber.Number{}, "err.counter_id_future"
	}
	return n, ""
}

// counterText is the error key of a free-text card field, or "".
func counterText(v string, max int) string {
	switch {
	case v == "":
		return "err.counter_required"
	case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
		return "err.counter_text_chars"
	case utf8.RuneCountInString(v) > max:
		return "err.counter_text_long"
	}
	return ""
}

// sexOfNumber is the sex GB 11643-1999 encodes in the 17th character.
func sexOfNumber(n idnumber.Number) string {
	if (n.String()[16]-'0')%2 == 1 {
		return "male"
	}
	return "female"
}

// counterIdentity is what the clerk read from the card and the passphrase the
// resident chose, checked.
type counterIdentity struct {
	number     idnumber.Number
	claims     map[string]any // the identity credential's claims as typed
	passphrase []byte
}

// counterIdentityForm is the register and re-proof form.
type counterIdentityForm struct {
	Reproof bool
	Action  string
	Blocked string // catalogue key: why this counter cannot do it
	Card    []counterField
	Pass    []counterField
	Errors  []counterError
}

func newCounterIdentityForm(reproof bool) *counterIdentityForm {
	f := &counterIdentityForm{Reproof: reproof, Action: "/counter/register"}
	passHelp := "counter.passphrase_help"
	if reproof {
		f.Action = "/counter/reproof"
		passHelp = "counter.new_passphrase_help"
	}
	f.Card = []counterField{
		{Name: "id_number", Label: "field.id_number", Help: "field.id_number_help", Kind: "id", Max: 18},
		{Name: "family_name", Label: "counter.family_name", Kind: "text", Max: counterTextLimits["family_name"]},
		{Name: "given_name", Label: "counter.given_name", Kind: "text", Max: counterTextLimits["given_name"]},
		{Name: "sex", Label: "counter.sex", Help: "counter.sex_help", Kind: "sex"},
		{Name: "ethnicity", Label: "counter.ethnicity", Help: "counter.ethnicity_help", Kind: "text", Max: counterTextLimits["ethnicity"]},
		{Name: "registered_address", Label: "counter.address", Help: "counter.address_help", Kind: "text", Max: counterTextLimits["registered_address"]},
	}
	f.Pass = []counterField{
		{Name: "passphrase", Label: "counter.passphrase", Help: passHelp, Kind: "password", Max: counterMaxPassphrase, Auto: "off"},
		{Name: "passphrase2", Label: "counter.passphrase2", Kind: "password", Max: counterMaxPassphrase, Auto: "off"},
	}
	return f
}

func setFieldError(fs []counterField, name, key string) {
	for i := range fs {
		if fs[i].Name == name && fs[i].Error == "" {
			fs[i].Error = key
		}
	}
}

// readIdentity checks the whole form. On any error it returns nil and the
// form to show again, values kept but the passphrases.
func (p *Portal) readIdentity(r *request, reproof bool) (*counterIdentity, *counterIdentityForm) {
	f := newCounterIdentityForm(reproof)
	id := &counterIdentity{claims: map[string]any{}}
	for i := range f.Card {
		fd := &f.Card[i]
		v := strings.TrimSpace(r.PostFormValue(fd.Name))
		fd.Value = v
		switch fd.Kind {
		case "id":
			id.number, fd.Error = p.parseNumber(v)
			fd.Value = strings.ToUpper(v)
		case "sex":
			if v != "male" && v != "female" {
				fd.Value, fd.Error = "", "err.counter_required"
			}
		default:
			fd.Error = counterText(v, fd.Max)
		}
	}
	// The issuer checks sex against the number too, but only after the
	// DID is anchored: catch it here, while nothing is written.
	if sex := r.PostFormValue("sex"); id.number.String() != "" && (sex == "male" || sex == "female") && sex != sexOfNumber(id.number) {
		setFieldError(f.Card, "sex", "err.counter_sex_mismatch")
	}
	pass, pass2 := r.PostFormValue("passphrase"), r.PostFormValue("passphrase2")
	switch {
	case pass == "":
		setFieldError(f.Pass, "passphrase", "err.counter_required")
	case len(pass) > counterMaxPassphrase:
		setFieldError(f.Pass, "passphrase", "err.counter_text_long")
	case utf8.RuneCountInString(pass) < counterMinPassphrase:
		setFieldError(f.Pass, "passphrase", "err.counter_passphrase_short")
	case pass != pass2:
		setFieldError(f.Pass, "passphrase2", "err.counter_passphrase_mismatch")
	}
	if f.Errors = counterErrors(f.Card, f.Pass); len(f.Errors) > 0 {
		return nil, f
	}
	for _, fd := range f.Card {
		if fd.Name == "id_number" {
			id.claims["resident_id_number"] = id.number.String()
		} else {
			id.claims[fd.Name] = fd.Value
		}
	}
	id.passphrase = []byte(pass)
	return id, f
}

// identityRecord is what the registrar's register keeps for back-office
// reads: the card's details and the birth date. An age flag is kept only
// once it is true, since "not yet 60" stops being true on a birthday and a
// stored record does not change with it.
func identityRecord(id *counterIdentity, now time.Time) map[string]any {
	out := make(map[string]any, len(id.claims)+3)
	for k, v := range id.claims {
		out[k] = v
	}
	y, m, d := id.number.BirthDate()
	out["birth_date"] = time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
	age := ageOn(id.number, now)
	for _, a := range []int{18, 60} {
		if age >= a {
			out["age_over_"+strconv.Itoa(a)] = true
		}
	}
	return out
}

// newResidentKeys makes a resident's signing key and recovery key.
func newResidentKeys() (k, rk key.Private, err error) {
	if k, err = key.Generate(); err != nil {
		return
	}
	rk, err = key.Generate()
	return
}

// counterReceipt is the printed slip.
type counterReceipt struct {
	Reproof    bool
	Name       string
	Masked     string
	DID        string
	Date       time.Time
	Code       string
	SignIn     string // the portal's sign-in address
	NoIdentity bool   // the identity credential could not be issued
	Reissue    []counterOldCredential
	// NewWallet: a re-proof of a resident with no hosted wallet here, whose
	// old wallet the counter can neither see nor revoke from.
	NewWallet bool
}

// counterOldCredential is one credential of a replaced wallet.
type counterOldCredential struct {
	TypeZH, TypeEN     string
	IssuerZH, IssuerEN string
	Revoked            bool
}

// activationGroups prints an activation code in groups of five, which the sign-in
// form accepts as typed.
func activationGroups(c string) string {
	var b strings.Builder
	for i, r := range c {
		if i > 0 && i%5 == 0 {
			b.WriteByte('-')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// signInAddress is the portal's sign-in page as the counter's browser
// reaches it, for the receipt.
func signInAddress(r *request) string {
	scheme := "https"
	if r.TLS == nil && !strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "http"
	}
	return scheme + "://" + r.Host + "/signin"
}

func (p *Portal) counterMenu(w http.ResponseWriter, r *request) {
	p.render(w, r, http.StatusOK, "counter", "counter.title", struct{ Blocked, BlockedTag string }{
		p.counterBlocked(r.sess.staff, false), p.counterBlocked(r.sess.staff, true)}, message{})
}

func (p *Portal) registerPage(w http.ResponseWriter, r *request) { p.identityPage(w, r, false) }

func (p *Portal) reproofPage(w http.ResponseWriter, r *request) { p.identityPage(w, r, true) }

func (p *Portal) identityPage(w http.ResponseWriter, r *request, reproof bool) {
	f := newCounterIdentityForm(reproof)
	f.Blocked = p.counterBlocked(r.sess.staff, true)
	p.showIdentity(w, r, http.StatusOK, f, blockedMessage(f.Blocked))
}

// showIdentity draws the register or re-proof form, as f says.
func (p *Portal) showIdentity(w http.ResponseWriter, r *request, status int, f *counterIdentityForm, m message) {
	title := "counter.title_register"
	if f.Reproof {
		title = "counter.title_reproof"
	}
	p.render(w, r, status, "counter_identity", title, f, m)
}

// postedIdentity reads a posted register or re-proof form. When the
// counter cannot do it here or the form needs correcting, it shows the form
// again itself and returns nil.
func (p *Portal) postedIdentity(w http.ResponseWriter, r *request, reproof bool) (*counterIdentity, *counterIdentityForm) {
	if b := p.counterBlocked(r.sess.staff, true); b != "" {
		f := newCounterIdentityForm(reproof)
		f.Blocked = b
		p.showIdentity(w, r, http.StatusConflict, f, say(b))
		return nil, nil
	}
	id, f := p.readIdentity(r, reproof)
	if id == nil {
		p.showIdentity(w, r, http.StatusBadRequest, f, say("err.counter_fix"))
		return nil, nil
	}
	return id, f
}

// anchoredWallet is what the new hosted wallet of a resident just anchored
// as d holds: the keys and, unless issuing fails, the identity credential,
// which the register keeps a record of too. Neither failure stops the
// counter: the keys must reach the wallet whatever else fails. step names
// the counter's work in the log.
func (p *Portal) anchoredWallet(ctx context.Context, authority, d string, k, rk key.Private, id *counterIdentity, step string) (*wallet.Contents, *wallet.Credential) {
	contents := &wallet.Contents{DID: d, Key: k.Seed(), RecoveryKey: rk.Seed()}
	cred, _, err := p.issue(ctx, authority, laneCounter, credential.TypeResidentIdentity, d, id.claims, 0)
	if err != nil {
		p.log.Warn("the counterIdentity credential was not issued at "+step, "authority", authority, "reason", logReason(err))
	} else {
		contents.Credentials = append(contents.Credentials, *cred)
	}
	if p.cfg.Desk != nil {
		if err := p.cfg.Desk.PutRecord(authority, d, credential.TypeResidentIdentity, identityRecord(id, p.cfg.Now())); err != nil {
			p.log.Warn("the counterIdentity record was not stored at "+step, "authority", authority)
		}
	}
	return contents, cred
}

// receipt is the slip for the resident registered or re-proofed as d.
func (p *Portal) receipt(r *request, id *counterIdentity, d, code string, cred *wallet.Credential) *counterReceipt {
	return &counterReceipt{
		Name:   id.claims["family_name"].(string) + id.claims["given_name"].(string),
		Masked: maskedNumber(id.number), DID: d, Date: p.cfg.Now(), Code: activationGroups(code),
		SignIn: signInAddress(r), NoIdentity: cred == nil,
	}
}

// register registers a resident in person: DID, identity credential,
// register record and hosted wallet, then the receipt.
func (p *Portal) register(w http.ResponseWriter, r *request) {
	staff := r.sess.staff
	id, f := p.postedIdentity(w, r, false)
	if id == nil {
		return
	}
	defer clear(id.passphrase)
	again := func(status int, m message) { p.showIdentity(w, r, status, f, m) }

	// One registration at a time: the hosted-wallet check below and the
	// ledger write are not one step.
	p.mu.Lock()
	defer p.mu.Unlock()
	already := words(ledger.CodeAlreadyRegistered.MessageZH(), ledger.CodeAlreadyRegistered.Message())
	switch _, err := p.wallets.ByNumber(id.number); {
	case err == nil:
		// The ledger would refuse too, but only after new keys were made
		// for nothing; say what it would say.
		p.log.Info("a counter registration was refused", "authority", staff.Authority, "reason", "hosted_wallet_exists")
		setFieldError(f.Card, "id_number", "err.counter_registered")
		f.Errors = counterErrors(f.Card, f.Pass)
		again(http.StatusConflict, already)
		return
	case !errors.Is(err, hosted.ErrNoAccount):
		p.internal(w, r, err)
		return
	}
	k, rk, err := newResidentKeys()
	if err != nil {
		p.internal(w, r, err)
		return
	}
	d := did.FromKey(k.Public()).String()
	ctx, cancel := background(r)
	defer cancel()
	m, err := p.sign(ctx, staff.Authority, laneCounter, &tx.RegisterResident{
		DID: d, Key: k.Public(), RecoveryHash: key.RecoveryHash(rk.Public()),
		UniquenessTag: idnumber.UniquenessTag(*p.cfg.UniquenessKey, id.number), Assurance: counterAssurance,
	})
	if err != nil {
		p.log.Info("a counter registration was refused", "authority", staff.Authority, "reason", logReason(err))
		if pr := problemOf(err); pr != nil && pr.Reason == ledger.CodeAlreadyRegistered.Name() {
			setFieldError(f.Card, "id_number", "err.counter_registered")
			f.Errors = counterErrors(f.Card, f.Pass)
		}
		again(http.StatusConflict, m)
		return
	}

	// From here on the DID is anchored: whatever else fails, the keys must
	// reach the wallet, or only a re-proof could bind the DID again.
	contents, cred := p.anchoredWallet(ctx, staff.Authority, d, k, rk, id, "registration")
	defer contents.Wipe()
	_, code, err := p.wallets.Create(id.number, d, contents, id.passphrase)
	if err != nil {
		p.log.Error("a registered resident's hosted wallet was not stored", "authority", staff.Authority, "err", err)
		p.fail(w, r, http.StatusInternalServerError, say("err.counter_wallet_failed"))
		return
	}
	p.log.Info("resident registered", "authority", staff.Authority, "identity_issued", cred != nil)
	p.render(w, r, http.StatusOK, "counter_receipt", "counter.title_receipt", p.receipt(r, id, d, code, cred), message{})
}

// reproof is government-backed recovery: the resident is proofed in person
// again, a new key is bound to their DID, the identity credential is issued
// to it, the hosted wallet is replaced and the old wallet's credentials are
// revoked where this node holds the issuer's key. A resident with no hosted
// wallet here (registered with the command-line wallet, or at another node)
// is found on the ledger by the uniqueness tag of the number and gets a new
// hosted wallet; what their old wallet held the counter cannot know.
func (p *Portal) reproof(w http.ResponseWriter, r *request) {
	staff := r.sess.staff
	id, f := p.postedIdentity(w, r, true)
	if id == nil {
		return
	}
	defer clear(id.passphrase)
	again := func(status int, m message) { p.showIdentity(w, r, status, f, m) }
	refuse := func(field, key string) {
		setFieldError(f.Card, field, key)
		f.Errors = counterErrors(f.Card, f.Pass)
		again(http.StatusConflict, say(key))
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	tag := tx.Hash32(idnumber.UniquenessTag(*p.cfg.UniquenessKey, id.number))
	d, replace, refusal, err := p.reproofDID(staff, id.number, tag)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	if refusal != "" {
		refuse("id_number", refusal)
		return
	}
	k, rk, err := newResidentKeys()
	if err != nil {
		p.internal(w, r, err)
		return
	}
	ctx, cancel := background(r)
	defer cancel()
	if m, err := p.sign(ctx, staff.Authority, laneCounter, &tx.Reproof{
		DID: d, UniquenessTag: tag, NewKey: k.Public(), NewRecoveryHash: key.RecoveryHash(rk.Public()), Assurance: counterAssurance,
	}); err != nil {
		p.log.Info("a counter re-proof was refused", "authority", staff.Authority, "reason", logReason(err))
		again(http.StatusConflict, m)
		return
	}

	// The old key stopped working in that block. As at registration, the
	// new keys must reach the wallet whatever else fails; if they do not,
	// the old wallet (or, without one, the ledger's tag) is still found by
	// the number and a second re-proof starts over.
	contents, cred := p.anchoredWallet(ctx, staff.Authority, d, k, rk, id, "re-proof")
	defer contents.Wipe()
	var (
		code    string
		old     []hosted.StatusRef
		outcome = "replaced"
	)
	if replace {
		_, code, old, err = p.wallets.Replace(id.number, d, contents, id.passphrase)
		if err != nil {
			p.log.Error("a re-proofed resident's hosted wallet was not replaced", "authority", staff.Authority, "err", err)
			p.fail(w, r, http.StatusInternalServerError, say("err.counter_wallet_failed_reproof"))
			return
		}
	} else {
		outcome = "created"
		if _, code, err = p.wallets.Create(id.number, d, contents, id.passphrase); err != nil {
			p.log.Error("a re-proofed resident's new hosted wallet was not stored", "authority", staff.Authority, "err", err)
			p.fail(w, r, http.StatusInternalServerError, say("err.counter_wallet_failed_new"))
			return
		}
	}
	reissue := p.revokeOld(ctx, staff.Authority, old)
	p.log.Info("resident re-proofed", "authority", staff.Authority, "identity_issued", cred != nil, "hosted_wallet", outcome, "old_credentials", len(old))
	slip := p.receipt(r, id, d, code, cred)
	slip.Reproof, slip.Reissue, slip.NewWallet = true, reissue, !replace
	p.render(w, r, http.StatusOK, "counter_receipt", "counter.title_receipt_reproof", slip, message{})
}

// reproofDID finds the DID the counter is to re-proof for ID number n,
// whose uniqueness tag is tag. replace says that n has a hosted wallet
// here, to be replaced; otherwise the resident registered elsewhere (the
// command-line wallet, another node) and is found by the ledger's index of
// tags, and a new hosted wallet is to be created. refusal is a catalogue
// key when the counter must not go on; nothing has been written then.
func (p *Portal) reproofDID(staff *StaffAccount, n idnumber.Number, tag tx.Hash32) (d string, replace bool, refusal string, err error) {
	acct, err := p.wallets.ByNumber(n)
	switch {
	case err == nil:
		res, _, err := p.cfg.App.ResidentRecord(acct.DID, 0)
		if err != nil {
			return "", false, "err.counter_not_on_ledger", nil
		}
		if tag != res.UniquenessTag {
			// The wallet was found by this number, so this means the
			// wallet and the ledger disagree: a case for the registrar's
			// back office.
			p.log.Error("a hosted wallet's DID was registered under another uniqueness tag", "authority", staff.Authority)
			return "", false, "err.counter_tag_mismatch", nil
		}
		return acct.DID, true, "", nil
	case !errors.Is(err, hosted.ErrNoAccount):
		return "", false, "", err
	}

	res, _, err := p.cfg.App.ResidentByTag(tag, 0)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return "", false, "err.counter_not_registered", nil
	case err != nil:
		return "", false, "", err
	}
	// The ledger re-activates a resident who moved away and came back,
	// in person; every other deactivation is final, and would be refused
	// only after new keys were made for nothing.
	if res.Deactivated && res.DeactivationReason != ledger.ReasonMovedAway {
		return "", false, "err.counter_deactivated", nil
	}
	// The DID's wallet here would be under another number's lookup: the
	// store and the ledger disagree, and Create would fail only after
	// the re-proof.
	switch _, err := p.wallets.Store.ByDID(res.DID); {
	case err == nil:
		p.log.Error("a registered DID has a hosted wallet under another ID number", "authority", staff.Authority)
		return "", false, "err.counter_tag_mismatch", nil
	case !errors.Is(err, hosted.ErrNoAccount):
		return "", false, "", err
	}
	return res.DID, false, "", nil
}

// revokeOld revokes each credential of a replaced wallet whose issuer's key
// this node holds, each signed by its issuer as imi credential revoke does.
// It returns what the resident must ask to have issued again: everything
// but the identity credential the counter issues afresh.
func (p *Portal) revokeOld(ctx context.Context, registrar string, old []hosted.StatusRef) []counterOldCredential {
	dir := p.directory()
	var out []counterOldCredential
	for _, ref := range old {
		revoked := false
		if _, ok := p.cfg.Keys[ref.IssuerID]; ok {
			if list, err := credential.ListOf(ref.StatusList, ref.IssuerID); err == nil && ref.Index < ledger.StatusListSize {
				_, err := p.sign(ctx, ref.IssuerID, laneCounter, &tx.Revoke{StatusRef: tx.StatusRef{List: list, Index: uint32(ref.Index)}})
				if err == nil || p.alreadyRevoked(ref.IssuerID, list, uint32(ref.Index)) {
					revoked = true
				} else {
					p.log.Warn("an old credential was not revoked at re-proof", "issuer", ref.IssuerID, "reason", logReason(err))
				}
			}
		}
		if ref.Type == credential.TypeResidentIdentity && ref.IssuerID == registrar {
			continue // issued again just now
		}
		c := counterOldCredential{Revoked: revoked}
		c.IssuerZH, c.IssuerEN = dir.authorityNames(ref.IssuerID)
		c.TypeZH, c.TypeEN = dir.typeNames(ref.Type)
		out = append(out, c)
	}
	return out
}

// alreadyRevoked reports whether an entry is revoked in the committed
// state: a second re-proof finds the first one's revocations done.
func (p *Portal) alreadyRevoked(issuer string, list, idx uint32) bool {
	e, _, err := p.cfg.App.Status(issuer, list, idx, 0)
	return err == nil && e.Status == ledger.StatusInvalid
}

// counterGuardianForm is the guardian form.
type counterGuardianForm struct {
	Blocked   string
	People    []counterField
	Reference counterField
	Days      counterField
	Basis     string
	Bases     []counterBasis
	BasisErr  string
	Scope     string // "all" or "chosen"
	Services  []counterService
	ScopeErr  string
	Consent   bool
	ConsErr   string
	Errors    []counterError
}

type counterBasis struct{ Value, Label, Help string }

type counterService struct {
	ID, NameZH, NameEN string
	Checked            bool
}

// counterBases are the legal bases the ledger knows, in words.
var counterBases = []counterBasis{
	{tx.BasisMinor, "counter.basis_minor", "counter.basis_minor_help"},
	{tx.BasisAdultIncapable, "counter.basis_incapacity", "counter.basis_incapacity_help"},
	{tx.BasisAdultAssisted, "counter.basis_assisted", "counter.basis_assisted_help"},
}

// basisLabel is the catalogue key naming a legal basis, "" for one the
// portal has no words for.
func basisLabel(basis string) string {
	for _, b := range counterBases {
		if b.Value == basis {
			return b.Label
		}
	}
	return ""
}

func (p *Portal) newCounterGuardianForm() *counterGuardianForm {
	f := &counterGuardianForm{
		People: []counterField{
			{Name: "guardian_id", Label: "counter.guardian_id", Help: "counter.guardian_id_help", Kind: "id", Max: 18},
			{Name: "ward_id", Label: "counter.ward_id", Help: "counter.ward_id_help", Kind: "id", Max: 18},
		},
		Reference: counterField{Name: "reference", Label: "counter.reference", Help: "counter.reference_help", Kind: "text", Max: 64},
		Days:      counterField{Name: "days", Label: "counter.days", Help: "counter.days_help", Kind: "number"},
		Bases:     counterBases,
		Scope:     "all",
	}
	if ss, _, err := p.cfg.App.Services(0); err == nil {
		for _, s := range ss {
			f.Services = append(f.Services, counterService{ID: s.ID, NameZH: s.NameZH, NameEN: s.NameEN})
		}
	}
	return f
}

func (p *Portal) guardianPage(w http.ResponseWriter, r *request) {
	f := p.newCounterGuardianForm()
	f.Blocked = p.counterBlocked(r.sess.staff, false)
	p.render(w, r, http.StatusOK, "counter_guardian", "counter.title_guardian", f, blockedMessage(f.Blocked))
}

// counterDelegation is the confirmation of a recorded delegation.
type counterDelegation struct {
	ID              string
	Guardian, Ward  string // masked ID numbers
	BasisLabel      string
	All             bool
	Services        []counterService
	From, Until     time.Time
	GuardianConsent bool
	height          int64
}

// guardian records that one resident may act for another.
func (p *Portal) guardian(w http.ResponseWriter, r *request) {
	staff := r.sess.staff
	f := p.newCounterGuardianForm()
	again := func(status int, m message) {
		f.Errors = counterErrors(f.People, []counterField{f.Reference, f.Days})
		for _, e := range []counterError{{"basis_" + counterBases[0].Value, "counter.basis", f.BasisErr}, {"scope_all", "counter.scope", f.ScopeErr}, {"guardian_consent", "counter.guardian_consent", f.ConsErr}} {
			if e.Error != "" {
				f.Errors = append(f.Errors, e)
			}
		}
		p.render(w, r, status, "counter_guardian", "counter.title_guardian", f, m)
	}
	if b := p.counterBlocked(staff, false); b != "" {
		f.Blocked = b
		again(http.StatusConflict, say(b))
		return
	}

	// Read and check everything first.
	var nums [2]idnumber.Number
	for i := range f.People {
		fd := &f.People[i]
		fd.Value = strings.ToUpper(strings.TrimSpace(r.PostFormValue(fd.Name)))
		nums[i], fd.Error = p.parseNumber(fd.Value)
	}
	guardianN, wardN := nums[0], nums[1]
	f.Basis = r.PostFormValue("basis")
	if !slices.ContainsFunc(counterBases, func(b counterBasis) bool { return b.Value == f.Basis }) {
		f.Basis, f.BasisErr = "", "err.counter_basis"
	}
	f.Reference.Value = strings.TrimSpace(r.PostFormValue("reference"))
	switch {
	case f.Reference.Value == "":
		f.Reference.Error = "err.counter_required"
	case !delegationReferenceRe.MatchString(f.Reference.Value):
		f.Reference.Error = "err.counter_reference"
	}
	f.Consent = r.PostFormValue("guardian_consent") == "yes"
	now := p.cfg.Now()
	if guardianN.String() != "" && wardN.String() != "" {
		switch {
		case guardianN == wardN:
			setFieldError(f.People, "ward_id", "err.counter_same_person")
		case ageOn(guardianN, now) < 18:
			setFieldError(f.People, "guardian_id", "err.counter_guardian_minor")
		case f.Basis == tx.BasisMinor && ageOn(wardN, now) >= 18:
			setFieldError(f.People, "ward_id", "err.counter_ward_adult")
		case f.Basis != tx.BasisMinor && f.Basis != "" && ageOn(wardN, now) < 18:
			setFieldError(f.People, "ward_id", "err.counter_ward_minor")
		}
	}
	if f.Consent {
		switch {
		case f.Basis == tx.BasisAdultAssisted:
			f.ConsErr = "err.counter_consent_assisted"
		case f.Basis == tx.BasisMinor && wardN.String() != "" && ageOn(wardN, now) >= 14:
			f.ConsErr = "err.counter_consent_over14"
		}
	}

	f.Days.Value = strings.TrimSpace(r.PostFormValue("days"))
	var days uint64
	if f.Days.Value == "" && f.Basis == tx.BasisMinor && wardN.String() != "" && ageOn(wardN, now) < 18 {
		// Whole days up to the ward's 18th birthday: it ends within the
		// day before, never after the ward is an adult.
		y, m, d := wardN.BirthDate()
		adult := time.Date(y+18, time.Month(m), d, 0, 0, 0, 0, cst)
		days = max(uint64(adult.Sub(now).Hours()/24), 1)
	} else {
		n, err := strconv.ParseUint(f.Days.Value, 10, 32)
		if err != nil || n == 0 || n > counterMaxDays {
			f.Days.Error = "err.counter_days"
		}
		days = n
	}
	days = min(days, counterMaxDays)

	f.Scope = r.PostFormValue("scope")
	var scope []string
	switch f.Scope {
	case "all":
		scope = []string{"*"}
	case "chosen":
		chosen := r.PostForm["service"]
		for i := range f.Services {
			if slices.Contains(chosen, f.Services[i].ID) {
				f.Services[i].Checked = true
				scope = append(scope, f.Services[i].ID)
			}
		}
		switch {
		case len(scope) == 0 || len(scope) != len(slices.Compact(slices.Sorted(slices.Values(chosen)))):
			f.ScopeErr = "err.counter_scope"
		case len(scope) > counterMaxScope:
			f.ScopeErr = "err.counter_scope_many"
		}
		slices.Sort(scope)
	default:
		f.Scope, f.ScopeErr = "all", "err.counter_scope"
	}

	// Both must hold a hosted wallet here: that is how the counter knows
	// their DIDs without anyone typing one.
	var dids [2]string
	for i, n := range nums {
		if n.String() == "" {
			continue
		}
		a, err := p.wallets.ByNumber(n)
		switch {
		case errors.Is(err, hosted.ErrNoAccount):
			f.People[i].Error = "err.counter_no_wallet"
			continue
		case err != nil:
			p.internal(w, r, err)
			return
		}
		if res, _, err := p.cfg.App.ResidentRecord(a.DID, 0); err != nil || res.Deactivated {
			f.People[i].Error = "err.counter_not_on_ledger"
			continue
		}
		dids[i] = a.DID
	}
	if len(counterErrors(f.People, []counterField{f.Reference, f.Days})) > 0 || f.BasisErr != "" || f.ScopeErr != "" || f.ConsErr != "" {
		again(http.StatusBadRequest, say("err.counter_fix_guardian"))
		return
	}

	ctx, cancel := background(r)
	defer cancel()
	body := &tx.RecordDelegation{Guardian: dids[0], Ward: dids[1], Basis: f.Basis, Reference: f.Reference.Value,
		Scope: scope, Days: uint32(days), GuardianConsent: f.Consent}
	if m, err := p.sign(ctx, staff.Authority, laneCounter, body); err != nil {
		p.log.Info("a guardian delegation was refused", "authority", staff.Authority, "reason", logReason(err))
		again(http.StatusConflict, m)
		return
	}
	p.log.Info("guardian delegation recorded", "authority", staff.Authority, "basis", f.Basis)

	v := &counterDelegation{Guardian: maskedNumber(guardianN), Ward: maskedNumber(wardN), All: scope[0] == "*", GuardianConsent: f.Consent,
		BasisLabel: basisLabel(f.Basis)}
	for _, s := range f.Services {
		if s.Checked {
			v.Services = append(v.Services, s)
		}
	}
	// The ledger names the delegation by its transaction: the newest one
	// this registrar recorded for the pair is the one just committed.
	if ds, _, err := p.cfg.App.Delegations(dids[1], 0); err == nil {
		for _, dl := range ds {
			if dl.Guardian == dids[0] && dl.Registrar == staff.Authority && dl.From.Height >= v.height {
				v.ID, v.From, v.Until, v.height = dl.ID, dl.From.Time, dl.Until, dl.From.Height
			}
		}
	}
	p.render(w, r, http.StatusOK, "counter_delegation", "counter.title_delegation", v, message{})
}
