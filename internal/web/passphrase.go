package web

import (
	"errors"
	"net/http"
	"time"
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
	// A session left open on a shared computer must not let anyone try
	// passphrases without limit.
	who := "passphrase|" + r.sess.resident.account
	if p.tries.blocked(who) {
		again(http.StatusTooManyRequests, say("err.locked"))
		return
	}
	select {
	case p.unlocks <- struct{}{}:
		defer func() { <-p.unlocks }()
	case <-time.After(10 * time.Second):
		again(http.StatusServiceUnavailable, say("err.busy"))
		return
	}
	err := p.wallets.ChangePassphrase(r.sess.resident.account, cur, next)
	switch {
	case errors.Is(err, hosted.ErrWrongPassphrase):
		p.tries.fail(who)
		again(http.StatusUnauthorized, say("err.passphrase_current"))
		return
	case err != nil:
		p.internal(w, r, err)
		return
	}
	p.tries.forget(who)
	p.log.Info("a resident changed their passphrase")
	r.sess.setFlash("flash.passphrase_changed")
	http.Redirect(w, r.Request, "/me", http.StatusSeeOther)
}
