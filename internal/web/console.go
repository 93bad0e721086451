package web

// The authority console: what a caseworker of one authority sees and does.
// Every page is scoped to the authority of the signed-in staff account:
// its received applications, back-office reads under its residents'
// standing consents, the credentials it issues and revokes, its access
// records and its services. Every write is a transaction signed with the
// authority's key this node holds, so the ledger judges each one as it
// judges the command line's, and every read of a resident's data goes
// through the desk, which records it on the ledger before anything leaves.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/hosted"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
	"github.com/imi-city/imi/internal/wallet"
)

func init() {
	routeTable = append(routeTable,
		route{"GET /console", caseworker, (*Portal).consoleHome},
		route{"GET /console/applications/{id}", caseworker, (*Portal).consoleApplication},
		route{"POST /console/applications/{id}/read", caseworker, (*Portal).consoleRead},
		route{"GET /console/issue", caseworker, (*Portal).consoleIssuePage},
		route{"POST /console/issue", caseworker, (*Portal).consoleIssue},
		route{"POST /console/issue/download", caseworker, (*Portal).consoleDownload},
		route{"GET /console/revoke", caseworker, (*Portal).consoleRevokePage},
		route{"POST /console/revoke", caseworker, (*Portal).consoleRevoke},
		route{"GET /console/access", caseworker, (*Portal).consoleAccess},
		route{"GET /console/services", caseworker, (*Portal).consoleServices},
		route{"POST /console/services", caseworker, (*Portal).consolePublish},
	)
}

// consoleAuthority is the authority the signed-in caseworker acts for.
func consoleAuthority(r *request) string { return r.sess.staff.Authority }

// consoleNav names the console's sections for its own navigation.
type consoleNav struct{ Nav string }

// Received applications

// receivedView is one received application in the list.
type receivedView struct {
	ID                   string
	ServiceZH, ServiceEN string
	Received             time.Time
	Guardian             bool
	Mode                 string // "" when the consent could not be read
	Until                time.Time
	State                string // active, expired, revoked, used; "" unknown
}

func (p *Portal) consoleHome(w http.ResponseWriter, r *request) {
	me := consoleAuthority(r)
	data := struct {
		consoleNav
		Apps []receivedView
	}{consoleNav: consoleNav{"home"}}
	if p.cfg.Desk == nil || !p.cfg.Desk.Holds(me) {
		p.render(w, r, http.StatusOK, "console", "console.title_home", data, say("err.console_not_here"))
		return
	}
	apps, err := p.cfg.Desk.Received(me)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	dir := p.directory()
	now := p.cfg.App.LastBlock().Time
	for _, a := range apps {
		v := receivedView{ID: a.ID, Guardian: a.Guardian}
		if a.Received != nil {
			v.Received = *a.Received
		}
		v.ServiceZH, v.ServiceEN = dir.serviceNames(a.Service)
		if c, _, err := p.cfg.App.Consent(a.Subject, a.Service, 0); err == nil {
			v.Mode, v.Until, v.State = c.Mode, c.Until, consentState(c, now)
		}
		data.Apps = append(data.Apps, v)
	}
	sort.SliceStable(data.Apps, func(i, j int) bool { return data.Apps[i].Received.After(data.Apps[j].Received) })
	p.render(w, r, http.StatusOK, "console", "console.title_home", data, message{})
}

// One application, its consent and back-office reads

// appView is a received application as its caseworker reads it.
type appView struct {
	consoleNav
	App                  *service.Application
	Received             time.Time
	ServiceZH, ServiceEN string
	Values               []valueView
	Consent              *consentDetail // nil if the ledger has none
	Sources              []readSource   // other authorities to ask again
	Own                  bool           // some consented items are this authority's own
	Result               *readResult
}

// valueView is one value of a form or of a released package.
type valueView struct {
	LabelZH, LabelEN   string
	Value              string
	SourceZH, SourceEN string
	Verified           bool
	Sensitive          bool
}

// consentDetail is the consent behind an application, as the ledger has it
// now.
type consentDetail struct {
	ledger.Consent
	ClaimsZH, ClaimsEN   string
	SourcesZH, SourcesEN string
	State                string
	Standing             bool
	Replaced             bool   // the resident gave a later consent since
	Changed              bool   // the service published a new version since
	Current              uint64 // the service's version now
}

// readSource is an authority the caseworker may ask again, and for what.
type readSource struct {
	ID                 string
	NameZH, NameEN     string
	ClaimsZH, ClaimsEN string
	claims             []tx.ClaimRef
}

// readResult is the answer to one back-office read.
type readResult struct {
	SourceZH, SourceEN string
	Allowed            bool
	Values             []valueView
	Height             int64
	Consent            string
	ReasonZH, ReasonEN string // why the ledger denied it
}

// consoleApp loads application id of the caseworker's authority. Another
// authority's application reads as missing: its existence is not theirs to
// learn.
func (p *Portal) consoleApp(r *request, id string) (*appView, message, int) {
	me := consoleAuthority(r)
	if p.cfg.Desk == nil || !p.cfg.Desk.Holds(me) {
		return nil, say("err.console_not_here"), http.StatusNotFound
	}
	a, err := p.cfg.Desk.Get(id)
	if err != nil || a.Authority != me || a.Status != service.StatusReceived {
		return nil, say("err.console_no_application"), http.StatusNotFound
	}
	dir := p.directory()
	v := &appView{consoleNav: consoleNav{"home"}, App: a}
	if a.Received != nil {
		v.Received = *a.Received
	}
	v.ServiceZH, v.ServiceEN = dir.serviceNames(a.Service)
	svc := dir.services[a.Service]
	for _, f := range a.Values {
		fv := valueView{LabelZH: f.Name, LabelEN: f.Name, Value: formatValue(f.Value), Verified: f.Verified}
		if svc != nil {
			for _, ff := range svc.Form {
				if ff.Name == f.Name {
					fv.LabelZH, fv.LabelEN = ff.LabelZH, ff.LabelEN
				}
			}
		}
		if f.Verified {
			fv.SourceZH, fv.SourceEN = dir.authorityNames(f.Source)
		}
		if s, ok := dir.claimSpec(f.Claim); ok && f.Claim != (tx.ClaimRef{}) {
			fv.Sensitive = s.Sensitive
		}
		v.Values = append(v.Values, fv)
	}
	c, _, err := p.cfg.App.Consent(a.Subject, a.Service, 0)
	if err != nil {
		return v, message{}, http.StatusOK
	}
	cd := &consentDetail{Consent: *c, State: consentState(c, p.cfg.App.LastBlock().Time),
		Standing: c.Mode == tx.ModeStanding, Replaced: c.ID != a.Consent}
	cd.ClaimsZH, cd.ClaimsEN = dir.claimNames(c.Claims)
	var zh, en []string
	for _, s := range c.Sources {
		z, e := dir.authorityNames(s)
		zh, en = append(zh, z), append(en, e)
	}
	cd.SourcesZH, cd.SourcesEN = strings.Join(zh, "、"), strings.Join(en, "; ")
	if svc != nil {
		cd.Current, cd.Changed = svc.Version, svc.Version != c.ServiceVersion
	}
	v.Consent = cd
	if !cd.Standing {
		return v, message{}, http.StatusOK
	}
	// The ledger lets a source release only the claims of types it issues,
	// and never to itself: what this authority issued is in its own
	// register already.
	for _, src := range c.Sources {
		var claims []tx.ClaimRef
		for _, cl := range c.Claims {
			if t := dir.types[cl.Type]; t != nil && t.Issuer == src {
				claims = append(claims, cl)
			}
		}
		if len(claims) == 0 {
			continue
		}
		if src == me {
			v.Own = true
			continue
		}
		slices.SortFunc(claims, tx.ClaimRef.Compare)
		rs := readSource{ID: src, claims: claims}
		rs.NameZH, rs.NameEN = dir.authorityNames(src)
		rs.ClaimsZH, rs.ClaimsEN = dir.claimNames(claims)
		v.Sources = append(v.Sources, rs)
	}
	return v, message{}, http.StatusOK
}

func (p *Portal) consoleApplication(w http.ResponseWriter, r *request) {
	v, m, status := p.consoleApp(r, r.PathValue("id"))
	if v == nil {
		p.fail(w, r, status, m)
		return
	}
	p.render(w, r, status, "console_application", "console.title_application", v, message{})
}

// consoleRead asks a source authority's node for the consented claims
// again. The source judges the request against the ledger and records it,
// allowed or denied, before it answers; a denial stands in the resident's
// data log as well as in this authority's access records.
func (p *Portal) consoleRead(w http.ResponseWriter, r *request) {
	me := consoleAuthority(r)
	v, m, status := p.consoleApp(r, r.PathValue("id"))
	if v == nil {
		p.fail(w, r, status, m)
		return
	}
	again := func(status int, m message) {
		p.render(w, r, status, "console_application", "console.title_application", v, m)
	}
	if v.Consent == nil || !v.Consent.Standing {
		again(http.StatusConflict, say("err.console_not_standing"))
		return
	}
	i := slices.IndexFunc(v.Sources, func(s readSource) bool { return s.ID == r.PostFormValue("source") })
	if i < 0 {
		again(http.StatusBadRequest, say("err.console_no_source"))
		return
	}
	src := v.Sources[i]
	k, ok := p.cfg.Keys[me]
	if !ok {
		again(http.StatusConflict, say("err.console_not_here"))
		return
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		p.internal(w, r, err)
		return
	}
	req := &service.ReadRequest{ID: id, Subject: v.App.Subject, Service: v.App.Service, Claims: src.claims}
	ctx, cancel := background(r)
	defer cancel()
	res := &readResult{SourceZH: src.NameZH, SourceEN: src.NameEN}
	pkg, err := p.cfg.Node.BackOfficeRead(ctx, me, k, src.ID, req)
	if pr := problemOf(err); pr != nil && pr.Status == http.StatusForbidden {
		if en, zh := ledger.DenyReasonText(pr.Reason); en != "denied" {
			p.log.Info("a back-office read was denied", "authority", me, "source", src.ID, "service", v.App.Service, "reason", pr.Reason)
			res.ReasonZH, res.ReasonEN = zh, en
			v.Result = res
			again(http.StatusForbidden, message{})
			return
		}
	}
	if err != nil {
		p.log.Warn("a back-office read failed", "authority", me, "source", src.ID, "service", v.App.Service, "err", err)
		status := http.StatusBadGateway
		if pr := problemOf(err); pr != nil && pr.Status >= 400 {
			status = pr.Status
		}
		again(status, refusal(err))
		return
	}
	rel, err := p.openRelease(pkg, src.ID, me)
	if err == nil && (rel.Request != base64.RawURLEncoding.EncodeToString(id) || rel.Subject != req.Subject || rel.Service != req.Service) {
		err = errors.New("the released package answers another request")
	}
	if err != nil {
		p.log.Error("a released package was not accepted", "authority", me, "source", src.ID, "err", err)
		again(http.StatusBadGateway, say("err.console_bad_package"))
		return
	}
	dir := p.directory()
	for _, c := range src.claims {
		val, ok := rel.Claims[c.String()]
		if !ok {
			p.log.Error("a released package lacks a claim", "authority", me, "source", src.ID, "claim", c.String())
			again(http.StatusBadGateway, say("err.console_bad_package"))
			return
		}
		vv := valueView{LabelZH: c.Claim, LabelEN: c.Claim, Value: formatValue(val), Verified: true}
		if s, ok := dir.claimSpec(c); ok {
			vv.LabelZH, vv.LabelEN, vv.Sensitive = s.NameZH, s.NameEN, s.Sensitive
		}
		res.Values = append(res.Values, vv)
	}
	res.Allowed, res.Height, res.Consent = true, rel.Height, rel.Consent
	v.Result = res
	p.log.Info("a back-office read was answered", "authority", me, "source", src.ID, "service", v.App.Service, "height", rel.Height)
	again(http.StatusOK, message{})
}

// openRelease checks a released package between two authorities the ledger
// lists.
func (p *Portal) openRelease(pkg, source, reader string) (*service.Release, error) {
	src, _, err := p.cfg.App.Authority(source, 0)
	if err != nil {
		return nil, fmt.Errorf("authority %s: %w", source, err)
	}
	me, _, err := p.cfg.App.Authority(reader, 0)
	if err != nil {
		return nil, fmt.Errorf("authority %s: %w", reader, err)
	}
	return service.OpenRelease(pkg, src, me)
}

// Issuing credentials

// Kinds of claim input. The ledger publishes claim names, not value types;
// the console reads them from the names of the district's claims, as the
// credential types use them.
const (
	kindText   = "text"
	kindNumber = "number"
	kindBool   = "bool"
)

func claimKind(name string) string {
	switch {
	case strings.HasPrefix(name, "age_over_"), strings.HasPrefix(name, "is_"), strings.HasPrefix(name, "has_"):
		return kindBool
	case strings.HasSuffix(name, "_years"), strings.HasSuffix(name, "_count"), strings.HasSuffix(name, "_days"):
		return kindNumber
	}
	return kindText
}

// maxClaimNumber bounds a number typed into a claim; nothing the district
// counts comes near it.
const maxClaimNumber = 1_000_000

// typeOption is a credential type the authority may issue here.
type typeOption struct {
	ID             string
	NameZH, NameEN string
}

// claimInput is one claim's input on the issue form.
type claimInput struct {
	Name           string
	NameZH, NameEN string
	Sensitive      bool
	Kind           string
	Value          string // what was typed, shown again after a refusal
}

// issueView is the issue page.
type issueView struct {
	consoleNav
	Types    []typeOption
	Type     *ledger.CredentialType // the chosen type, or nil
	Inputs   []claimInput
	Days     uint32
	IDNumber string
	DID      string
	Keep     bool
	Result   *issueResult
}

// issueResult is what the page shows after a credential is issued.
type issueResult struct {
	TypeZH, TypeEN string
	List           uint32
	Index          uint64
	ExpiresAt      time.Time
	Delivered      bool
	InboxFull      bool
	Download       string // sealed for the download form; "" once delivered
	Kept           bool
	KeepFailed     bool
}

// issuable lists the types authority may issue from the console. The
// resident identity credential is issued at the counter, after the
// registrar proofed the resident in person.
func (p *Portal) issuable(authority string) ([]ledger.CredentialType, error) {
	au, _, err := p.cfg.App.Authority(authority, 0)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, nil // the account names an authority the ledger lacks
	} else if err != nil {
		return nil, err
	}
	ts, _, err := p.cfg.App.CredentialTypes(0)
	if err != nil {
		return nil, err
	}
	var out []ledger.CredentialType
	for _, t := range ts {
		if t.ID != credential.TypeResidentIdentity && au.HasRole(ledger.RoleIssuerPrefix+t.ID) {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// issueForm builds the issue page for type typ ("" for the first one).
func (p *Portal) issueForm(r *request, typ string) (*issueView, error) {
	ts, err := p.issuable(consoleAuthority(r))
	if err != nil {
		return nil, err
	}
	v := &issueView{consoleNav: consoleNav{"issue"}, Keep: true}
	for i := range ts {
		v.Types = append(v.Types, typeOption{ID: ts[i].ID, NameZH: ts[i].NameZH, NameEN: ts[i].NameEN})
		if ts[i].ID == typ || typ == "" && len(ts) == 1 {
			v.Type = &ts[i]
		}
	}
	if v.Type != nil {
		v.Days = v.Type.MaxValidityDays
		for _, s := range v.Type.Claims {
			v.Inputs = append(v.Inputs, claimInput{Name: s.Name, NameZH: s.NameZH, NameEN: s.NameEN, Sensitive: s.Sensitive, Kind: claimKind(s.Name)})
		}
	}
	return v, nil
}

func (p *Portal) consoleIssuePage(w http.ResponseWriter, r *request) {
	v, err := p.issueForm(r, r.URL.Query().Get("type"))
	if err != nil {
		p.internal(w, r, err)
		return
	}
	if len(v.Types) == 0 {
		p.render(w, r, http.StatusOK, "console_issue", "console.title_issue", v, say("err.console_no_types"))
		return
	}
	p.render(w, r, http.StatusOK, "console_issue", "console.title_issue", v, message{})
}

// parseClaims reads the claim inputs. It returns the claims and, for a
// refusal, words naming the claims that need attention.
func parseClaims(r *request, inputs []claimInput) (map[string]any, message) {
	claims := map[string]any{}
	var missingZH, missingEN, badZH, badEN []string
	for i := range inputs {
		in := &inputs[i]
		raw := strings.TrimSpace(r.PostFormValue("claim_" + in.Name))
		in.Value = raw
		if raw == "" {
			missingZH, missingEN = append(missingZH, in.NameZH), append(missingEN, in.NameEN)
			continue
		}
		switch in.Kind {
		case kindBool:
			switch raw {
			case "yes":
				claims[in.Name] = true
			case "no":
				claims[in.Name] = false
			default:
				badZH, badEN = append(badZH, in.NameZH), append(badEN, in.NameEN)
			}
		case kindNumber:
			n, err := strconv.ParseUint(raw, 10, 32)
			if err != nil || n > maxClaimNumber {
				badZH, badEN = append(badZH, in.NameZH), append(badEN, in.NameEN)
				continue
			}
			claims[in.Name] = int64(n)
		default:
			if len(raw) > 512 || !utf8.ValidString(raw) || strings.ContainsFunc(raw, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
				badZH, badEN = append(badZH, in.NameZH), append(badEN, in.NameEN)
				continue
			}
			claims[in.Name] = raw
		}
	}
	switch {
	case len(missingZH) > 0:
		return nil, words(tr("zh", "err.console_claims_missing")+strings.Join(missingZH, "、"), tr("en", "err.console_claims_missing")+strings.Join(missingEN, ", "))
	case len(badZH) > 0:
		return nil, words(tr("zh", "err.console_claims_bad")+strings.Join(badZH, "、"), tr("en", "err.console_claims_bad")+strings.Join(badEN, ", "))
	}
	return claims, message{}
}

// consoleIssue issues a credential to a registered resident and delivers it
// to their hosted wallet's inbox, or offers it as a file when they keep
// their wallet elsewhere.
func (p *Portal) consoleIssue(w http.ResponseWriter, r *request) {
	me := consoleAuthority(r)
	v, err := p.issueForm(r, r.PostFormValue("type"))
	if err != nil {
		p.internal(w, r, err)
		return
	}
	again := func(status int, m message) {
		p.render(w, r, status, "console_issue", "console.title_issue", v, m)
	}
	if v.Type == nil || v.Type.ID != r.PostFormValue("type") {
		again(http.StatusBadRequest, say("err.console_no_type"))
		return
	}
	ct := v.Type
	v.IDNumber = strings.ToUpper(strings.TrimSpace(r.PostFormValue("id_number")))
	v.DID = strings.TrimSpace(r.PostFormValue("did"))
	v.Keep = r.PostFormValue("keep") == "yes"
	days, daysErr := strconv.ParseUint(strings.TrimSpace(r.PostFormValue("days")), 10, 32)
	if daysErr == nil {
		v.Days = uint32(days)
	}
	claims, m := parseClaims(r, v.Inputs)
	if !m.empty() {
		again(http.StatusBadRequest, m)
		return
	}
	if daysErr != nil || days == 0 || days > uint64(ct.MaxValidityDays) {
		again(http.StatusBadRequest, say("err.console_days"))
		return
	}
	var subject string
	switch {
	case v.IDNumber != "" && v.DID != "":
		again(http.StatusBadRequest, say("err.console_one_resident"))
		return
	case v.IDNumber != "":
		n, err := idnumber.Parse(normalNumber(v.IDNumber))
		if err != nil {
			again(http.StatusBadRequest, say("err.id_number"))
			return
		}
		a, err := p.wallets.ByNumber(n)
		if errors.Is(err, hosted.ErrNoAccount) {
			again(http.StatusNotFound, say("err.console_no_wallet"))
			return
		} else if err != nil {
			p.internal(w, r, err)
			return
		}
		subject = a.DID
	case v.DID != "":
		d, err := did.Parse(v.DID)
		if err != nil {
			again(http.StatusBadRequest, say("err.console_bad_did"))
			return
		}
		subject = d.String()
	default:
		again(http.StatusBadRequest, say("err.console_one_resident"))
		return
	}
	ctx, cancel := background(r)
	defer cancel()
	cred, m, err := p.issue(ctx, me, laneConsole, ct.ID, subject, claims, int(days))
	if err != nil {
		// The error may quote what was typed; the log gets its kind only.
		reason := "not a ledger refusal"
		if pr := problemOf(err); pr != nil {
			reason = pr.Reason
		}
		p.log.Warn("a credential was not issued", "authority", me, "type", ct.ID, "reason", reason)
		again(http.StatusConflict, m)
		return
	}
	res := &issueResult{TypeZH: ct.NameZH, TypeEN: ct.NameEN, Index: cred.StatusIdx, ExpiresAt: cred.ExpiresAt}
	res.List, _ = credential.ListOf(cred.StatusURI, me)
	item, err := json.Marshal(cred)
	if err == nil {
		err = p.wallets.Deliver(subject, item)
	}
	switch {
	case err == nil:
		res.Delivered = true
	case errors.Is(err, hosted.ErrInboxFull):
		res.InboxFull = true
	case !errors.Is(err, hosted.ErrNoAccount):
		p.log.Error("couldn't deliver an issued credential to a hosted wallet", "authority", me, "type", ct.ID, "err", err)
	}
	if !res.Delivered {
		if res.Download, err = p.sealDownload(r, cred); err != nil {
			p.internal(w, r, err)
			return
		}
	}
	if v.Keep {
		if p.cfg.Desk == nil {
			res.KeepFailed = true
		} else if err := p.cfg.Desk.PutRecord(me, subject, ct.ID, claims); err != nil {
			// Its error names the resident's DID; the log gets none of it.
			p.log.Error("couldn't keep an issued credential's register record", "authority", me, "type", ct.ID)
			res.KeepFailed = true
		} else {
			res.Kept = true
		}
	}
	p.log.Info("a credential was issued", "authority", me, "type", ct.ID, "delivered", res.Delivered)
	v.Result = res
	for i := range v.Inputs {
		v.Inputs[i].Value = ""
	}
	v.IDNumber, v.DID = "", ""
	p.render(w, r, http.StatusOK, "console_issue", "console.title_issue", v, message{})
}

// An issued credential offered as a file is not kept on the node: the page
// that offers it carries it sealed (AES-256-GCM) under a key that lives
// only in this process's memory, bound to the caseworker's session and
// expiring after downloadLife. So the download form cannot be replayed from
// another session or after the fact, and the page's source shows nothing
// readable. A restart loses the key, which is the safe direction.
const (
	downloadLife  = 15 * time.Minute
	downloadLabel = "imi/v1/console-download"
)

var downloadKey = sync.OnceValue(func() cipher.AEAD {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		panic(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return a
})

func (p *Portal) sealDownload(r *request, c *wallet.Credential) (string, error) {
	is := credential.Issued{SDJWT: c.SDJWT, Type: c.Type, VCT: c.VCT, Issuer: c.IssuerID, IssuerDID: c.Issuer,
		IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt, StatusURI: c.StatusURI, StatusIdx: uint32(c.StatusIdx)}
	body, err := json.MarshalIndent(is, "", "  ")
	if err != nil {
		return "", err
	}
	plain := binary.BigEndian.AppendUint64(nil, uint64(p.cfg.Now().Add(downloadLife).Unix()))
	plain = append(plain, body...)
	defer clear(plain)
	aead := downloadKey()
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := aead.Seal(nonce, nonce, plain, []byte(downloadLabel+"\x00"+r.sess.id))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

func (p *Portal) openDownload(r *request, blob string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(blob)
	aead := downloadKey()
	if err != nil || len(b) < aead.NonceSize()+aead.Overhead()+8 {
		return nil, errors.New("not a sealed download")
	}
	plain, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], []byte(downloadLabel+"\x00"+r.sess.id))
	if err != nil {
		return nil, err
	}
	if exp := time.Unix(int64(binary.BigEndian.Uint64(plain)), 0); !p.cfg.Now().Before(exp) {
		clear(plain)
		return nil, errors.New("the download expired")
	}
	return plain[8:], nil
}

// consoleDownload hands over an issued credential as a file, for a
// resident whose wallet is not hosted here. It is personal data: the
// response is no-store like every page, and nothing of it is logged.
func (p *Portal) consoleDownload(w http.ResponseWriter, r *request) {
	body, err := p.openDownload(r, r.PostFormValue("credential"))
	if err != nil {
		p.fail(w, r, http.StatusGone, say("err.console_download"))
		return
	}
	defer clear(body)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Disposition", `attachment; filename="credential.json"`)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// Revoking and suspending

// revokeView is the revoke page, with the entry named in its address if
// any.
type revokeView struct {
	consoleNav
	List, Index    string
	Entry          *ledger.StatusEntry
	State          string // valid, revoked, suspended
	TypeZH, TypeEN string
	Action         string
}

// statusRef reads a status list and index as the forms and links carry
// them.
func statusRef(list, index string) (tx.StatusRef, bool) {
	l, err1 := strconv.ParseUint(strings.TrimSpace(list), 10, 32)
	i, err2 := strconv.ParseUint(strings.TrimSpace(index), 10, 32)
	if err1 != nil || err2 != nil || l >= ledger.MaxStatusLists || i >= ledger.StatusListSize {
		return tx.StatusRef{}, false
	}
	return tx.StatusRef{List: uint32(l), Index: uint32(i)}, true
}

func entryState(s byte) string {
	switch s {
	case ledger.StatusValid:
		return "valid"
	case ledger.StatusInvalid:
		return "revoked"
	case ledger.StatusSuspended:
		return "suspended"
	}
	return "unknown"
}

// revokeForm fills the revoke page for list and index, looking the entry up
// when both are given.
func (p *Portal) revokeForm(r *request, list, index string) (*revokeView, message) {
	v := &revokeView{consoleNav: consoleNav{"revoke"}, List: list, Index: index, Action: "revoke"}
	if list == "" && index == "" {
		return v, message{}
	}
	ref, ok := statusRef(list, index)
	if !ok {
		return v, say("err.console_status_ref")
	}
	e, _, err := p.cfg.App.Status(consoleAuthority(r), ref.List, ref.Index, 0)
	if err != nil {
		return v, say("err.console_no_entry")
	}
	v.Entry, v.State = e, entryState(e.Status)
	v.TypeZH, v.TypeEN = p.directory().typeNames(e.Type)
	return v, message{}
}

func (p *Portal) consoleRevokePage(w http.ResponseWriter, r *request) {
	q := r.URL.Query()
	v, m := p.revokeForm(r, q.Get("list"), q.Get("index"))
	status := http.StatusOK
	if !m.empty() {
		status = http.StatusNotFound
	}
	p.render(w, r, status, "console_revoke", "console.title_revoke", v, m)
}

// consoleRevoke revokes, suspends or lifts the suspension of one of the
// authority's credentials. The ledger refuses what cannot be: revocation
// is final.
func (p *Portal) consoleRevoke(w http.ResponseWriter, r *request) {
	me := consoleAuthority(r)
	list, index := r.PostFormValue("list"), r.PostFormValue("index")
	v, m := p.revokeForm(r, list, index)
	action := r.PostFormValue("action")
	v.Action = action
	again := func(status int, m message) {
		p.render(w, r, status, "console_revoke", "console.title_revoke", v, m)
	}
	if !m.empty() {
		again(http.StatusBadRequest, m)
		return
	}
	ref, _ := statusRef(list, index)
	var body tx.Body
	var flash string
	switch action {
	case "revoke":
		if r.PostFormValue("confirm") != "yes" {
			again(http.StatusBadRequest, say("err.console_confirm_revoke"))
			return
		}
		body, flash = &tx.Revoke{StatusRef: ref}, "console.flash_revoked"
	case "suspend":
		body, flash = &tx.Suspend{StatusRef: ref}, "console.flash_suspended"
	case "unsuspend":
		body, flash = &tx.Unsuspend{StatusRef: ref}, "console.flash_unsuspended"
	default:
		again(http.StatusBadRequest, say("err.console_action"))
		return
	}
	ctx, cancel := background(r)
	defer cancel()
	if m, err := p.sign(ctx, me, laneConsole, body); err != nil {
		p.log.Info("a status change was refused", "authority", me, "action", action, "err", err)
		again(http.StatusConflict, m)
		return
	}
	p.log.Info("a credential's status changed", "authority", me, "action", action)
	r.sess.setFlash(flash)
	http.Redirect(w, r.Request, fmt.Sprintf("/console/revoke?list=%d&index=%d", ref.List, ref.Index), http.StatusSeeOther)
}

// Access records

// accessPageSize is how many access records one page shows.
const accessPageSize = 50

// accessRow is one access record in the authority's list.
type accessRow struct {
	accessEntry
	Short string // the subject's pseudonym, shortened
}

// accessView is one page of access records.
type accessView struct {
	consoleNav
	Rows  []accessRow
	Older int64  // the next page shows records below this height; 0: none
	More  string // more records of the same block, after this cursor
	First bool   // this is the newest page
}

// accessPage returns authority's access records below height before (0:
// all), newest first: the newest blocks whose records fit on one page.
//
// The ledger lists an authority's records oldest first, from a height or
// after a cursor. The page's first height is found by bisection, each step
// counting at most n+1 records, so a page costs a few dozen short reads
// however long the log is. A block with more records than a page is shown
// by itself, in pages that follow the ledger's cursor (more).
func (p *Portal) accessPage(authority string, before int64, n int) (rows []ledger.Access, older int64, more string, err error) {
	top := before
	if top <= 0 {
		top = p.cfg.App.LastBlock().Height + 1
	}
	// count is the number of records from height s below top, at most n+1.
	count := func(s int64) (int, error) {
		recs, _, err := p.cfg.App.AuthorityAccess(authority, s, n+1, 0)
		if err != nil {
			return 0, err
		}
		return sort.Search(len(recs), func(i int) bool { return recs[i].At.Height >= top }), nil
	}
	lo, hi := int64(0), top
	for lo < hi {
		mid := lo + (hi-lo)/2
		c, err := count(mid)
		if err != nil {
			return nil, 0, "", err
		}
		if c <= n {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if lo == top && top > 0 {
		c, err := count(top - 1)
		if err != nil {
			return nil, 0, "", err
		}
		if c > n {
			return p.accessBlock(authority, blockCursor(top-1), n)
		}
	}
	recs, _, err := p.cfg.App.AuthorityAccess(authority, lo, n, 0)
	if err != nil {
		return nil, 0, "", err
	}
	for _, a := range recs {
		if a.At.Height < top {
			rows = append(rows, a)
		}
	}
	slices.Reverse(rows)
	if lo > 0 {
		first, _, err := p.cfg.App.AuthorityAccess(authority, 0, 1, 0)
		if err != nil {
			return nil, 0, "", err
		}
		if len(first) > 0 && first[0].At.Height < lo {
			older = lo
		}
	}
	return rows, older, "", nil
}

// blockCursor is a cursor just before every record of block h: the ledger's
// cursors begin with the height in 16 hex digits and a slash, and the
// cursor is followed by a zero byte when the next page is read.
func blockCursor(h int64) string { return fmt.Sprintf("%016x", h) }

// cursorHeight reads the block height a cursor starts with.
func cursorHeight(c string) (int64, bool) {
	if len(c) < 16 || len(c) > 512 {
		return 0, false
	}
	h, err := strconv.ParseInt(c[:16], 16, 64)
	return h, err == nil && h >= 0
}

// accessBlock returns the records of one block after cursor.
func (p *Portal) accessBlock(authority, cursor string, n int) (rows []ledger.Access, older int64, more string, err error) {
	h, ok := cursorHeight(cursor)
	if !ok {
		return nil, 0, "", errors.New("bad cursor")
	}
	recs, next, _, err := p.cfg.App.AuthorityAccessAfter(authority, cursor, n, 0)
	if err != nil {
		return nil, 0, "", err
	}
	for _, a := range recs {
		if a.At.Height == h {
			rows = append(rows, a)
		}
	}
	if next != "" && len(rows) == len(recs) {
		peek, _, _, err := p.cfg.App.AuthorityAccessAfter(authority, next, 1, 0)
		if err != nil {
			return nil, 0, "", err
		}
		if len(peek) > 0 && peek[0].At.Height == h {
			more = next
		}
	}
	return rows, h, more, nil
}

func (p *Portal) consoleAccess(w http.ResponseWriter, r *request) {
	me := consoleAuthority(r)
	q := r.URL.Query()
	v := &accessView{consoleNav: consoleNav{"access"}}
	var recs []ledger.Access
	var err error
	switch {
	case q.Get("after") != "":
		if _, ok := cursorHeight(q.Get("after")); !ok {
			p.fail(w, r, http.StatusBadRequest, say("err.console_page"))
			return
		}
		recs, v.Older, v.More, err = p.accessBlock(me, q.Get("after"), accessPageSize)
	default:
		var before int64
		if b := q.Get("before"); b != "" {
			if before, err = strconv.ParseInt(b, 10, 64); err != nil || before <= 0 {
				p.fail(w, r, http.StatusBadRequest, say("err.console_page"))
				return
			}
		}
		v.First = before == 0
		recs, v.Older, v.More, err = p.accessPage(me, before, accessPageSize)
	}
	if err != nil {
		p.internal(w, r, err)
		return
	}
	dir := p.directory()
	for _, a := range recs {
		v.Rows = append(v.Rows, accessRow{accessEntry: dir.accessEntry(a), Short: shortPseudonym(a.Subject)})
	}
	p.render(w, r, http.StatusOK, "console_access", "console.title_access", v, message{})
}

// shortPseudonym shows enough of a pseudonym to tell records apart.
func shortPseudonym(s string) string {
	if len(s) <= 16 {
		return s
	}
	return s[:16] + "…"
}

// Services

// serviceView is one of the authority's services as published.
type serviceView struct {
	ledger.Service
	RequiredZH, RequiredEN string
	OptionalZH, OptionalEN string
	Standing               bool
	// What the publish form shows: what was typed after a refusal.
	FormPurposeZH, FormPurposeEN string
	FormRetention, FormStanding  string
	Open                         bool // the form is shown open
}

// servicesView is the services page.
type servicesView struct {
	consoleNav
	Services                  []serviceView
	MaxRetention, MaxStanding int
}

// Limits the ledger sets on a service (ledger.checkService).
const (
	maxPurposeBytes  = 600
	maxRetentionDays = 100 * 366
	maxStandingDays  = 10 * 366
)

func (p *Portal) consoleServicesView(r *request) ([]serviceView, error) {
	me := consoleAuthority(r)
	ss, _, err := p.cfg.App.Services(0)
	if err != nil {
		return nil, err
	}
	dir := p.directory()
	var out []serviceView
	for _, s := range ss {
		if s.Authority != me {
			continue
		}
		v := serviceView{Service: s, Standing: slices.Contains(s.Modes, tx.ModeStanding),
			FormPurposeZH: s.PurposeZH, FormPurposeEN: s.PurposeEN,
			FormRetention: strconv.FormatUint(uint64(s.RetentionDays), 10), FormStanding: strconv.FormatUint(uint64(s.MaxStandingDays), 10)}
		v.RequiredZH, v.RequiredEN = dir.claimNames(s.Required)
		v.OptionalZH, v.OptionalEN = dir.claimNames(s.Optional)
		out = append(out, v)
	}
	return out, nil
}

func (p *Portal) consoleServices(w http.ResponseWriter, r *request) {
	ss, err := p.consoleServicesView(r)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "console_services", "console.title_services",
		&servicesView{consoleNav{"services"}, ss, maxRetentionDays, maxStandingDays}, message{})
}

// oneLine folds what a textarea sends into one line: the ledger takes no
// control characters in a purpose.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// consolePublish publishes a new version of one of the authority's services
// with a changed purpose, retention or standing-consent term. Consents name
// the version they were given for, so every resident must consent again.
func (p *Portal) consolePublish(w http.ResponseWriter, r *request) {
	me := consoleAuthority(r)
	ss, err := p.consoleServicesView(r)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	again := func(status int, m message) {
		p.render(w, r, status, "console_services", "console.title_services",
			&servicesView{consoleNav{"services"}, ss, maxRetentionDays, maxStandingDays}, m)
	}
	i := slices.IndexFunc(ss, func(s serviceView) bool { return s.ID == r.PostFormValue("service") })
	if i < 0 {
		again(http.StatusNotFound, say("err.no_service"))
		return
	}
	v := &ss[i]
	v.Open = true
	v.FormPurposeZH, v.FormPurposeEN = oneLine(r.PostFormValue("purpose_zh")), oneLine(r.PostFormValue("purpose_en"))
	v.FormRetention, v.FormStanding = strings.TrimSpace(r.PostFormValue("retention_days")), strings.TrimSpace(r.PostFormValue("max_standing_days"))
	body := v.RegisterService
	body.PurposeZH, body.PurposeEN = v.FormPurposeZH, v.FormPurposeEN
	if body.PurposeZH == "" || body.PurposeEN == "" || len(body.PurposeZH) > maxPurposeBytes || len(body.PurposeEN) > maxPurposeBytes || !utf8.ValidString(body.PurposeZH+body.PurposeEN) {
		again(http.StatusBadRequest, say("err.console_purpose"))
		return
	}
	ret, err := strconv.ParseUint(v.FormRetention, 10, 32)
	if err != nil || ret == 0 || ret > maxRetentionDays {
		again(http.StatusBadRequest, say("err.console_retention"))
		return
	}
	body.RetentionDays = uint32(ret)
	if v.Standing {
		sd, err := strconv.ParseUint(v.FormStanding, 10, 32)
		if err != nil || sd == 0 || sd > maxStandingDays {
			again(http.StatusBadRequest, say("err.console_standing_days"))
			return
		}
		body.MaxStandingDays = uint32(sd)
	}
	if body.PurposeZH == v.PurposeZH && body.PurposeEN == v.PurposeEN && body.RetentionDays == v.RetentionDays && body.MaxStandingDays == v.MaxStandingDays {
		// A new version with nothing changed would still make every
		// resident consent again.
		again(http.StatusBadRequest, say("err.console_unchanged"))
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		again(http.StatusBadRequest, say("err.console_confirm_publish"))
		return
	}
	ctx, cancel := background(r)
	defer cancel()
	if m, err := p.sign(ctx, me, laneConsole, &body); err != nil {
		p.log.Info("a service version was refused", "authority", me, "service", body.ID, "err", err)
		again(http.StatusConflict, m)
		return
	}
	p.log.Info("a service version was published", "authority", me, "service", body.ID)
	r.sess.setFlash("console.flash_published")
	http.Redirect(w, r.Request, "/console/services", http.StatusSeeOther)
}
