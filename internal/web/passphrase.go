package web

import (
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/imi-city/imi/internal/hosted"
)

func init() {
	routeTable = append(routeTable,
		route{"GET /me/passphrase", resident, (*Portal).passphrasePage},
		route{"POST /me/passphrase", resident, (*Portal).changePassphrase},
	)
}

func (p *Portal) passphrasePage(w http.ResponseWriter, r *request) {
	if r.sess.wardOf() != nil {
		p.fail(w, r, http.StatusConflict, say("err.own_wallet_only"))
		return
	}
	p.render(w, r, http.StatusOK, "passphrase", "title.passphrase", nil, message{})
}

// changePassphrase wraps the wallet's key under a new passphrase. Open
// sessions go on (the key is the same); the old passphrase stops working.
func (p *Portal) changePassphrase(w http.ResponseWriter, r *request) {
	if r.sess.wardOf() != nil {
		p.fail(w, r, http.StatusConflict, say("err.own_wallet_only"))
		return
	}
	again := func(status int, m message) { p.render(w, r, status, "passphrase", "title.passphrase", nil, m) }
	cur, next, again2 := []byte(r.PostFormValue("current")), []byte(r.PostFormValue("new")), r.PostFormValue("new2")
	defer clear(cur)
	defer clear(next)
	switch {
	case utf8.RuneCount(next) < counterMinPassphrase || len(next) > counterMaxPassphrase:
		again(http.StatusBadRequest, say("err.passphrase_length"))
		return
	case string(next) != again2:
		again(http.StatusBadRequest, say("err.passphrase_mismatch"))
		return
	case string(next) == string(cur):
		again(http.StatusBadRequest, say("err.passphrase_same"))
		return
	}
	if !p.withCurrentPassphrase(w, r, again, func(account string) error {
		return p.wallets.ChangePassphrase(account, cur, next)
	}) {
		return
	}
	p.log.Info("a resident changed their passphrase")
	r.sess.setFlash("flash.passphrase_changed")
	http.Redirect(w, r.Request, "/me", http.StatusSeeOther)
}

// Erasing a hosted wallet (PIPL Art. 47): the sealed wallet, its key, its
// inbox and its index are deleted, after which nothing on the node opens
// or finds them; the chain keeps only pseudonymous records. A resident with
// active consents is asked to withdraw them first: once the wallet is gone
// its pseudonyms can sign nothing, so those consents could no longer be
// withdrawn.

func init() {
	routeTable = append(routeTable,
		route{"GET /me/erase", resident, (*Portal).erasePage},
		route{"POST /me/erase", resident, (*Portal).erase},
	)
}

// activeConsents counts the wallet's consents in force now.
func (p *Portal) activeConsents(r *request) (int, error) {
	u, err := p.walletOf(r)
	if err != nil {
		return 0, err
	}
	defer u.wipe()
	now := p.cfg.App.LastBlock().Time
	n := 0
	for _, psn := range p.pseudonyms(u.contents, p.directory()) {
		cs, _, err := p.cfg.App.Consents(psn, 0)
		if err != nil {
			return 0, err
		}
		for i := range cs {
			if consentState(&cs[i], now) == "active" {
				n++
			}
		}
	}
	return n, nil
}

func (p *Portal) erasePage(w http.ResponseWriter, r *request) {
	if r.sess.wardOf() != nil {
		p.fail(w, r, http.StatusConflict, say("err.own_wallet_only"))
		return
	}
	n, err := p.activeConsents(r)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "erase", "title.erase", struct{ Active int }{n}, message{})
}

func (p *Portal) erase(w http.ResponseWriter, r *request) {
	if r.sess.wardOf() != nil {
		p.fail(w, r, http.StatusConflict, say("err.own_wallet_only"))
		return
	}
	n, err := p.activeConsents(r)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	again := func(status int, m message) {
		p.render(w, r, status, "erase", "title.erase", struct{ Active int }{n}, m)
	}
	if n > 0 {
		again(http.StatusConflict, say("err.erase_consents"))
		return
	}
	if r.PostFormValue("understood") != "yes" {
		again(http.StatusBadRequest, say("err.erase_confirm"))
		return
	}
	pass := []byte(r.PostFormValue("passphrase"))
	defer clear(pass)
	if !p.withCurrentPassphrase(w, r, again, func(account string) error {
		return p.wallets.Delete(account, pass)
	}) {
		return
	}
	p.log.Info("a resident erased their hosted wallet")
	p.sessions.end(w, r.sess)
	p.render(w, &request{Request: r.Request, lang: r.lang}, http.StatusOK, "erased", "title.erased", nil, message{})
}

// withCurrentPassphrase runs act, which checks the signed-in resident's
// current passphrase (one Argon2id run), within a limit on wrong tries per
// wallet (a session left open on a shared computer must not let anyone try
// passphrases without end) and the queue of Argon2id runs. It answers a
// refusal itself and reports whether act succeeded.
func (p *Portal) withCurrentPassphrase(w http.ResponseWriter, r *request, again func(int, message), act func(account string) error) bool {
	account := r.sess.resident.account
	who := "passphrase|" + account
	if p.tries.blocked(who) {
		again(http.StatusTooManyRequests, say("err.locked"))
		return false
	}
	release, ok := p.argon2Turn()
	if !ok {
		again(http.StatusServiceUnavailable, say("err.busy"))
		return false
	}
	defer release()
	switch err := act(account); {
	case errors.Is(err, hosted.ErrWrongPassphrase):
		p.tries.fail(who)
		again(http.StatusUnauthorized, say("err.passphrase_current"))
		return false
	case err != nil:
		p.internal(w, r, err)
		return false
	}
	p.tries.forget(who)
	return true
}
