package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// StaffAccount is a clerk's or caseworker's account. The node keeps only a
// hash of the passphrase.
type StaffAccount struct {
	Name      string   `json:"name"`
	Authority string   `json:"authority"`
	Roles     []string `json:"roles"` // "counter", "console"
	Salt      string   `json:"salt"`
	Hash      string   `json:"hash"`
}

// Staff roles.
const (
	RoleCounter = "counter"
	RoleConsole = "console"
)

func (a *StaffAccount) may(r role) bool {
	want := RoleConsole
	if r == counterStaff {
		want = RoleCounter
	}
	for _, x := range a.Roles {
		if x == want {
			return true
		}
	}
	return false
}

// Argon2id costs of a staff passphrase hash (RFC 9106's second option).
const (
	staffTime    = 3
	staffMemory  = 64 << 10
	staffThreads = 1
)

// NewStaffAccount hashes passphrase for a new account.
func NewStaffAccount(name, authority string, roles []string, passphrase string) (StaffAccount, error) {
	if name == "" || strings.ContainsAny(name, " \t\r\n") {
		return StaffAccount{}, fmt.Errorf("a staff account name is one word, got %q", name)
	}
	if len(passphrase) < 12 {
		return StaffAccount{}, errors.New("a staff passphrase needs at least 12 characters")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return StaffAccount{}, err
	}
	h := argon2.IDKey([]byte(passphrase), salt, staffTime, staffMemory, staffThreads, 32)
	return StaffAccount{Name: name, Authority: authority, Roles: roles,
		Salt: base64.RawStdEncoding.EncodeToString(salt), Hash: base64.RawStdEncoding.EncodeToString(h)}, nil
}

func (a *StaffAccount) check(passphrase string) bool {
	salt, err1 := base64.RawStdEncoding.DecodeString(a.Salt)
	want, err2 := base64.RawStdEncoding.DecodeString(a.Hash)
	if err1 != nil || err2 != nil {
		return false
	}
	h := argon2.IDKey([]byte(passphrase), salt, staffTime, staffMemory, staffThreads, 32)
	return subtle.ConstantTimeCompare(h, want) == 1
}

// ReadStaff reads the staff file (a JSON list of accounts).
func ReadStaff(path string) ([]StaffAccount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []StaffAccount
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for _, a := range out {
		if seen[a.Name] {
			return nil, fmt.Errorf("%s: the account %q appears twice", path, a.Name)
		}
		seen[a.Name] = true
	}
	return out, nil
}

// WriteStaff writes the staff file, readable by its owner only.
func WriteStaff(path string, accounts []StaffAccount) error {
	b, err := json.MarshalIndent(accounts, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// dummyStaff is checked when no account has the name given, so a wrong
// name and a wrong passphrase take the same time.
var dummyStaff = StaffAccount{Salt: "AAAAAAAAAAAAAAAAAAAAAA", Hash: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}

func init() {
	routeTable = append(routeTable,
		route{"GET /{$}", anyone, (*Portal).home},
		route{"GET /staff/signin", anyone, (*Portal).staffSignInPage},
		route{"POST /staff/signin", anyone, (*Portal).staffSignIn},
		route{"POST /staff/signout", anyone, (*Portal).signOut},
	)
}

// home starts no session: it has no form, and a page anyone may load
// without a cookie must not fill the session table.
func (p *Portal) home(w http.ResponseWriter, r *request) {
	p.render(w, r, http.StatusOK, "home", "title.home", nil, message{})
}

func (p *Portal) staffSignInPage(w http.ResponseWriter, r *request) {
	p.anonymous(w, r)
	p.render(w, r, http.StatusOK, "staff_signin", "title.staff_signin", nil, message{})
}

func (p *Portal) staffSignIn(w http.ResponseWriter, r *request) {
	if !p.limits.allow(p.client(r)) {
		p.render(w, r, http.StatusTooManyRequests, "staff_signin", "title.staff_signin", nil, say("err.rate_limited"))
		return
	}
	name := strings.TrimSpace(r.PostFormValue("account"))
	acct := p.staffAccount(name)
	// A staff passphrase costs an Argon2id run of 64 MiB like a resident's,
	// so it takes a turn in the same queue.
	release, turn := p.argon2Turn()
	if !turn {
		p.render(w, r, http.StatusServiceUnavailable, "staff_signin", "title.staff_signin", nil, say("err.busy"))
		return
	}
	ok := false
	if acct == nil {
		dummyStaff.check(r.PostFormValue("passphrase"))
	} else {
		ok = acct.check(r.PostFormValue("passphrase"))
	}
	release()
	if !ok {
		p.log.Info("staff sign-in refused")
		p.render(w, r, http.StatusUnauthorized, "staff_signin", "title.staff_signin", nil, say("err.staff_signin"))
		return
	}
	p.sessions.start(w, r.sess, func(s *session, _ []byte) error { s.staff = acct; return nil })
	p.log.Info("staff signed in", "authority", acct.Authority, "account", acct.Name)
	to := "/console"
	if acct.may(counterStaff) {
		to = "/counter"
	}
	http.Redirect(w, r.Request, to, http.StatusSeeOther)
}

func (p *Portal) signOut(w http.ResponseWriter, r *request) {
	p.sessions.end(w, r.sess)
	s, _, _ := p.sessions.start(w, nil, nil)
	s.setFlash("flash.signed_out")
	http.Redirect(w, r.Request, "/", http.StatusSeeOther)
}

// staffAccount returns the account called name, nil if there is none. With
// a staff file, the file as it is now: an account removed from it stops
// working at once, in sessions already open too.
func (p *Portal) staffAccount(name string) *StaffAccount {
	staff := p.cfg.Staff
	if p.cfg.StaffFile != "" {
		var err error
		if staff, err = p.staffFile(); err != nil {
			p.log.Error("couldn't read the staff file", "err", err)
			return nil
		}
	}
	for i := range staff {
		if staff[i].Name == name {
			return &staff[i]
		}
	}
	return nil
}

// stillStaff reports whether a signed-in account still exists unchanged
// (same authority, roles and passphrase).
func (p *Portal) stillStaff(a *StaffAccount) bool {
	now := p.staffAccount(a.Name)
	return now != nil && now.Authority == a.Authority && now.Hash == a.Hash && slices.Equal(now.Roles, a.Roles)
}

// staffFile returns the accounts in the staff file, parsed again only when
// the file changed: every staff request checks its account against it.
func (p *Portal) staffFile() ([]StaffAccount, error) {
	fi, err := os.Stat(p.cfg.StaffFile)
	if err != nil {
		return nil, err
	}
	c := &p.staffCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.list != nil && fi.ModTime().Equal(c.mod) && fi.Size() == c.size {
		return c.list, nil
	}
	list, err := ReadStaff(p.cfg.StaffFile)
	if err != nil {
		return nil, err
	}
	c.list, c.mod, c.size = list, fi.ModTime(), fi.Size()
	return list, nil
}

// staffCache is the staff file as last read.
type staffCache struct {
	mu   sync.Mutex
	mod  time.Time
	size int64
	list []StaffAccount
}
