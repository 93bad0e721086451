package web

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imi-city/imi/internal/hosted"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/wallet"
)

// unlocked is a resident's hosted wallet, open for one request.
type unlocked struct {
	account  *hosted.Account
	contents *wallet.Contents
	key      hosted.WalletKey
}

// wipe zeroes the keys the request held; Go may have left copies, but not
// here.
func (u *unlocked) wipe() {
	u.contents.Wipe()
	u.key.Wipe()
}

// maxUnlocks bounds the sign-ins that run at once: each takes an Argon2id
// run of 64 MiB, so a burst of them must queue rather than exhaust memory.
const maxUnlocks = 8

// argon2Turn waits, up to 10 s, for one of the maxUnlocks places every
// passphrase check (resident or staff) takes; release gives it back.
func (p *Portal) argon2Turn() (release func(), ok bool) {
	select {
	case p.unlocks <- struct{}{}:
		return func() { <-p.unlocks }, true
	case <-time.After(10 * time.Second):
		return nil, false
	}
}

// errBusy is a sign-in that waited too long for its turn.
var errBusy = errors.New("too many sign-ins at once")

// postedNumber reads the ID number of a posted sign-in form, once its
// sender is within the rate limit; status is 0 when the form may go on.
func (p *Portal) postedNumber(r *request) (n idnumber.Number, m message, status int) {
	if !p.limits.allow(p.client(r)) {
		return idnumber.Number{}, say("err.rate_limited"), http.StatusTooManyRequests
	}
	n, err := idnumber.Parse(normalNumber(r.PostFormValue("id_number")))
	if err != nil {
		return idnumber.Number{}, say("err.id_number"), http.StatusBadRequest
	}
	return n, message{}, 0
}

// normalNumber is an ID number as typed, without the spaces people put in
// to read it and in upper case (the check character X).
func normalNumber(s string) string {
	return strings.ToUpper(strings.Join(strings.Fields(s), ""))
}

// unlockWallet opens the hosted wallet of ID number n with the passphrase
// and, on a first sign-in, the activation code the posted form carries.
func (p *Portal) unlockWallet(r *request, n idnumber.Number) (*unlocked, error) {
	passphrase, code := []byte(r.PostFormValue("passphrase")), strings.TrimSpace(r.PostFormValue("activation"))
	defer clear(passphrase)
	// One client gets clientTries at one ID number, wallet or none, before
	// it is told the same "locked" either way: the answer does not say who
	// has a wallet, and one client cannot lock a resident out (the wallet
	// itself locks only after accountTries, from several clients).
	who := p.client(r) + "|" + string(hosted.Lookup(p.cfg.LookupKey, n))
	if p.tries.blocked(who) {
		return nil, &hosted.LockedError{}
	}
	release, ok := p.argon2Turn()
	if !ok {
		return nil, errBusy
	}
	defer release()
	u, err := p.wallets.Unlock(n, passphrase, code)
	switch {
	case err == nil:
		p.tries.forget(who)
	case errors.Is(err, hosted.ErrNoAccount), errors.Is(err, hosted.ErrWrongPassphrase), errors.Is(err, hosted.ErrActivationNeeded) && code != "":
		p.tries.fail(who)
	}
	if err != nil {
		return nil, err
	}
	return &unlocked{account: u.Account, contents: u.Contents, key: u.Key}, nil
}

// Sign-in tries: per client and ID number, then per wallet.
const (
	clientTries  = 5
	accountTries = 20
)

// tries counts a client's failed sign-ins at one ID number over
// hosted.LockoutPeriod. It lives in memory: a restart forgets it, and the
// wallet's own lock still stands behind it.
type tries struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]*tryCount
}

type tryCount struct {
	n     int
	first time.Time
}

// maxTryEntries bounds the table; a full one drops what has expired, then
// everything (the wallets' own locks remain).
const maxTryEntries = 100_000

func (t *tries) blocked(k string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.m[k]
	if c != nil && t.now().Sub(c.first) >= hosted.LockoutPeriod {
		delete(t.m, k)
		return false
	}
	return c != nil && c.n >= clientTries
}

func (t *tries) fail(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.m) >= maxTryEntries {
		for k, c := range t.m {
			if now.Sub(c.first) >= hosted.LockoutPeriod {
				delete(t.m, k)
			}
		}
		if len(t.m) >= maxTryEntries {
			clear(t.m)
		}
	}
	c := t.m[k]
	if c == nil || now.Sub(c.first) >= hosted.LockoutPeriod {
		c = &tryCount{first: now}
		t.m[k] = c
	}
	c.n++
}

func (t *tries) forget(k string) {
	t.mu.Lock()
	delete(t.m, k)
	t.mu.Unlock()
}

// signInRefusal words a refused sign-in. A wrong passphrase and an ID
// number without a wallet read the same, so the page does not tell who has
// one.
func signInRefusal(err error) (message, int) {
	var locked *hosted.LockedError
	switch {
	case errors.As(err, &locked):
		return say("err.locked"), http.StatusTooManyRequests
	case errors.Is(err, hosted.ErrNoAccount), errors.Is(err, hosted.ErrWrongPassphrase):
		return say("err.signin_failed"), http.StatusUnauthorized
	case errors.Is(err, hosted.ErrActivationNeeded):
		return say("err.activation_needed"), http.StatusUnauthorized
	case errors.Is(err, errBusy):
		return say("err.busy"), http.StatusServiceUnavailable
	}
	return say("err.internal"), http.StatusInternalServerError
}

// keepWallet seals the wallet's key into the session under the cookie's
// key.
func (p *Portal) keepWallet(rs *residentSession, cookieKey []byte, u *unlocked) error {
	blob, err := hosted.SealSession(cookieKey, u.account.ID, u.key)
	if err != nil {
		return err
	}
	rs.account, rs.blob = u.account.ID, blob
	return nil
}

// walletOf opens the signed-in resident's wallet for this request.
func (p *Portal) walletOf(r *request) (*unlocked, error) {
	if r.sess == nil || r.sess.resident == nil {
		return nil, errors.New("not signed in")
	}
	// A guardian acting for a ward works in the ward's wallet.
	// Copied under the lock: a sign-out in another tab clears it.
	r.sess.mu.Lock()
	blob := bytes.Clone(r.sess.resident.blob)
	if w := r.sess.resident.ward; w != nil {
		blob = bytes.Clone(w.blob)
	}
	r.sess.mu.Unlock()
	return p.openSealed(r, blob)
}

// openSealed opens the hosted wallet whose key the session keeps sealed in
// blob under the cookie's key.
func (p *Portal) openSealed(r *request, blob []byte) (*unlocked, error) {
	id, k, err := hosted.OpenSession(r.key, blob)
	if err != nil {
		return nil, err
	}
	a, c, err := p.wallets.Open(id, k)
	if err != nil {
		return nil, err
	}
	return &unlocked{account: a, contents: c, key: k}, nil
}

// wallet opens the signed-in resident's wallet for a page; the caller
// wipes it when done. When it cannot be opened, wallet answers the request
// itself, ending the session, and returns false.
func (p *Portal) wallet(w http.ResponseWriter, r *request) (*unlocked, bool) {
	u, err := p.walletOf(r)
	if err != nil {
		p.log.Error("couldn't open a session's wallet", "err", err)
		p.sessions.end(w, r.sess)
		p.fail(w, r, http.StatusUnauthorized, say("err.session_expired"))
		return nil, false
	}
	return u, true
}

// saveWallet stores u's changed contents.
func (p *Portal) saveWallet(r *request, u *unlocked) error {
	return p.wallets.Save(u.account, u.contents, u.key)
}

// collectInbox moves credentials delivered to the wallet's inbox into it.
// An item that is not a credential bound to this wallet's key is dropped:
// the inbox is sealed to the wallet, but whoever delivered it could still
// have meant another resident.
func (p *Portal) collectInbox(u *unlocked) error {
	items, done, err := p.wallets.Collect(u.account, u.contents)
	if err != nil || len(items) == 0 {
		return err
	}
	k, err := key.FromSeed(u.contents.Key)
	if err != nil {
		return err
	}
	added := 0
	for _, it := range items {
		var c wallet.Credential
		if err := json.Unmarshal(it, &c); err != nil || c.SDJWT == "" || c.ID != wallet.CredentialID(c.SDJWT) {
			p.log.Warn("dropped a hosted-wallet inbox item that is not a credential")
			continue
		}
		if !boundToKey(c.SDJWT, k.Public()) {
			p.log.Warn("dropped a delivered credential bound to another key")
			continue
		}
		if slices.ContainsFunc(u.contents.Credentials, func(h wallet.Credential) bool { return h.ID == c.ID }) {
			continue
		}
		u.contents.Credentials = append(u.contents.Credentials, c)
		added++
	}
	if added > 0 {
		if err := p.wallets.Save(u.account, u.contents, u.key); err != nil {
			return fmt.Errorf("couldn't save collected credentials: %w", err)
		}
	}
	return done()
}

// boundToKey reports whether the credential's cnf key is k.
func boundToKey(sdjwt string, k key.Public) bool {
	claims, err := issuerClaims(sdjwt)
	if err != nil {
		return false
	}
	cnf, _ := claims["cnf"].(map[string]any)
	jwk, _ := cnf["jwk"].(map[string]any)
	x, _ := jwk["x"].(string)
	want := key.Public.Bytes(k)
	got, err := b64url(x)
	return err == nil && jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519" && bytes.Equal(got, want)
}

func pseudonymOf(secret []byte, authority string) (string, error) {
	k, err := pseudonym.Derive(secret, authority)
	if err != nil {
		return "", err
	}
	return pseudonym.FromKey(k.Public()).String(), nil
}

// issuerClaims parses (without verifying) the issuer-signed payload of an
// SD-JWT; the caller checks what it relies on.
func issuerClaims(sdjwt string) (map[string]any, error) {
	jwt, _, _ := strings.Cut(sdjwt, "~")
	_, claims, err := jws.ParseClaims(jwt, jws.EdDSA)
	return claims, err
}

func b64url(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
