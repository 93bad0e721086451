package hosted

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/wallet"
)

// testParams keep Argon2id cheap: the least wallet.Seal accepts.
var testParams = wallet.Params{Time: 1, MemoryKiB: 8, Threads: 1}

const (
	did     = "did:imi:resident:z6MkHostedTest"
	did2    = "did:imi:resident:z6MkHostedOther"
	canary  = "CANARY-张三"
	newPass = "a new passphrase after recovery"
)

var (
	pass  = []byte("correct horse battery staple")
	start = time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
)

// recording is a service.Store that remembers every key and value ever
// written, so a test can look for secrets in all of them.
type recording struct {
	service.Store
	mu  sync.Mutex
	all [][]byte
}

func (r *recording) Put(k string, v []byte) error {
	r.mu.Lock()
	r.all = append(r.all, []byte(k), bytes.Clone(v))
	r.mu.Unlock()
	return r.Store.Put(k, v)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	w     *Wallets
	kv    *recording
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	kv, err := service.OpenStore("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	lk, err := key.GenerateHMAC()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recording{Store: kv}
	c := &clock{t: start}
	return &fixture{
		w:     &Wallets{Store: NewStore(rec), LookupKey: lk, Params: testParams, Now: c.now},
		kv:    rec,
		clock: c,
	}
}

func number(t *testing.T, seq int) idnumber.Number {
	t.Helper()
	n, err := idnumber.Example("110105", 1990, 3, 7, seq)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func contents(d string) *wallet.Contents {
	return &wallet.Contents{
		DID: d,
		Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)).Seed(),
		Credentials: []wallet.Credential{{
			ID:        "cred-1",
			SDJWT:     "eyJhbGciOiJFZERTQSJ9.e30.sig~" + canary + "~",
			Type:      "resident_identity",
			Issuer:    "did:imi:authority:psb",
			IssuerID:  "psb",
			StatusURI: "https://psb.imi.example/status/1",
			StatusIdx: 42,
		}},
	}
}

// create makes an account for n and returns its activation code.
func (f *fixture) create(t *testing.T, n idnumber.Number) (*Account, string) {
	t.Helper()
	a, code, err := f.w.Create(n, did, contents(did), pass)
	if err != nil {
		t.Fatal(err)
	}
	return a, code
}

func (f *fixture) activate(t *testing.T, n idnumber.Number, code string) *Unlocked {
	t.Helper()
	u, err := f.w.Unlock(n, pass, code)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestUnlock(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	_, code := f.create(t, n)
	if len(code) != CodeLength || strings.ContainsAny(code, "0O1I") {
		t.Fatalf("activation code %q: want %d characters without 0, O, 1, I", code, CodeLength)
	}
	wrongCode := "ABCDEFGHJK"
	if wrongCode == code {
		wrongCode = "KJHGFEDCBA"
	}
	typed := strings.ToLower(code[:5]) + "-" + code[5:] // as a resident may type it
	bad := []byte("not the passphrase")

	steps := []struct {
		name         string
		advance      time.Duration
		n            idnumber.Number
		pass         []byte
		code         string
		want         error
		wantFailures int
		wantLocked   time.Time // when want is ErrLocked
	}{
		{"unknown number", 0, number(t, 2), pass, code, ErrNoAccount, 0, time.Time{}},
		{"first sign-in without code", 0, n, pass, "", ErrActivationNeeded, 0, time.Time{}},
		{"wrong code", 0, n, pass, wrongCode, ErrActivationNeeded, 1, time.Time{}},
		{"wrong passphrase, right code", 0, n, bad, code, ErrWrongPassphrase, 2, time.Time{}},
		{"first sign-in", 0, n, pass, typed, nil, 0, time.Time{}},
		{"later sign-in ignores the code", 0, n, pass, "whatever", nil, 0, time.Time{}},
		{"wrong 1", 0, n, bad, "", ErrWrongPassphrase, 1, time.Time{}},
		{"wrong 2", 0, n, bad, "", ErrWrongPassphrase, 2, time.Time{}},
		{"wrong 3", 0, n, bad, "", ErrWrongPassphrase, 3, time.Time{}},
		{"wrong 4", 0, n, bad, "", ErrWrongPassphrase, 4, time.Time{}},
		{"wrong 5 locks", time.Minute, n, bad, "", ErrLocked, 5, start.Add(time.Minute + LockoutPeriod)},
		{"locked: right passphrase refused", LockoutPeriod - time.Second, n, pass, "", ErrLocked, 5, start.Add(time.Minute + LockoutPeriod)},
		{"lock over", time.Second, n, pass, "", nil, 0, time.Time{}},
	}
	for _, s := range steps {
		f.clock.advance(s.advance)
		u, err := f.w.Unlock(s.n, s.pass, s.code)
		if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Fatalf("%s: Unlock() = %v, want %v", s.name, err, s.want)
		}
		if s.want == ErrLocked {
			var le *LockedError
			if !errors.As(err, &le) || !le.Until.Equal(s.wantLocked) {
				t.Errorf("%s: locked until %v, want %v", s.name, le, s.wantLocked)
			}
		}
		if s.want == nil {
			if u.Contents.DID != did || u.Contents.Credentials[0].SDJWT != contents(did).Credentials[0].SDJWT {
				t.Errorf("%s: contents %v do not round-trip", s.name, u.Contents)
			}
			if !u.Account.Activated || u.Account.Activation != nil {
				t.Errorf("%s: account not marked activated", s.name)
			}
		}
		if s.n == n {
			a, err := f.w.ByNumber(n)
			if err != nil {
				t.Fatal(err)
			}
			if a.Failures != s.wantFailures {
				t.Errorf("%s: failures = %d, want %d", s.name, a.Failures, s.wantFailures)
			}
		}
	}
}

func TestLockAgainAfterExpiry(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	_, code := f.create(t, n)
	f.activate(t, n, code)
	bad := []byte("not the passphrase")
	for range MaxFailures {
		f.w.Unlock(n, bad, "")
	}
	f.clock.advance(LockoutPeriod)
	// Past the lock, one more failure locks again: after a lockout a
	// guesser gets one try per period until someone signs in.
	_, err := f.w.Unlock(n, bad, "")
	if !errors.Is(err, ErrWrongPassphrase) || !errors.Is(err, ErrLocked) {
		t.Fatalf("failure after a lock = %v, want wrong passphrase and locked", err)
	}
}

func TestParallelGuessesGetNoMoreTries(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	_, code := f.create(t, n)
	f.activate(t, n, code)
	const guessers = 20
	errs := make(chan error, guessers)
	var wg sync.WaitGroup
	for i := range guessers {
		wg.Go(func() {
			_, err := f.w.Unlock(n, fmt.Appendf(nil, "guess number %d", i), "")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var judged, locked int
	for err := range errs {
		if errors.Is(err, ErrWrongPassphrase) {
			judged++
		} else if !errors.Is(err, ErrLocked) {
			t.Errorf("Unlock() = %v, want wrong passphrase or locked", err)
		}
		if errors.Is(err, ErrLocked) {
			locked++
		}
	}
	if judged != MaxFailures || locked != guessers-MaxFailures+1 {
		t.Errorf("%d guesses answered, %d locked; want %d and %d", judged, locked, MaxFailures, guessers-MaxFailures+1)
	}
}

func TestUnlockWithoutChangeKeepsVersion(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	_, code := f.create(t, n)
	v := f.activate(t, n, code).Account.Version
	if got := f.activate(t, n, "").Account.Version; got != v {
		t.Errorf("version after a plain sign-in = %d, want %d: a sign-in should not make a session's Save conflict", got, v)
	}
}

func TestCreate(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	a, _ := f.create(t, n)
	tests := []struct {
		name string
		n    idnumber.Number
		did  string
		c    *wallet.Contents
		pass []byte
		want error
	}{
		{"same number", n, did2, contents(did2), pass, ErrExists},
		{"same DID", number(t, 2), did, contents(did), pass, ErrExists},
		{"short passphrase", number(t, 3), did2, contents(did2), []byte("short"), wallet.ErrPassphrase},
	}
	for _, tt := range tests {
		_, _, err := f.w.Create(tt.n, tt.did, tt.c, tt.pass)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Create() = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, _, err := f.w.Create(number(t, 4), did2, contents(did), pass); err == nil {
		t.Error("Create() with contents of another DID succeeded")
	}
	if _, _, err := f.w.Create(idnumber.Number{}, did2, contents(did2), pass); err == nil {
		t.Error("Create() with an unparsed number succeeded")
	}
	if a.Version != 1 || len(a.ID) != 32 || a.Activated {
		t.Errorf("new account = version %d, id %q, activated %v", a.Version, a.ID, a.Activated)
	}
	want := []StatusRef{{IssuerID: "psb", StatusList: "https://psb.imi.example/status/1", Index: 42, Type: "resident_identity", CredentialID: "cred-1"}}
	if got := a.Credentials; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("status refs = %v, want %v", got, want)
	}
}

func TestByNumber(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	made, _ := f.create(t, n)
	a, err := f.w.ByNumber(n)
	if err != nil || a.ID != made.ID || a.DID != did {
		t.Errorf("ByNumber() = %v, %v; want account %s of %s", a, err, made.ID, did)
	}
	if _, err := f.w.ByNumber(number(t, 2)); !errors.Is(err, ErrNoAccount) {
		t.Errorf("ByNumber(unknown) = %v, want ErrNoAccount", err)
	}
}

func TestReplace(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	old, code := f.create(t, n)
	u := f.activate(t, n, code)
	if err := f.w.Deliver(did, []byte("for the old wallet")); err != nil {
		t.Fatal(err)
	}

	a, newCode, refs, err := f.w.Replace(n, did, contents(did), []byte(newPass))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == old.ID || newCode == code {
		t.Error("Replace() kept the old id or activation code")
	}
	if len(refs) != 1 || refs[0].Index != 42 || refs[0].StatusList != "https://psb.imi.example/status/1" {
		t.Errorf("Replace() returned status refs %v, want the old credential's", refs)
	}
	if _, err := f.w.Unlock(n, pass, ""); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Unlock(old passphrase) = %v, want ErrWrongPassphrase", err)
	}
	if _, _, err := f.w.Open(old.ID, u.Key); !errors.Is(err, ErrNoAccount) {
		t.Errorf("Open(old session) = %v, want ErrNoAccount", err)
	}
	if err := f.w.Save(u.Account, u.Contents, u.Key); !errors.Is(err, ErrNoAccount) {
		t.Errorf("Save(old session) = %v, want ErrNoAccount", err)
	}
	if _, err := f.w.Unlock(n, []byte(newPass), ""); !errors.Is(err, ErrActivationNeeded) {
		t.Errorf("Unlock(new passphrase, no code) = %v, want ErrActivationNeeded", err)
	}
	if _, err := f.w.Unlock(n, []byte(newPass), newCode); err != nil {
		t.Errorf("Unlock(new passphrase, new code) = %v", err)
	}
	if got, err := f.w.ByNumber(n); err != nil || got.ID != a.ID {
		t.Errorf("ByNumber() after Replace = %v, %v; want the new account", got, err)
	}
	if left, _ := f.kv.List(inboxPrefix + old.ID + "/"); len(left) != 0 {
		t.Errorf("old inbox has %d items left, want none", len(left))
	}
	if left, _ := f.kv.List(accountPrefix); len(left) != 1 {
		t.Errorf("store has %d accounts, want 1", len(left))
	}
	if _, _, _, err := f.w.Replace(number(t, 2), did2, contents(did2), pass); !errors.Is(err, ErrNoAccount) {
		t.Errorf("Replace(no account) = %v, want ErrNoAccount", err)
	}
}

func TestReplaceWithNewDID(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	f.create(t, n)
	if _, _, _, err := f.w.Replace(n, did2, contents(did2), pass); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Deliver(did, []byte("x")); !errors.Is(err, ErrNoAccount) {
		t.Errorf("Deliver(old DID) = %v, want ErrNoAccount", err)
	}
	if err := f.w.Deliver(did2, []byte("x")); err != nil {
		t.Errorf("Deliver(new DID) = %v", err)
	}
}

func TestInbox(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	_, code := f.create(t, n)
	u := f.activate(t, n, code)

	sent := []string{"credential one", "credential two", "credential three"}
	for _, s := range sent {
		f.clock.advance(time.Second)
		if err := f.w.Deliver(did, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	// Change one byte of the second item as it lies in the store.
	raw, err := f.kv.List(inboxPrefix + u.Account.ID + "/")
	if err != nil || len(raw) != 3 {
		t.Fatalf("inbox holds %d items, %v; want 3", len(raw), err)
	}
	var it Item
	if err := json.Unmarshal(raw[1], &it); err != nil {
		t.Fatal(err)
	}
	it.Sealed[len(it.Sealed)-1] ^= 1
	b, _ := json.Marshal(it)
	if err := f.kv.Put(itemKey(u.Account.ID, it.ID), b); err != nil {
		t.Fatal(err)
	}

	got, done, err := f.w.Collect(u.Account, u.Contents)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{sent[0], sent[2]}; fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("Collect() = %q, want %q (the changed item refused)", got, want)
	}
	// Not removed until the caller says the wallet is saved.
	if again, _, _ := f.w.Collect(u.Account, u.Contents); len(again) != 2 {
		t.Errorf("before done, Collect() again = %d items, want 2", len(again))
	}
	if err := done(); err != nil {
		t.Fatal(err)
	}
	if again, _, _ := f.w.Collect(u.Account, u.Contents); len(again) != 0 {
		t.Errorf("after done, Collect() = %d items, want none", len(again))
	}
	if left, _ := f.kv.List(inboxPrefix); len(left) != 0 {
		t.Errorf("after done the store holds %d inbox items, want none", len(left))
	}

	other := contents(did)
	if _, err := newInboxKey(other); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.w.Collect(u.Account, other); err == nil {
		t.Error("Collect() with another inbox key succeeded")
	}
	if err := f.w.Deliver(did2, []byte("x")); !errors.Is(err, ErrNoAccount) {
		t.Errorf("Deliver(unknown DID) = %v, want ErrNoAccount", err)
	}
	if err := f.w.Deliver(did, make([]byte, MaxItem+1)); err == nil {
		t.Error("Deliver() of an oversized item succeeded")
	}
	for range MaxItems {
		if err := f.w.Deliver(did, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.w.Deliver(did, []byte("x")); !errors.Is(err, ErrInboxFull) {
		t.Errorf("Deliver() to a full inbox = %v, want ErrInboxFull", err)
	}
}

func TestSave(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	_, code := f.create(t, n)
	u := f.activate(t, n, code)

	stale := *u.Account
	u.Contents.Credentials = append(u.Contents.Credentials, wallet.Credential{
		ID: "cred-2", Type: "social_insurance", IssuerID: "hrss", StatusURI: "https://hrss.imi.example/status/7", StatusIdx: 3,
	})
	if err := f.w.Save(u.Account, u.Contents, u.Key); err != nil {
		t.Fatal(err)
	}
	if len(u.Account.Credentials) != 2 || u.Account.Version != stale.Version+1 {
		t.Errorf("after Save: %d status refs, version %d; want 2, %d", len(u.Account.Credentials), u.Account.Version, stale.Version+1)
	}
	if err := f.w.Save(&stale, u.Contents, u.Key); !errors.Is(err, ErrConflict) {
		t.Errorf("Save(stale version) = %v, want ErrConflict", err)
	}
	a, c, err := f.w.Open(u.Account.ID, u.Key)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Credentials) != 2 || a.Version != u.Account.Version {
		t.Errorf("Open() after Save = %d credentials, version %d", len(c.Credentials), a.Version)
	}
	// Without the passphrase the session's key is all Save needs, and the
	// passphrase still opens what it saved.
	if u2, err := f.w.Unlock(n, pass, ""); err != nil || len(u2.Contents.Credentials) != 2 {
		t.Errorf("Unlock() after Save = %v", err)
	}

	other, err := newWalletKey()
	if err != nil {
		t.Fatal(err)
	}
	a, _, _ = f.w.Open(u.Account.ID, u.Key)
	if err := f.w.Save(a, c, other); !errors.Is(err, wallet.ErrCorrupt) {
		t.Errorf("Save(wrong key) = %v, want it refused", err)
	}
	noInbox := *c
	noInbox.Extra = nil
	if err := f.w.Save(a, &noInbox, u.Key); err == nil {
		t.Error("Save() of contents without the inbox key succeeded")
	}
}

func TestConcurrentSaves(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	_, code := f.create(t, n)
	u := f.activate(t, n, code)
	const savers = 16
	errs := make(chan error, savers)
	var wg sync.WaitGroup
	for i := range savers {
		a := *u.Account
		_, c, err := f.w.Open(a.ID, u.Key)
		if err != nil {
			t.Fatal(err)
		}
		c.Credentials = append(c.Credentials, wallet.Credential{ID: fmt.Sprint("saver-", i)})
		wg.Go(func() { errs <- f.w.Save(&a, c, u.Key) })
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrConflict):
			t.Errorf("Save() = %v, want nil or ErrConflict", err)
		}
	}
	if won != 1 {
		t.Errorf("%d concurrent Saves won, want exactly 1", won)
	}
}

// TestStoreHoldsNoSecrets looks through every key and value ever written
// for what must never reach the disk.
func TestStoreHoldsNoSecrets(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	_, code := f.create(t, n)
	u := f.activate(t, n, code)
	f.w.Unlock(n, []byte("a wrong passphrase"), "")
	if err := f.w.Deliver(did, []byte("inbox item "+canary)); err != nil {
		t.Fatal(err)
	}
	a, c, err := f.w.Open(u.Account.ID, u.Key) // the failure moved the version
	if err != nil {
		t.Fatal(err)
	}
	if err := f.w.Save(a, c, u.Key); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := f.w.Replace(n, did, contents(did), []byte(newPass)); err != nil {
		t.Fatal(err)
	}
	inbox, err := inboxKey(u.Contents)
	if err != nil {
		t.Fatal(err)
	}

	secrets := map[string][]byte{
		"ID number":         []byte(n.String()),
		"ID number body":    []byte(n.String()[:17]),
		"passphrase":        pass,
		"new passphrase":    []byte(newPass),
		"activation code":   []byte(code),
		"credential":        []byte(canary),
		"signing key":       contents(did).Key,
		"wallet key":        u.Key.k[:],
		"inbox private key": inbox.Bytes(),
	}
	for name, s := range secrets {
		forms := [][]byte{s, []byte(hex.EncodeToString(s)), []byte(base64.StdEncoding.EncodeToString(s)), []byte(base64.RawURLEncoding.EncodeToString(s))}
		for _, v := range f.kv.all {
			for _, form := range forms {
				if bytes.Contains(v, form) {
					t.Errorf("the store holds the %s", name)
				}
			}
		}
	}
	if len(f.kv.all) == 0 {
		t.Fatal("nothing recorded")
	}
}

func TestSession(t *testing.T) {
	f := newFixture(t)
	n := number(t, 1)
	_, code := f.create(t, n)
	u := f.activate(t, n, code)
	cookie := bytes.Repeat([]byte{1}, SessionKeySize)
	blob, err := SealSession(cookie, u.Account.ID, u.Key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, u.Key.k[:]) {
		t.Fatal("session blob holds the wallet key in the clear")
	}
	id, k, err := OpenSession(cookie, blob)
	if err != nil || id != u.Account.ID {
		t.Fatalf("OpenSession() = %q, %v", id, err)
	}
	if _, _, err := f.w.Open(id, k); err != nil {
		t.Errorf("Open() with the session's key = %v", err)
	}

	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name   string
		cookie []byte
		blob   []byte
	}{
		{"wrong key", bytes.Repeat([]byte{2}, SessionKeySize), blob},
		{"short key", cookie[:16], blob},
		{"tampered", cookie, tampered},
		{"truncated", cookie, blob[:len(blob)-1]},
		{"empty", cookie, nil},
	}
	for _, tt := range tests {
		if _, _, err := OpenSession(tt.cookie, tt.blob); !errors.Is(err, ErrSession) {
			t.Errorf("%s: OpenSession() = %v, want ErrSession", tt.name, err)
		}
	}
	if _, err := SealSession(cookie[:16], u.Account.ID, u.Key); err == nil {
		t.Error("SealSession() with a short key succeeded")
	}
	if _, err := SealSession(cookie, u.Account.ID, WalletKey{}); err == nil {
		t.Error("SealSession() with no wallet key succeeded")
	}
}

func TestWalletKeyDoesNotPrint(t *testing.T) {
	k, err := newWalletKey()
	if err != nil {
		t.Fatal(err)
	}
	u := Unlocked{Key: k}
	s := fmt.Sprintf("%v %+v %#v %s %v", k, k, k, k, u)
	for _, form := range []string{hex.EncodeToString(k.k[:]), fmt.Sprint(k.k[:]), fmt.Sprint(k.k)} {
		if strings.Contains(s, form) {
			t.Errorf("wallet key printed: %s", s)
		}
	}
}

func FuzzOpenSession(f *testing.F) {
	cookie := bytes.Repeat([]byte{1}, SessionKeySize)
	k, _ := newWalletKey()
	blob, _ := SealSession(cookie, strings.Repeat("ab", idSize), k)
	f.Add(blob)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, _, err := OpenSession(cookie, b)
		if err == nil && !validID(id) {
			t.Errorf("OpenSession() accepted id %q", id)
		}
	})
}

// TestNoAccountTakesAsLong checks the decoy: without it, ErrNoAccount would
// come back in microseconds and tell a guesser which ID numbers have
// wallets here.
func TestNoAccountTakesAsLong(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	f := newFixture(t)
	f.w.Params = wallet.Params{Time: 2, MemoryKiB: 16 << 10, Threads: 1}
	n := number(t, 1)
	f.create(t, n)
	fastest := func(n idnumber.Number, want error) time.Duration {
		best := time.Hour
		for range 3 {
			t0 := time.Now()
			if _, err := f.w.Unlock(n, []byte("a wrong passphrase"), ""); !errors.Is(err, want) {
				t.Fatalf("Unlock() = %v, want %v", err, want)
			}
			best = min(best, time.Since(t0))
		}
		return best
	}
	wrong := fastest(n, ErrWrongPassphrase)
	none := fastest(number(t, 2), ErrNoAccount)
	if none < wrong/3 {
		t.Errorf("ErrNoAccount took %v, ErrWrongPassphrase %v: the decoy is not running", none, wrong)
	}
}

func TestChangePassphrase(t *testing.T) {
	f := newFixture(t)
	n := number(t, 40)
	_, code := f.create(t, n)
	u := f.activate(t, n, code)
	next := []byte("a different passphrase entirely")
	if err := f.w.ChangePassphrase(u.Account.ID, []byte("not the passphrase"), next); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("with a wrong current passphrase: %v, want ErrWrongPassphrase", err)
	}
	if a, _ := f.w.Store.Account(u.Account.ID); a.Failures != 0 {
		t.Errorf("a wrong current passphrase counted %d failed sign-ins", a.Failures)
	}
	if err := f.w.ChangePassphrase(u.Account.ID, pass, next); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Unlock(n, pass, ""); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("the old passphrase after the change: %v, want ErrWrongPassphrase", err)
	}
	u2, err := f.w.Unlock(n, next, "")
	if err != nil {
		t.Fatalf("the new passphrase: %v", err)
	}
	if u2.Contents.DID != did || len(u2.Contents.Credentials) != 1 {
		t.Errorf("the wallet after the change holds %+v", u2.Contents)
	}
	// A session opened before the change goes on: the wallet key is the same.
	if _, _, err := f.w.Open(u.Account.ID, u.Key); err != nil {
		t.Errorf("an open session after the change: %v", err)
	}
	if err := f.w.ChangePassphrase("no-such-account", next, pass); !errors.Is(err, ErrNoAccount) {
		t.Errorf("an unknown account: %v, want ErrNoAccount", err)
	}
}

func TestDelete(t *testing.T) {
	f := newFixture(t)
	n := number(t, 41)
	a, code := f.create(t, n)
	u := f.activate(t, n, code)
	if err := f.w.Deliver(did, []byte("waiting")); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Delete(a.ID, []byte("wrong passphrase")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("with a wrong passphrase: %v", err)
	}
	if err := f.w.Delete(a.ID, pass); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.ByNumber(n); !errors.Is(err, ErrNoAccount) {
		t.Errorf("found by number after deletion: %v", err)
	}
	if _, err := f.w.Store.ByDID(did); !errors.Is(err, ErrNoAccount) {
		t.Errorf("found by DID after deletion: %v", err)
	}
	if _, _, err := f.w.Open(u.Account.ID, u.Key); !errors.Is(err, ErrNoAccount) {
		t.Errorf("a session after deletion: %v", err)
	}
	for _, prefix := range []string{accountPrefix, lookupPrefix, didPrefix, inboxPrefix} {
		if vs, _ := f.kv.List(prefix); len(vs) != 0 {
			t.Errorf("%d records left under %s", len(vs), prefix)
		}
	}
	// The same person may be given a new wallet at the counter.
	if _, _, err := f.w.Create(n, did, contents(did), pass); err != nil {
		t.Errorf("a new wallet after deletion: %v", err)
	}
}
