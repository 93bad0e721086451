package web

import (
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/wallet"
)

// residentSession is a signed-in resident. The wallet is kept sealed under
// a key only the browser's cookie carries.
type residentSession struct {
	account string
	did     string
	name    string // shown in the header; kept in memory only
	blob    []byte
	ward    *wardSession // set while acting as a guardian
}

func init() {
	routeTable = append(routeTable,
		route{"GET /signin", anyone, (*Portal).signInPage},
		route{"POST /signin", anyone, (*Portal).signIn},
		route{"POST /signout", anyone, (*Portal).signOut},
		route{"GET /me", resident, (*Portal).credentials},
		route{"GET /me/services", resident, (*Portal).servicesPage},
		route{"GET /me/consents", resident, (*Portal).consentsPage},
		route{"POST /me/consents/revoke", resident, (*Portal).revokeConsent},
		route{"GET /me/log", resident, (*Portal).logPage},
	)
}

func (p *Portal) signInPage(w http.ResponseWriter, r *request) {
	p.anonymous(w, r)
	p.render(w, r, http.StatusOK, "signin", "title.signin", nil, message{})
}

func (p *Portal) signIn(w http.ResponseWriter, r *request) {
	// The number is kept for another try (the page is no-store); the
	// passphrase and code are not.
	again := func(status int, m message) {
		p.render(w, r, status, "signin", "title.signin", struct{ IDNumber string }{strings.TrimSpace(r.PostFormValue("id_number"))}, m)
	}
	n, m, status := p.postedNumber(r)
	if status != 0 {
		again(status, m)
		return
	}
	u, err := p.unlockWallet(r, n)
	if err != nil {
		m, status := signInRefusal(err)
		if status == http.StatusInternalServerError {
			p.log.Error("hosted wallet sign-in failed", "err", err)
		}
		again(status, m)
		return
	}
	defer u.wipe()
	if err := p.collectInbox(u); err != nil {
		p.log.Warn("couldn't collect a hosted wallet's inbox", "err", err)
	}
	s, _, err := p.sessions.start(w, r.sess, func(s *session, k []byte) error {
		rs := &residentSession{account: u.account.ID, did: u.contents.DID, name: displayName(u.contents, p.cfg.Now())}
		s.resident = rs
		return p.keepWallet(rs, k, u)
	})
	if err != nil {
		p.log.Error("couldn't seal a session's wallet", "err", err)
		again(http.StatusInternalServerError, say("err.internal"))
		return
	}
	s.setFlash("flash.signed_in")
	http.Redirect(w, r.Request, "/me", http.StatusSeeOther)
}

// displayName is the resident's name from their identity credential, for
// the page header only.
func displayName(c *wallet.Contents, now time.Time) string {
	for _, h := range service.Held(c, now) {
		if h.Type == credential.TypeResidentIdentity {
			f, _ := h.Claims["family_name"].(string)
			g, _ := h.Claims["given_name"].(string)
			return f + g
		}
	}
	return ""
}

// credView is one credential as the resident sees it.
type credView struct {
	Type, TypeZH, TypeEN string
	IssuerZH, IssuerEN   string
	IssuedAt, ExpiresAt  time.Time
	Status               string // valid, revoked, suspended, expired, unknown
	Claims               []claimView
}

type claimView struct {
	NameZH, NameEN string
	Value          string
	Sensitive      bool
}

func (p *Portal) credentials(w http.ResponseWriter, r *request) {
	u, ok := p.wallet(w, r)
	if !ok {
		return
	}
	defer u.wipe()
	// A credential issued while the resident is signed in shows at once.
	if err := p.collectInbox(u); err != nil {
		p.log.Warn("couldn't collect a hosted wallet's inbox", "err", err)
	}
	now := p.cfg.Now()
	dir := p.directory()
	held := service.Held(u.contents, now)
	var out []credView
	for i, c := range u.contents.Credentials {
		v := credView{Type: c.Type, IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt, Status: p.liveStatus(&c, now)}
		v.IssuerZH, v.IssuerEN = dir.authorityNames(c.IssuerID)
		ct := dir.types[c.Type]
		if ct != nil {
			v.TypeZH, v.TypeEN = ct.NameZH, ct.NameEN
		}
		for _, h := range held {
			if h.Index != i {
				continue
			}
			for _, spec := range typeClaims(ct, h.Claims) {
				v.Claims = append(v.Claims, claimView{NameZH: spec.NameZH, NameEN: spec.NameEN, Value: formatValue(h.Claims[spec.Name]), Sensitive: spec.Sensitive})
			}
		}
		out = append(out, v)
	}
	p.render(w, r, http.StatusOK, "credentials", "title.credentials", struct {
		DID         string
		Credentials []credView
	}{u.contents.DID, out}, message{})
}

// liveStatus reads a credential's status bit from the committed state.
func (p *Portal) liveStatus(c *wallet.Credential, now time.Time) string {
	if !now.Before(c.ExpiresAt) {
		return "expired"
	}
	list, err := credential.ListOf(c.StatusURI, c.IssuerID)
	if err != nil {
		return "unknown"
	}
	e, _, err := p.cfg.App.Status(c.IssuerID, list, uint32(c.StatusIdx), 0)
	if err != nil {
		return "unknown"
	}
	return entryState(e.Status)
}

func (p *Portal) servicesPage(w http.ResponseWriter, r *request) {
	svcs, _, err := p.cfg.App.Services(0)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	dir := p.directory()
	type svcView struct {
		ledger.Service
		AuthorityZH, AuthorityEN string
		Open                     bool // this node takes its applications
	}
	var out []svcView
	for _, s := range svcs {
		v := svcView{Service: s, Open: p.cfg.Desk != nil && p.cfg.Desk.Holds(s.Authority)}
		v.AuthorityZH, v.AuthorityEN = dir.authorityNames(s.Authority)
		out = append(out, v)
	}
	p.render(w, r, http.StatusOK, "services", "title.services", out, message{})
}

// consentView is one consent as the resident sees it.
type consentView struct {
	ledger.Consent
	ServiceZH, ServiceEN     string
	AuthorityZH, AuthorityEN string
	ClaimsZH, ClaimsEN       string
	State                    string // active, expired, revoked, used
}

func (p *Portal) consentsPage(w http.ResponseWriter, r *request) {
	u, ok := p.wallet(w, r)
	if !ok {
		return
	}
	defer u.wipe()
	dir := p.directory()
	now := p.cfg.App.LastBlock().Time
	var out []consentView
	for _, psn := range p.pseudonyms(u.contents, dir) {
		cs, _, err := p.cfg.App.Consents(psn, 0)
		if err != nil {
			p.internal(w, r, err)
			return
		}
		for _, c := range cs {
			v := consentView{Consent: c, State: consentState(&c, now)}
			v.ServiceZH, v.ServiceEN = dir.serviceNames(c.Service)
			v.AuthorityZH, v.AuthorityEN = dir.authorityNames(c.Authority)
			v.ClaimsZH, v.ClaimsEN = dir.claimNames(c.Claims)
			out = append(out, v)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Granted.Height > out[j].Granted.Height })
	p.render(w, r, http.StatusOK, "consents", "title.consents", out, message{})
}

func consentState(c *ledger.Consent, now time.Time) string {
	switch {
	case c.Status != ledger.ConsentActive:
		return c.Status
	case !now.Before(c.Until):
		return "expired"
	}
	return "active"
}

func (p *Portal) revokeConsent(w http.ResponseWriter, r *request) {
	u, ok := p.wallet(w, r)
	if !ok {
		return
	}
	defer u.wipe()
	svc, _, err := p.cfg.App.Service(r.PostFormValue("service"), 0)
	if err != nil {
		p.fail(w, r, http.StatusBadRequest, say("err.no_service"))
		return
	}
	secret, ok := pseudonymSecret(u.contents)
	if !ok {
		p.fail(w, r, http.StatusBadRequest, say("err.no_consent"))
		return
	}
	psn, err := pseudonymOf(secret, svc.Authority)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	if c, _, err := p.cfg.App.Consent(psn, svc.ID, 0); err != nil || c.Status != ledger.ConsentActive {
		p.fail(w, r, http.StatusConflict, say("err.no_consent"))
		return
	}
	ctx, cancel := background(r)
	defer cancel()
	guardian, err := p.guardianFor(r)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	if guardian != nil {
		defer guardian.Contents.Wipe()
	}
	raw, err := service.Revoke(secret, svc.Authority, svc.ID, p.cfg.App.ChainID(), p.cfg.App.NextSeq(psn, 0), guardian)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	if m, err := p.commit(ctx, raw); err != nil {
		p.log.Warn("a consent revocation was refused", "err", err)
		p.fail(w, r, http.StatusConflict, m)
		return
	}
	r.sess.setFlash("flash.revoked")
	http.Redirect(w, r.Request, "/me/consents", http.StatusSeeOther)
}

func (p *Portal) logPage(w http.ResponseWriter, r *request) {
	u, ok := p.wallet(w, r)
	if !ok {
		return
	}
	defer u.wipe()
	dir := p.directory()
	var out []accessEntry
	for _, psn := range p.pseudonyms(u.contents, dir) {
		as, _, err := p.cfg.App.AccessLog(psn, 0)
		if err != nil {
			p.internal(w, r, err)
			return
		}
		for _, a := range as {
			out = append(out, dir.accessEntry(a))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Height > out[j].At.Height })
	p.render(w, r, http.StatusOK, "log", "title.log", out, message{})
}

// pseudonyms are the wallet's pseudonyms towards every authority.
func (p *Portal) pseudonyms(c *wallet.Contents, dir *directory) []string {
	secret, ok := pseudonymSecret(c)
	if !ok {
		return nil
	}
	var out []string
	for _, id := range dir.authorityIDs {
		psn, err := pseudonymOf(secret, id)
		if err != nil {
			continue
		}
		out = append(out, psn)
	}
	return out
}

// pseudonymSecret returns the wallet's secret without making one: a wallet
// that never consented has no pseudonyms to look up.
func pseudonymSecret(c *wallet.Contents) ([]byte, bool) {
	if _, ok := c.Extra[service.PseudonymSecretField]; !ok {
		return nil, false
	}
	s, _, err := service.PseudonymSecret(c)
	return s, err == nil
}

func (p *Portal) internal(w http.ResponseWriter, r *request, err error) {
	p.log.Error("page failed", "path", r.URL.Path, "err", err)
	p.fail(w, r, http.StatusInternalServerError, say("err.internal"))
}
