package web

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

func init() {
	routeTable = append(routeTable,
		route{"POST /me/services/apply", resident, (*Portal).openApplication},
		route{"GET /me/applications/{id}", resident, (*Portal).applicationPage},
		route{"POST /me/applications/{id}", resident, (*Portal).answerApplication},
	)
}

// maxOpenedPerSession bounds the applications one session opens.
const maxOpenedPerSession = 50

// maxTyped bounds a value the resident types in.
const maxTyped = 512

// openApplication opens an application at the service's authority. The
// application id in the URL that follows is random and names nobody.
func (p *Portal) openApplication(w http.ResponseWriter, r *request) {
	svc, _, err := p.cfg.App.Service(r.PostFormValue("service"), 0)
	if err != nil {
		p.fail(w, r, http.StatusBadRequest, say("err.no_service"))
		return
	}
	if p.cfg.Desk == nil || !p.cfg.Desk.Holds(svc.Authority) {
		p.fail(w, r, http.StatusConflict, say("err.not_here"))
		return
	}
	// Each open application is a record in the off-chain store until it
	// expires: a session may open only so many.
	r.sess.mu.Lock()
	r.sess.opened++
	opened := r.sess.opened
	r.sess.mu.Unlock()
	if opened > maxOpenedPerSession {
		p.fail(w, r, http.StatusTooManyRequests, say("err.too_many_applications"))
		return
	}
	a, err := p.cfg.Desk.Open(svc.Authority, svc.ID)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	http.Redirect(w, r.Request, "/me/applications/"+a.ID, http.StatusSeeOther)
}

// formView is the filled form as the resident reviews it.
type formView struct {
	App                      *service.Application
	Service                  *ledger.Service
	AuthorityZH, AuthorityEN string
	Fields                   []fieldView
	Sensitive                []fieldView
	Missing                  []string // names, in the reader's language
	Modes                    []string
	Standing, OneTime        bool
	MaxDays                  uint32
	Retention                uint32
	Done                     bool
	Result                   *service.Application
}

type fieldView struct {
	consent.Field
	Label              string
	Value              string
	SourceZH, SourceEN string
	Typed              bool // no verified value: the resident may type one
}

// prepare reloads the application and fills its form from the wallet.
func (p *Portal) prepare(r *request, id string) (*formView, *consent.Form, *unlocked, message, int) {
	if p.cfg.Desk == nil {
		return nil, nil, nil, say("err.no_application"), http.StatusNotFound
	}
	a, err := p.cfg.Desk.Get(id)
	if err != nil {
		return nil, nil, nil, say("err.no_application"), http.StatusNotFound
	}
	if a.Status != service.StatusOpen {
		return &formView{App: a, Done: true, Result: a}, nil, nil, message{}, http.StatusOK
	}
	svc, _, err := p.cfg.App.Service(a.Service, 0)
	if err != nil || svc.Version != a.Version {
		return nil, nil, nil, say("err.service_changed"), http.StatusConflict
	}
	u, err := p.walletOf(r)
	if err != nil {
		return nil, nil, nil, say("err.session_expired"), http.StatusUnauthorized
	}
	// The form is filled from the newest credentials, delivered ones too.
	if err := p.collectInbox(u); err != nil {
		p.log.Warn("couldn't collect a hosted wallet's inbox", "err", err)
	}
	dir := p.directory()
	types := make([]ledger.CredentialType, 0, len(dir.types))
	for _, t := range dir.types {
		types = append(types, *t)
	}
	form := consent.Prefill(&svc.RegisterService, svc.Version, service.Held(u.contents, p.cfg.Now()), service.Sensitivity(types))
	v := &formView{App: a, Service: svc, Modes: svc.Modes, MaxDays: svc.MaxStandingDays, Retention: svc.RetentionDays,
		Standing: slices.Contains(svc.Modes, tx.ModeStanding), OneTime: slices.Contains(svc.Modes, tx.ModeOneTime)}
	v.AuthorityZH, v.AuthorityEN = dir.authorityNames(svc.Authority)
	for _, f := range form.Fields {
		fv := fieldView{Field: f, Label: pick(r.lang, f.LabelZH, f.LabelEN), Value: formatValue(f.Value)}
		fv.SourceZH, fv.SourceEN = dir.authorityNames(f.Source)
		fv.Typed = !f.Verified && !f.Required
		if f.Verified && f.Sensitive && f.Claim != (tx.ClaimRef{}) {
			v.Sensitive = append(v.Sensitive, fv)
		} else {
			v.Fields = append(v.Fields, fv)
		}
	}
	for _, m := range form.Missing {
		if s, ok := dir.claimSpec(m); ok {
			v.Missing = append(v.Missing, pick(r.lang, s.NameZH, s.NameEN))
		} else {
			v.Missing = append(v.Missing, m.String())
		}
	}
	return v, form, u, message{}, http.StatusOK
}

func pick(l, zh, en string) string {
	if l == "en" && en != "" || zh == "" {
		return en
	}
	return zh
}

func (p *Portal) applicationPage(w http.ResponseWriter, r *request) {
	v, _, u, m, status := p.prepare(r, r.PathValue("id"))
	if u != nil {
		defer u.wipe()
	}
	if v == nil {
		p.fail(w, r, status, m)
		return
	}
	p.render(w, r, status, "apply", "title.apply", v, message{})
}

func (p *Portal) answerApplication(w http.ResponseWriter, r *request) {
	id := r.PathValue("id")
	v, form, u, m, status := p.prepare(r, id)
	if u != nil {
		defer u.wipe()
	}
	if v == nil {
		p.fail(w, r, status, m)
		return
	}
	if v.Done {
		p.fail(w, r, http.StatusConflict, say("err.application_done"))
		return
	}
	again := func(status int, m message) { p.render(w, r, status, "apply", "title.apply", v, m) }
	if r.PostFormValue("action") == "decline" {
		if err := p.cfg.Desk.Decline(id); err != nil {
			again(http.StatusConflict, say("err.application_done"))
			return
		}
		r.sess.setFlash("flash.declined")
		http.Redirect(w, r.Request, "/me/services", http.StatusSeeOther)
		return
	}
	if len(v.Missing) > 0 {
		again(http.StatusConflict, say("err.missing_claims"))
		return
	}
	ch := service.Choice{Typed: map[string]string{}}
	switch mode := r.PostFormValue("mode"); {
	case mode == tx.ModeStanding && v.Standing:
		d, err := strconv.ParseUint(r.PostFormValue("days"), 10, 32)
		if err != nil || d == 0 || d > uint64(v.MaxDays) {
			again(http.StatusBadRequest, say("err.days"))
			return
		}
		ch.Mode, ch.Days = mode, uint32(d)
	case mode == tx.ModeOneTime && v.OneTime:
		ch.Mode = mode
	default:
		again(http.StatusBadRequest, say("err.mode"))
		return
	}
	sensitiveOK := r.PostFormValue("sensitive_ok") == "yes"
	for _, f := range form.Fields {
		share := r.PostFormValue("share_"+f.Name) == "yes"
		switch {
		case f.Verified && f.Sensitive && f.Claim != (tx.ClaimRef{}):
			if f.Required && !sensitiveOK {
				again(http.StatusBadRequest, say("err.sensitive_required"))
				return
			}
			if !f.Required && (!sensitiveOK || !share) {
				ch.Omit = append(ch.Omit, f.Name)
			}
		case f.Verified:
			if !f.Required && !share {
				ch.Omit = append(ch.Omit, f.Name)
			}
		case !f.Required:
			t := strings.TrimSpace(r.PostFormValue("typed_" + f.Name))
			if len(t) > maxTyped {
				again(http.StatusBadRequest, say("err.typed_too_long"))
				return
			}
			if t == "" {
				ch.Omit = append(ch.Omit, f.Name)
			} else {
				ch.Typed[f.Name] = t
			}
		}
	}
	if r.PostFormValue("agree") != "yes" {
		again(http.StatusBadRequest, say("err.agree"))
		return
	}
	secret, created, err := service.PseudonymSecret(u.contents)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	if created {
		// Saved before anything is signed with it: a pseudonym the wallet
		// could not derive again would hide the consent from its owner.
		if err := p.saveWallet(r, u); err != nil {
			p.internal(w, r, err)
			return
		}
	}
	if ch.Guardian, err = p.guardianFor(r); err != nil {
		p.internal(w, r, err)
		return
	}
	if ch.Guardian != nil {
		defer ch.Guardian.Contents.Wipe()
	}
	psn, err := pseudonymOf(secret, v.Service.Authority)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	ch.Seq = p.cfg.App.NextSeq(psn, 0)
	dir := p.directory()
	kem := map[string][]byte{}
	for id, a := range dir.authorities {
		kem[id] = a.KEMKey
	}
	sub, err := service.Approve(u.contents, secret, v.App, v.Service, form, kem, p.cfg.App.ChainID(), ch, p.cfg.Now())
	if err != nil {
		p.internal(w, r, err)
		return
	}
	ctx, cancel := background(r)
	defer cancel()
	res, err := p.cfg.Desk.Submit(ctx, id, sub)
	if err != nil {
		var rej *service.Rejection
		var denied *service.Denied
		switch {
		case errors.As(err, &rej):
			p.log.Info("an application was refused", "service", v.Service.ID, "reason", rej.EN)
			again(http.StatusConflict, words(rej.ZH, rej.EN))
			return
		case errors.As(err, &denied):
			// The ledger judged the read itself and refused it; the
			// refusal is in the resident's log.
			p.log.Info("an application's read was denied by the ledger", "service", v.Service.ID, "reason", denied.Reason)
			en, zh := ledger.DenyReasonText(denied.Reason)
			again(http.StatusForbidden, words(zh, en))
			return
		case errors.Is(err, service.ErrClosed):
			p.fail(w, r, http.StatusConflict, say("err.application_done"))
			return
		case errors.Is(err, service.ErrNoApplication):
			p.fail(w, r, http.StatusNotFound, say("err.no_application"))
			return
		}
		p.log.Warn("an application failed", "service", v.Service.ID, "err", err)
		again(http.StatusServiceUnavailable, say("err.ledger_busy"))
		return
	}
	v.Done, v.Result = true, res
	p.render(w, r, http.StatusOK, "apply", "title.apply", v, message{})
}
