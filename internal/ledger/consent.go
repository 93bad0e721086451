package ledger

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/tx"
)

// Services, consents, access records and delegations. Residents appear here
// only by pseudonym (one per authority; see package pseudonym) and delegations
// by DID; claim names are here, claim values never are.
const (
	pService    = "svc/"     // service id -> Service
	pConsent    = "cons/"    // pseudonym/service -> Consent (the latest grant)
	pConsentBox = "consbox/" // pseudonym/service -> []tx.SealedSubject of that grant
	pAccess     = "acc/"     // pseudonym/record id -> Access
	pAccessBy   = "acca/"    // authority/height/pseudonym/record id -> "" (an authority's own records)
	pDelegation = "dlg/"     // ward DID/id -> Delegation
	pGuardianOf = "dlgg/"    // guardian DID/ward DID/id -> ""
)

// Limits of the consent layer.
const (
	// OneTimeWindow is how long a one-time consent stays usable: long
	// enough to finish an application, short enough not to be standing.
	OneTimeWindow    = 24 * time.Hour
	MaxAccessBatch   = 128
	MaxBoxBytes      = 1024
	maxServiceClaims = 64
	maxPurposeBytes  = 600
	maxRetentionDays = 100 * 366
	maxStandingDays  = 10 * 366
	maxDelegateDays  = 18 * 366
	maxScope         = 32
)

// Consent statuses.
const (
	ConsentActive  = "active"
	ConsentRevoked = "revoked"
	ConsentUsed    = "used"
)

// Reasons an access is denied. The node uses them for what it refuses
// itself; the ledger for what it finds when the record's block runs.
const (
	DenyNoConsent       = "no_consent"
	DenyRevoked         = "consent_revoked"
	DenyExpired         = "consent_expired"
	DenyUsed            = "consent_used"
	DenyServiceChanged  = "service_changed"
	DenyClaimNotAllowed = "claim_not_consented"
	DenyWrongReader     = "wrong_reader"
	DenyNotStanding     = "not_standing"
	DenySourceNotParty  = "source_not_party"
	DenyNotGuardian     = "guardian_required"
	DenySubjectUnknown  = "subject_unknown"
	DenyBadRequest      = "bad_request"
)

var denyReasons = []string{DenyBadRequest, DenyClaimNotAllowed, DenyExpired, DenyNoConsent, DenyNotGuardian, DenyNotStanding,
	DenyRevoked, DenyServiceChanged, DenySourceNotParty, DenySubjectUnknown, DenyUsed, DenyWrongReader}

// DenyReasonText explains a denial to a resident or a clerk, in English and Chinese.
func DenyReasonText(r string) (en, zh string) {
	switch r {
	case DenyNoConsent:
		return "the resident has not consented to this service", "居民未同意该服务读取其数据"
	case DenyRevoked:
		return "the resident withdrew the consent", "居民已撤回同意"
	case DenyExpired:
		return "the consent has expired", "同意已过期"
	case DenyUsed:
		return "the one-time consent was already used", "一次性同意已使用"
	case DenyServiceChanged:
		return "the service changed its purpose or claims since the consent; a new consent is needed", "服务的用途或所需信息已变更，需重新取得同意"
	case DenyClaimNotAllowed:
		return "a requested item is outside what the resident consented to", "所请求的信息超出居民同意的范围"
	case DenyWrongReader:
		return "the consent was given to another authority", "该同意授予的是其他机构"
	case DenyNotStanding:
		return "a one-time consent does not allow back-office reads", "一次性同意不允许后台调取"
	case DenySourceNotParty:
		return "this authority is not a source named in the consent", "本机构不是该同意中指定的数据来源"
	case DenyNotGuardian:
		return "this resident can consent only together with a registered guardian", "该居民须由登记的监护人共同同意"
	case DenySubjectUnknown:
		return "the resident could not be identified from the consent", "无法根据同意确定居民身份"
	case DenyBadRequest:
		return "the request was not well-formed", "请求格式错误"
	}
	return "denied", "已拒绝"
}

var (
	serviceIDRe = regexp.MustCompile(`^[a-z][a-z0-9_.-]{1,63}$`)
	fieldNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// Service is a published service.
type Service struct {
	tx.RegisterService
	Authority  string `json:"authority"`
	Version    uint64 `json:"version"`
	Registered Stamp  `json:"registered"`
}

// Asks reports whether the service may ask for claim c at all.
func (s *Service) Asks(c tx.ClaimRef) bool {
	return slices.Contains(s.Required, c) || slices.Contains(s.Optional, c)
}

// Consent is a resident's latest grant to one service, named by the
// resident's pseudonym towards the service's authority.
type Consent struct {
	ID             string        `json:"id"`
	Subject        string        `json:"subject"`
	Service        string        `json:"service"`
	ServiceVersion uint64        `json:"service_version"`
	Authority      string        `json:"authority"`
	Claims         []tx.ClaimRef `json:"claims"`
	Sensitive      []tx.ClaimRef `json:"sensitive"`
	Sources        []string      `json:"sources"`
	Mode           string        `json:"mode"`
	Granted        Stamp         `json:"granted"`
	Until          time.Time     `json:"until"`
	Status         string        `json:"status"`
	Ended          Stamp         `json:"ended"`
	// ByGuardian and EndedByGuardian are the guardian's pseudonym when a
	// guardian made the grant or the revocation.
	ByGuardian      string `json:"by_guardian"`
	EndedByGuardian string `json:"ended_by_guardian"`
}

// Access is one access record as the ledger stored it.
type Access struct {
	tx.AccessRecord
	// Consent is the id of the consent the ledger judged the access by, if
	// the subject had one for the service.
	Consent    string `json:"consent"`
	ByGuardian string `json:"by_guardian"`
	Recorder   string `json:"recorder"`
	At         Stamp  `json:"at"`
}

// Delegation lets Guardian act for Ward.
type Delegation struct {
	tx.RecordDelegation
	ID        string    `json:"id"`
	Registrar string    `json:"registrar"`
	From      Stamp     `json:"from"`
	Until     time.Time `json:"until"`
	Ended     Stamp     `json:"ended"`
	EndedBy   string    `json:"ended_by"`
}

// ActiveAt reports whether d is in force at t.
func (d *Delegation) ActiveAt(t time.Time) bool {
	return d.Ended.Height == 0 && t.Before(d.Until)
}

// Covers reports whether d's scope includes service.
func (d *Delegation) Covers(service string) bool {
	return slices.Contains(d.Scope, "*") || slices.Contains(d.Scope, service)
}

func consentKey(subject, service string) string { return pConsent + subject + "/" + service }

func accessKey(subject string, id []byte) string {
	return pAccess + subject + "/" + base64.RawURLEncoding.EncodeToString(id)
}

func accessByKey(authority string, h int64, subject string, id []byte) string {
	return fmt.Sprintf("%s%s/%016x/%s/%s", pAccessBy, authority, h, subject, base64.RawURLEncoding.EncodeToString(id))
}

// txID names a record made by transaction t: the first 16 bytes of its hash.
func (x *txExec) txID() string {
	h := tx.Hash(x.t.Encode())
	return hex.EncodeToString(h[:16])
}

func (x *txExec) setKEMKey(b *tx.SetKEMKey) *Rejection {
	a, rej := x.authority("")
	if rej != nil {
		return rej
	}
	if len(b.Key) != 32 {
		return reject(CodeInvalidField, "an X25519 key is 32 bytes")
	}
	a.KEMKey = b.Key
	putAuthority(x.st, a)
	return nil
}

func (x *txExec) registerService(b *tx.RegisterService) *Rejection {
	a, rej := x.authority(RoleServiceProvider)
	if rej != nil {
		return rej
	}
	prev := getRecord[Service](x.st, pService+b.ID)
	if prev != nil && prev.Authority != a.ID {
		return reject(CodeNotAuthorized, fmt.Sprintf("the service %s belongs to %s", b.ID, prev.Authority))
	}
	if err := checkService(x.st, b); err != nil {
		return reject(CodeInvalidField, err.Error())
	}
	s := &Service{RegisterService: *b, Authority: a.ID, Version: 1, Registered: x.c.at}
	if prev != nil {
		s.Version = prev.Version + 1
	}
	putJSON(x.st, []byte(pService+b.ID), s)
	return nil
}

func validText(s string, max int) bool {
	return s != "" && len(s) <= max && utf8.ValidString(s) && !strings.ContainsFunc(s, isControl)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// checkClaimRefs checks refs are sorted, unique and name published claims.
func checkClaimRefs(st kv, what string, refs []tx.ClaimRef) error {
	for i, c := range refs {
		if i > 0 && refs[i-1].Compare(c) >= 0 {
			return fmt.Errorf("%s must be sorted by type and claim, without repeats", what)
		}
		ct := credTypes.get(st, pCredType+c.Type)
		if ct == nil {
			return fmt.Errorf("%s: no credential type %q", what, clip(c.Type))
		}
		if _, ok := ct.Claim(c.Claim); !ok {
			return fmt.Errorf("%s: the type %s has no claim %q", what, c.Type, clip(c.Claim))
		}
	}
	return nil
}

// checkService validates a service definition; genesis uses it too.
func checkService(st kv, b *tx.RegisterService) error {
	switch {
	case !serviceIDRe.MatchString(b.ID):
		return fmt.Errorf("a service id is 2-64 lower-case letters, digits and _ . -")
	case !validName(b.NameZH) || !validName(b.NameEN):
		return fmt.Errorf("a service needs a Chinese and an English name of at most %d bytes", maxNameBytes)
	case !validText(b.PurposeZH, maxPurposeBytes) || !validText(b.PurposeEN, maxPurposeBytes):
		return fmt.Errorf("a service states its purpose in Chinese and English, at most %d bytes each", maxPurposeBytes)
	case !validText(b.LegalBasis, maxPurposeBytes):
		return fmt.Errorf("a service states its legal basis")
	case len(b.Required) == 0 || len(b.Required)+len(b.Optional) > maxServiceClaims:
		return fmt.Errorf("a service asks for 1 to %d claims, at least one required", maxServiceClaims)
	case b.RetentionDays == 0 || b.RetentionDays > maxRetentionDays:
		return fmt.Errorf("retention_days must be 1 to %d", maxRetentionDays)
	}
	if err := checkClaimRefs(st, "required", b.Required); err != nil {
		return err
	}
	if err := checkClaimRefs(st, "optional", b.Optional); err != nil {
		return err
	}
	for _, c := range b.Optional {
		if slices.Contains(b.Required, c) {
			return fmt.Errorf("%s is both required and optional", c)
		}
	}
	if len(b.Modes) == 0 || !slices.IsSorted(b.Modes) || len(slices.Compact(slices.Clone(b.Modes))) != len(b.Modes) {
		return fmt.Errorf("modes must be one_time, standing or both, sorted")
	}
	for _, m := range b.Modes {
		if m != tx.ModeOneTime && m != tx.ModeStanding {
			return fmt.Errorf("unknown consent mode %q (use one_time or standing)", clip(m))
		}
	}
	standing := slices.Contains(b.Modes, tx.ModeStanding)
	if standing != (b.MaxStandingDays > 0) || b.MaxStandingDays > maxStandingDays {
		return fmt.Errorf("max_standing_days is 1 to %d for a service with standing consent, else 0", maxStandingDays)
	}
	// Every claim asked for is on the form exactly once, and the form asks
	// for nothing else: what a service reads is what everyone can see.
	// A field with no claim is typed in by the resident (a phone number) and
	// never read from anyone.
	if len(b.Form) > maxServiceClaims {
		return fmt.Errorf("a form has at most %d fields", maxServiceClaims)
	}
	names := map[string]bool{}
	var onForm []tx.ClaimRef
	for _, f := range b.Form {
		if !fieldNameRe.MatchString(f.Name) || names[f.Name] {
			return fmt.Errorf("form field name %q is not allowed or repeated", clip(f.Name))
		}
		names[f.Name] = true
		if !validName(f.LabelZH) || !validName(f.LabelEN) {
			return fmt.Errorf("form field %s needs a Chinese and an English label", f.Name)
		}
		if f.Claim == (tx.ClaimRef{}) {
			continue
		}
		if !slices.Contains(b.Required, f.Claim) && !slices.Contains(b.Optional, f.Claim) {
			return fmt.Errorf("form field %s asks for %s, which the service does not list", f.Name, f.Claim)
		}
		if slices.Contains(onForm, f.Claim) {
			return fmt.Errorf("%s is on the form twice", f.Claim)
		}
		onForm = append(onForm, f.Claim)
	}
	if len(onForm) != len(b.Required)+len(b.Optional) {
		return fmt.Errorf("every claim the service asks for must be on its form")
	}
	return nil
}

// psnSigner returns the pseudonym that signed the transaction, verifying the
// signature.
func (x *txExec) psnSigner() (pseudonym.ID, *Rejection) {
	if x.psn.IsZero() {
		return pseudonym.ID{}, reject(CodeNotAuthorized, "consents are given under a pseudonym (psn:…), never a DID")
	}
	if rej := x.checkSig(x.psn.Key()); rej != nil {
		return pseudonym.ID{}, rej
	}
	return x.psn, nil
}

// guardian checks a guardian's co-signature and returns its pseudonym.
func (x *txExec) guardian(g *tx.GuardianAct, body tx.Body) (string, *Rejection) {
	if g == nil {
		return "", nil
	}
	p, err := pseudonym.Parse(g.Pseudonym)
	if err != nil || g.Pseudonym == x.t.Signer {
		return "", reject(CodeInvalidField, "the guardian's pseudonym is malformed or is the ward's own")
	}
	if x.c.verifySig && !p.Key().Verify(tx.GuardianSignBytes(x.t.ChainID, x.t.Signer, body), g.Sig) {
		return "", reject(CodeBadSignature, "the guardian's signature does not verify")
	}
	return g.Pseudonym, nil
}

func (x *txExec) grantConsent(b *tx.GrantConsent) *Rejection {
	p, rej := x.psnSigner()
	if rej != nil {
		return rej
	}
	s := services.get(x.st, pService+b.Service)
	if s == nil {
		return reject(CodeNotFound, "no service "+clip(b.Service))
	}
	if b.ServiceVersion != s.Version {
		return reject(CodeInvalidField, fmt.Sprintf("the consent is for version %d of the service, which is now at version %d; review it again", b.ServiceVersion, s.Version))
	}
	if err := checkClaimRefs(x.st, "claims", b.Claims); err != nil {
		return reject(CodeInvalidField, err.Error())
	}
	for _, c := range b.Claims {
		if !s.Asks(c) {
			return reject(CodeInvalidField, fmt.Sprintf("the service does not ask for %s", c))
		}
	}
	for _, c := range s.Required {
		if !slices.Contains(b.Claims, c) {
			return reject(CodeInvalidField, fmt.Sprintf("the service requires %s: consent to all required items or decline", c))
		}
	}
	var sensitive []tx.ClaimRef
	sources := []string{s.Authority}
	for _, c := range b.Claims {
		ct := credTypes.get(x.st, pCredType+c.Type)
		if spec, _ := ct.Claim(c.Claim); spec.Sensitive {
			sensitive = append(sensitive, c)
		}
		if !slices.Contains(sources, ct.Issuer) {
			sources = append(sources, ct.Issuer)
		}
	}
	slices.Sort(sources)
	if !slices.Equal(sensitive, b.Sensitive) {
		return reject(CodeInvalidField, "sensitive personal information needs its own consent: list exactly the sensitive items")
	}
	if !slices.Contains(s.Modes, b.Mode) {
		return reject(CodeInvalidField, fmt.Sprintf("the service does not offer %q consent", clip(b.Mode)))
	}
	until := x.c.at.Time.Add(OneTimeWindow)
	switch b.Mode {
	case tx.ModeOneTime:
		if b.Days != 0 {
			return reject(CodeInvalidField, "a one-time consent has no duration in days")
		}
	case tx.ModeStanding:
		if b.Days == 0 || b.Days > s.MaxStandingDays {
			return reject(CodeInvalidField, fmt.Sprintf("a standing consent to this service lasts 1 to %d days", s.MaxStandingDays))
		}
		until = x.c.at.Time.Add(time.Duration(b.Days) * 24 * time.Hour)
	}
	if len(b.Subjects) != len(sources) {
		return reject(CodeInvalidField, "seal the subject to the service's authority and to each source of the claims, no other")
	}
	for i, sub := range b.Subjects {
		if sub.Authority != sources[i] || len(sub.Box) == 0 || len(sub.Box) > MaxBoxBytes {
			return reject(CodeInvalidField, "seal the subject to the service's authority and to each source of the claims, sorted, each box at most 1024 bytes")
		}
	}
	g, rej := x.guardian(b.Guardian, b)
	if rej != nil {
		return rej
	}
	c := &Consent{
		ID: x.txID(), Subject: p.String(), Service: s.ID, ServiceVersion: s.Version, Authority: s.Authority,
		Claims: b.Claims, Sensitive: b.Sensitive, Sources: sources, Mode: b.Mode,
		Granted: x.c.at, Until: until, Status: ConsentActive, ByGuardian: g,
	}
	k := consentKey(c.Subject, c.Service)
	putJSON(x.st, []byte(k), c)
	putJSON(x.st, []byte(pConsentBox+c.Subject+"/"+c.Service), b.Subjects)
	return nil
}

func (x *txExec) revokeConsent(b *tx.RevokeConsent) *Rejection {
	p, rej := x.psnSigner()
	if rej != nil {
		return rej
	}
	k := consentKey(p.String(), b.Service)
	c := getRecord[Consent](x.st, k)
	if c == nil || c.Status != ConsentActive || !x.c.at.Time.Before(c.Until) {
		return reject(CodeNoConsent, "no active consent to "+clip(b.Service))
	}
	g, rej := x.guardian(b.Guardian, b)
	if rej != nil {
		return rej
	}
	c.Status, c.Ended, c.EndedByGuardian = ConsentRevoked, x.c.at, g
	putJSON(x.st, []byte(k), c)
	return nil
}

// Decide judges one access against the consent c (nil if none) at block time
// now. It is the one rule both the ledger and the nodes apply.
func Decide(c *Consent, s *Service, r *tx.AccessRecord, now time.Time) string {
	switch {
	case c == nil || s == nil:
		return DenyNoConsent
	case c.Status == ConsentRevoked:
		return DenyRevoked
	case c.Status == ConsentUsed:
		return DenyUsed
	case !now.Before(c.Until):
		return DenyExpired
	case c.ServiceVersion != s.Version:
		return DenyServiceChanged
	case r.Reader != c.Authority:
		return DenyWrongReader
	}
	for _, cl := range r.Claims {
		if !slices.Contains(c.Claims, cl) {
			return DenyClaimNotAllowed
		}
	}
	if r.Channel == tx.ChannelBackOffice {
		if c.Mode != tx.ModeStanding {
			return DenyNotStanding
		}
		if !slices.Contains(c.Sources, r.Source) {
			return DenySourceNotParty
		}
	}
	return ""
}

func (x *txExec) recordAccess(b *tx.RecordAccess) *Rejection {
	a, rej := x.authority("")
	if rej != nil {
		return rej
	}
	if len(b.Records) == 0 || len(b.Records) > MaxAccessBatch {
		return reject(CodeInvalidField, fmt.Sprintf("record 1 to %d accesses at a time", MaxAccessBatch))
	}
	// A re-check after a block needs only the signer and the sequence,
	// checked already. Should the block have made a record malformed (its
	// reader removed, its claim's type changed), the next block refuses it.
	if x.c.recheck {
		return nil
	}
	for i := range b.Records {
		r := &b.Records[i]
		if err := x.checkRecord(a, r); err != nil {
			return reject(CodeInvalidField, fmt.Sprintf("record %d: %v", i, err))
		}
	}
	// Every well-formed record is stored, allowed or denied, so the mempool
	// has nothing to learn from judging it: that waits for the block.
	if x.c.mempool {
		return nil
	}
	for i := range b.Records {
		r := b.Records[i]
		k := accessKey(r.Subject, r.ID)
		if x.st.get([]byte(k)) != nil {
			continue // the same request recorded before: one effect
		}
		ck := consentKey(r.Subject, r.Service)
		c := getRecord[Consent](x.st, ck)
		e := &Access{AccessRecord: r, Recorder: a.ID, At: x.c.at}
		if c != nil {
			e.Consent, e.ByGuardian = c.ID, c.ByGuardian
		}
		if r.Outcome == tx.OutcomeAllowed {
			s := services.get(x.st, pService+r.Service)
			if why := x.judge(c, s, &r); why != "" {
				e.Outcome, e.Reason = tx.OutcomeDenied, why
			} else if c.Mode == tx.ModeOneTime {
				c.Status, c.Ended = ConsentUsed, x.c.at
				putJSON(x.st, []byte(ck), c)
			}
		}
		putJSON(x.st, []byte(k), e)
		x.st.set([]byte(accessByKey(r.Reader, x.c.at.Height, r.Subject, r.ID)), []byte{1})
		if r.Source != "" && r.Source != r.Reader {
			x.st.set([]byte(accessByKey(r.Source, x.c.at.Height, r.Subject, r.ID)), []byte{1})
		}
	}
	return nil
}

// judge is Decide plus the rule that a source releases only the claims it
// vouches for, which needs the credential types' issuers from the state.
func (x *txExec) judge(c *Consent, s *Service, r *tx.AccessRecord) string {
	return decideIn(x.st, c, s, r, x.c.at.Time)
}

func decideIn(st kv, c *Consent, s *Service, r *tx.AccessRecord, now time.Time) string {
	if why := Decide(c, s, r, now); why != "" {
		return why
	}
	if r.Channel == tx.ChannelBackOffice {
		for _, cl := range r.Claims {
			ct := credTypes.get(st, pCredType+cl.Type)
			if ct == nil || ct.Issuer != r.Source {
				return DenySourceNotParty
			}
		}
	}
	return ""
}

func (x *txExec) checkRecord(a *Authority, r *tx.AccessRecord) error {
	if len(r.ID) < 16 || len(r.ID) > 32 {
		return fmt.Errorf("a record id is 16 to 32 bytes")
	}
	if err := checkRequest(x.st, r); err != nil {
		return err
	}
	if r.Channel == tx.ChannelPresentation && r.Reader != a.ID {
		return fmt.Errorf("a presentation is recorded by its reader")
	}
	if r.Channel == tx.ChannelBackOffice && r.Source != a.ID {
		return fmt.Errorf("a back-office read is recorded by its source")
	}
	switch {
	case r.Outcome == tx.OutcomeAllowed && r.Reason == "":
	case r.Outcome == tx.OutcomeDenied && slices.Contains(denyReasons, r.Reason):
	default:
		return fmt.Errorf("outcome allowed with no reason, or denied with one of %s", strings.Join(denyReasons, ", "))
	}
	return nil
}

// checkRequest checks the shape of an access, whoever asks: record_access
// refuses what it refuses, and CheckAccess answers bad_request, so no access
// is ever said to be allowed that could not be recorded.
func checkRequest(st kv, r *tx.AccessRecord) error {
	if _, err := pseudonym.Parse(r.Subject); err != nil {
		return err
	}
	if st.get([]byte(pAuthority+r.Reader)) == nil {
		return fmt.Errorf("no authority %q", clip(r.Reader))
	}
	switch r.Channel {
	case tx.ChannelPresentation:
		if r.Source != "" {
			return fmt.Errorf("a presentation has no source")
		}
	case tx.ChannelBackOffice:
		if r.Source == r.Reader || st.get([]byte(pAuthority+r.Source)) == nil {
			return fmt.Errorf("a back-office read comes from another authority, the source")
		}
	default:
		return fmt.Errorf("channel %q (use presentation or back_office)", clip(r.Channel))
	}
	if st.get([]byte(pService+r.Service)) == nil {
		return fmt.Errorf("no service %q", clip(r.Service))
	}
	if len(r.Claims) == 0 || len(r.Claims) > maxServiceClaims {
		return fmt.Errorf("1 to %d claims", maxServiceClaims)
	}
	return checkClaimRefs(st, "claims", r.Claims)
}

func (x *txExec) recordDelegation(b *tx.RecordDelegation) *Rejection {
	reg, rej := x.authority(RoleRegistrar)
	if rej != nil {
		return rej
	}
	for _, d := range []string{b.Guardian, b.Ward} {
		r := getResident(x.st, d)
		if r == nil || r.Deactivated {
			return reject(CodeNotFound, clip(d)+" is not an active registered resident")
		}
	}
	switch {
	case b.Guardian == b.Ward:
		return reject(CodeInvalidField, "a resident cannot be their own guardian")
	case b.Basis != tx.BasisMinor && b.Basis != tx.BasisAdultIncapable && b.Basis != tx.BasisAdultAssisted:
		return reject(CodeInvalidField, "basis is minor, adult_incapacity or adult_assisted")
	case b.GuardianConsent && b.Basis == tx.BasisAdultAssisted:
		return reject(CodeInvalidField, "an assisted adult consents for themselves")
	case b.Reference == "" || !referenceRe.MatchString(b.Reference):
		return reject(CodeInvalidField, "reference is the file number of the in-person check (letters, digits . _ / : -)")
	case b.Days == 0 || b.Days > maxDelegateDays:
		return reject(CodeInvalidField, fmt.Sprintf("a delegation lasts 1 to %d days", maxDelegateDays))
	case len(b.Scope) == 0 || len(b.Scope) > maxScope:
		return reject(CodeInvalidField, `scope lists services, or is "*" for all`)
	}
	if !(len(b.Scope) == 1 && b.Scope[0] == "*") {
		for i, s := range b.Scope {
			if i > 0 && b.Scope[i-1] >= s {
				return reject(CodeInvalidField, "scope must be sorted, without repeats")
			}
			if x.st.get([]byte(pService+s)) == nil {
				return reject(CodeNotFound, "no service "+clip(s))
			}
		}
	}
	d := &Delegation{RecordDelegation: *b, ID: x.txID(), Registrar: reg.ID, From: x.c.at,
		Until: x.c.at.Time.Add(time.Duration(b.Days) * 24 * time.Hour)}
	putJSON(x.st, []byte(pDelegation+b.Ward+"/"+d.ID), d)
	x.st.set([]byte(pGuardianOf+b.Guardian+"/"+b.Ward+"/"+d.ID), []byte{1})
	return nil
}

func (x *txExec) endDelegation(b *tx.EndDelegation) *Rejection {
	d := getRecord[Delegation](x.st, pDelegation+b.Ward+"/"+b.ID)
	if d == nil {
		return reject(CodeNotFound, "no such delegation")
	}
	by := ""
	if x.t.Signer == b.Ward {
		r, rej := x.self()
		if rej != nil {
			return rej
		}
		if rej := x.checkSig(r.Key); rej != nil {
			return rej
		}
		if d.Basis == tx.BasisMinor {
			return reject(CodeNotAuthorized, "a minor's guardianship is ended by the registrar")
		}
		by = r.DID
	} else {
		reg, rej := x.authority(RoleRegistrar)
		if rej != nil {
			return rej
		}
		by = reg.ID
	}
	if !d.ActiveAt(x.c.at.Time) {
		return reject(CodeInvalidField, "the delegation has already ended")
	}
	d.Ended, d.EndedBy = x.c.at, by
	putJSON(x.st, []byte(pDelegation+b.Ward+"/"+d.ID), d)
	return nil
}
