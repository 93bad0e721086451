package web

import (
	"bytes"
	"net/http"
	"slices"
	"strings"

	"github.com/imi-city/imi/internal/hosted"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
)

// A guardian acts for a ward by opening the ward's hosted wallet (with the
// ward's passphrase, which the guardian of a minor set at the counter)
// while signed in with their own. Every grant and revocation made then is
// co-signed under the guardian's pseudonym, which the ward's log shows, and
// the ledger and the authority's desk check the delegation behind it.

// wardSession is the ward a guardian is acting for.
type wardSession struct {
	account string
	did     string
	name    string
	blob    []byte
}

func init() {
	routeTable = append(routeTable,
		route{"GET /me/wards", resident, (*Portal).wardsPage},
		route{"POST /me/wards/act", resident, (*Portal).actFor},
		route{"POST /me/wards/stop", resident, (*Portal).stopActing},
	)
}

// guardianship is one delegation in which the signed-in resident is the
// guardian.
type guardianship struct {
	ledger.Delegation
	ScopeZH, ScopeEN string
	BasisLabel       string // a catalogue key, "" for a basis the portal has no words for
	Active           bool
}

func (p *Portal) guardianDelegations(did string) ([]guardianship, error) {
	dels, _, err := p.cfg.App.GuardianOf(did, 0)
	if err != nil {
		return nil, err
	}
	dir := p.directory()
	now := p.cfg.App.LastBlock().Time
	var out []guardianship
	for _, d := range dels {
		v := guardianship{Delegation: d, Active: d.ActiveAt(now), BasisLabel: basisLabel(d.Basis)}
		var zh, en []string
		for _, s := range d.Scope {
			if s == "*" {
				zh, en = append(zh, "全部业务"), append(en, "all services")
				continue
			}
			z, e := dir.serviceNames(s)
			zh, en = append(zh, z), append(en, e)
		}
		v.ScopeZH, v.ScopeEN = strings.Join(zh, "、"), strings.Join(en, ", ")
		out = append(out, v)
	}
	return out, nil
}

// wardsView is the page of the wards a resident may act for.
type wardsView struct {
	Delegations []guardianship
	Acting      bool
}

func (p *Portal) wardsPage(w http.ResponseWriter, r *request) {
	rs := r.sess.resident
	dels, err := p.guardianDelegations(rs.did)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	p.render(w, r, http.StatusOK, "wards", "title.wards", wardsView{dels, r.sess.wardOf() != nil}, message{})
}

func (p *Portal) actFor(w http.ResponseWriter, r *request) {
	rs := r.sess.resident
	again := func(status int, m message) {
		dels, _ := p.guardianDelegations(rs.did)
		p.render(w, r, status, "wards", "title.wards", wardsView{dels, r.sess.wardOf() != nil}, m)
	}
	n, m, status := p.postedNumber(r)
	if status != 0 {
		again(status, m)
		return
	}
	// The delegation is checked before the ward's wallet is tried, so the
	// form cannot be used to guess anyone else's passphrase.
	acct, err := p.wallets.ByNumber(n)
	if err != nil {
		again(http.StatusForbidden, say("err.not_guardian"))
		return
	}
	dels, err := p.guardianDelegations(rs.did)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	if !slices.ContainsFunc(dels, func(d guardianship) bool { return d.Active && d.Ward == acct.DID }) {
		again(http.StatusForbidden, say("err.not_guardian"))
		return
	}
	u, err := p.unlockWallet(r, n)
	if err != nil {
		m, status := signInRefusal(err)
		again(status, m)
		return
	}
	defer u.wipe()
	// A young ward may never sign in: what authorities delivered to the
	// ward's inbox is collected when the guardian opens the wallet.
	if err := p.collectInbox(u); err != nil {
		p.log.Warn("couldn't collect a hosted wallet's inbox", "err", err)
	}
	blob, err := hosted.SealSession(r.key, u.account.ID, u.key)
	if err != nil {
		p.internal(w, r, err)
		return
	}
	r.sess.setWard(&wardSession{account: u.account.ID, did: u.contents.DID, name: displayName(u.contents, p.cfg.Now()), blob: blob})
	p.log.Info("a guardian is acting for a ward")
	r.sess.setFlash("flash.acting")
	http.Redirect(w, r.Request, "/me", http.StatusSeeOther)
}

func (p *Portal) stopActing(w http.ResponseWriter, r *request) {
	r.sess.setWard(nil)
	r.sess.setFlash("flash.stopped_acting")
	http.Redirect(w, r.Request, "/me", http.StatusSeeOther)
}

// guardianFor returns the signed-in guardian's own wallet and pseudonym
// secret when they are acting for a ward, nil otherwise; the caller wipes
// its Contents when done.
func (p *Portal) guardianFor(r *request) (*service.Guardian, error) {
	rs := r.sess.resident
	r.sess.mu.Lock()
	acting := rs.ward != nil
	blob := bytes.Clone(rs.blob)
	r.sess.mu.Unlock()
	if !acting {
		return nil, nil
	}
	u, err := p.openSealed(r, blob)
	if err != nil {
		return nil, err
	}
	secret, created, err := service.PseudonymSecret(u.contents)
	if err != nil {
		u.contents.Wipe()
		return nil, err
	}
	if created {
		if err := p.saveWallet(r, u); err != nil {
			u.contents.Wipe()
			return nil, err
		}
	}
	return &service.Guardian{Contents: u.contents, Secret: secret}, nil
}
