// Package hosted keeps the wallets of residents who use the web portal
// instead of the command line. The node stores only ciphertext: the
// passphrase is never stored, and neither the wallet's key nor its contents
// are ever written unencrypted.
//
// # Two layers
//
// An account's wallet is sealed in two layers, both in the CLI wallet format
// of package wallet (Argon2id, XChaCha20-Poly1305, authenticated header):
//
//	Wallet     = wallet.Seal(contents,       K,          least cost)
//	WrappedKey = wallet.Seal({DID, Key: K},  passphrase, Params)
//
// K is 32 random bytes made when the account is, one per account. Signing
// in opens WrappedKey with the passphrase (one Argon2id run at Params) and
// then Wallet with K. The portal session keeps K, sealed under a key that
// only the browser's cookie carries (SealSession), so it can Save changed
// contents (a collected credential, a new pseudonym secret) under K without
// holding the passphrase.
//
// Why this is safe:
//
//   - Someone with a copy of the store pays one Argon2id run per passphrase
//     guess, as against a CLI wallet file: K is reachable only through
//     WrappedKey, and Wallet is sealed under K, 256 random bits that cannot be
//     guessed. For the same reason the Wallet layer needs no stretching and
//     uses the least Argon2id cost the format allows, so Save is cheap.
//   - Both layers are AEADs with authenticated headers: a changed byte fails
//     to open rather than decrypting to something else. WrappedKey carries
//     the DID, so a wrap copied onto another account is refused.
//   - A session's blob on the node and the key in the cookie are each useless
//     alone, so the node's memory alone does not open a wallet, and
//     forgetting the blob ends the session for good.
//   - K lives as long as the account. Whoever once held it (a session) could
//     open later ciphertexts read from the store; a resident who fears that
//     has the account replaced at the counter, which makes a new K.
//
// # Finding an account
//
// The store holds no ID number. An account is found by Lookup, an HMAC of
// the normalised ID number under a key that never leaves the node: ID
// numbers are few enough to hash them all, so an unkeyed hash would hide
// nothing. The first sign-in also needs a one-time activation code handed
// out at the counter, which the store keeps only as an HMAC under the same
// key.
//
// # Guessing
//
// After MaxFailures wrong passphrases or codes in a row an account is locked
// for LockoutPeriod, and every further failure locks it again until one
// sign-in succeeds. The lock is checked before the passphrase, so a locked
// account answers nothing about it. Unlock for an ID number with no account
// still runs one Argon2id derivation at Params before returning
// ErrNoAccount, so the time a refusal takes does not tell which ID numbers
// have wallets here (what is left is the store write that counts a failure,
// small beside the Argon2id run). The portal should show ErrNoAccount and
// ErrWrongPassphrase as one message.
//
// # Inbox
//
// An authority issuing a credential to a hosted-wallet resident cannot write
// into the sealed wallet, so each account has an X25519 inbox key: the
// private half in the wallet contents (Extra[InboxKeyField]), the public half
// in the Account. Deliver seals an item to it with HPKE; Collect opens the
// inbox inside a signed-in session.
package hosted

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/wallet"
)

const (
	// MaxFailures wrong passphrases or activation codes in a row lock an
	// account.
	MaxFailures = 5
	// LockoutPeriod is how long a lock lasts.
	LockoutPeriod = 15 * time.Minute

	idSize = 16 // random bytes of an account id

	// retries bounds how often a step re-reads an account that another
	// request changed under it.
	retries = 8
)

var (
	// ErrNoAccount: no hosted wallet for this ID number, DID or id.
	ErrNoAccount = errors.New("no hosted wallet")
	// ErrExists: Create found a hosted wallet for the ID number or DID.
	ErrExists = errors.New("a hosted wallet already exists for this resident")
	// ErrWrongPassphrase is wallet.ErrWrongPassphrase, so either name
	// matches it.
	ErrWrongPassphrase = wallet.ErrWrongPassphrase
	// ErrActivationNeeded: the passphrase was right, but this is the first
	// sign-in and the activation code was missing or wrong.
	ErrActivationNeeded = errors.New("activation code needed")
	// ErrLocked: too many failed sign-ins; errors.As gives a *LockedError
	// with the time the lock ends.
	ErrLocked = errors.New("hosted wallet locked after too many failed sign-ins")
	// ErrConflict: the account changed since it was read. Read it again,
	// re-apply the change and save again.
	ErrConflict = errors.New("hosted wallet changed since it was read")
)

// LockedError is the detail of ErrLocked.
type LockedError struct{ Until time.Time }

func (e *LockedError) Error() string {
	return fmt.Sprintf("%v until %s", ErrLocked, e.Until.Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Account is one hosted wallet as the store keeps it. Nothing in it is
// personal data in the clear: Lookup is keyed, the wallet is sealed, and
// the DID and status references are public on the ledger anyway.
type Account struct {
	ID         string `json:"id"`     // random, not derived from the resident
	Lookup     []byte `json:"lookup"` // Lookup(key, ID number)
	DID        string `json:"did"`
	Wallet     []byte `json:"wallet"`      // contents under K
	WrappedKey []byte `json:"wrapped_key"` // K under the passphrase
	// Activation is the HMAC of the one-time activation code, until the
	// first sign-in uses it.
	Activation  []byte      `json:"activation,omitempty"`
	Activated   bool        `json:"activated"`
	Failures    int         `json:"failures"` // failed sign-ins in a row
	LockedUntil time.Time   `json:"locked_until"`
	Credentials []StatusRef `json:"credentials"`
	InboxKey    []byte      `json:"inbox_key"` // X25519 public key
	Version     uint64      `json:"version"`   // for optimistic concurrency
	Created     time.Time   `json:"created"`
	Updated     time.Time   `json:"updated"`
}

// StatusRef locates one credential's status bit, so that a re-proof at the
// counter can revoke what the old wallet held without opening it. Save keeps
// the list in step with the contents.
type StatusRef struct {
	IssuerID     string `json:"issuer_id"` // authority id
	StatusList   string `json:"status_list"`
	Index        uint64 `json:"index"`
	Type         string `json:"type"`
	CredentialID string `json:"credential_id"`
}

// Wallets is the node's hosted wallets. Its fields are its configuration.
type Wallets struct {
	// Store keeps the accounts: NewStore over the node's off-chain store.
	Store Store
	// LookupKey keys Lookup and the activation codes: LoadLookupKey.
	LookupKey key.HMAC
	// Params is the Argon2id cost of the passphrase layer of new accounts,
	// and of the decoy run for an ID number with no account; the two must
	// match for the decoy to work. Zero means wallet.DefaultParams.
	Params wallet.Params
	// Now is the clock for lockouts and timestamps; nil means time.Now.
	Now func() time.Time
	// MaxFailures in a row lock an account for LockoutPeriod; 0 means the
	// constant MaxFailures. A front end that throttles each client itself
	// sets it higher, so that one client alone cannot lock a resident out.
	MaxFailures int
}

// Unlocked is the result of a successful sign-in.
type Unlocked struct {
	Account  *Account
	Contents *wallet.Contents
	// Key opens and re-seals the contents; keep it only in SealSession.
	Key WalletKey
}

func (w *Wallets) maxFailures() int {
	if w.MaxFailures <= 0 {
		return MaxFailures
	}
	return w.MaxFailures
}

func (w *Wallets) now() time.Time {
	if w.Now == nil {
		return time.Now()
	}
	return w.Now()
}

func (w *Wallets) params() wallet.Params {
	if w.Params == (wallet.Params{}) {
		return wallet.DefaultParams
	}
	return w.Params
}

// check refuses a Wallets without a Store, and without a LookupKey when n
// is to be looked up (an empty HMAC key would make Lookup a plain hash).
func (w *Wallets) check(n *idnumber.Number) error {
	if w.Store == nil {
		return errors.New("hosted: Wallets needs a Store")
	}
	if n == nil {
		return nil
	}
	if len(w.LookupKey.Bytes()) == 0 {
		return errors.New("hosted: Wallets needs a LookupKey")
	}
	if n.String() == "" {
		return errors.New("hosted: unparsed ID number")
	}
	return nil
}

// Create makes a hosted wallet for the resident with ID number n and DID
// did, holding c (whose DID must be did) under passphrase. It adds the
// inbox key to c.Extra. The activation code is returned once, to be handed
// to the resident, and is never stored. ErrExists if the resident already
// has one; Replace is the way to a new one.
func (w *Wallets) Create(n idnumber.Number, did string, c *wallet.Contents, passphrase []byte) (*Account, string, error) {
	if err := w.check(&n); err != nil {
		return nil, "", err
	}
	if _, err := w.Store.ByLookup(Lookup(w.LookupKey, n)); err == nil {
		return nil, "", ErrExists
	} else if !errors.Is(err, ErrNoAccount) {
		return nil, "", err
	}
	a, code, err := w.newAccount(n, did, c, passphrase)
	if err != nil {
		return nil, "", err
	}
	if err := w.Store.Create(a); err != nil {
		return nil, "", err
	}
	return a, code, nil
}

// Replace is recovery after a re-proof at the counter: the resident's
// account is replaced by a new one (new id, wallet key, inbox key and
// activation code) holding c under the new passphrase. The old one is gone,
// its inbox with it, and its passphrase and sessions open nothing. It
// returns the old account's status references so that the caller can
// revoke what the old wallet held. ErrNoAccount if there was none.
func (w *Wallets) Replace(n idnumber.Number, did string, c *wallet.Contents, passphrase []byte) (*Account, string, []StatusRef, error) {
	if err := w.check(&n); err != nil {
		return nil, "", nil, err
	}
	lookup := Lookup(w.LookupKey, n)
	old, err := w.Store.ByLookup(lookup)
	if err != nil {
		return nil, "", nil, err
	}
	a, code, err := w.newAccount(n, did, c, passphrase)
	if err != nil {
		return nil, "", nil, err
	}
	for range retries {
		err = w.Store.Replace(old, a)
		if !errors.Is(err, ErrConflict) {
			break
		}
		if old, err = w.Store.ByLookup(lookup); err != nil {
			return nil, "", nil, err
		}
	}
	if err != nil {
		return nil, "", nil, err
	}
	return a, code, old.Credentials, nil
}

func (w *Wallets) newAccount(n idnumber.Number, did string, c *wallet.Contents, passphrase []byte) (*Account, string, error) {
	if c == nil || did == "" || c.DID != did {
		return nil, "", errors.New("couldn't create hosted wallet: the contents must be of the DID")
	}
	var id [idSize]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, "", fmt.Errorf("couldn't create hosted wallet: %w", err)
	}
	k, err := newWalletKey()
	if err != nil {
		return nil, "", err
	}
	defer k.Wipe()
	inbox, err := newInboxKey(c)
	if err != nil {
		return nil, "", err
	}
	code, err := newCode()
	if err != nil {
		return nil, "", err
	}
	now := w.now().UTC()
	a := &Account{
		ID:          hex.EncodeToString(id[:]),
		Lookup:      Lookup(w.LookupKey, n),
		DID:         did,
		InboxKey:    inbox,
		Credentials: statusRefs(c),
		Created:     now,
		Updated:     now,
	}
	a.Activation = codeHash(w.LookupKey, a.ID, code)
	if a.WrappedKey, err = wrap(did, k, passphrase, w.params()); err != nil {
		return nil, "", fmt.Errorf("couldn't create hosted wallet: %w", err)
	}
	if a.Wallet, err = sealContents(c, k); err != nil {
		return nil, "", fmt.Errorf("couldn't create hosted wallet: %w", err)
	}
	return a, code, nil
}

// Unlock signs a resident in with ID number n, passphrase and, the first
// time, the activation code (ignored later). Failures are ErrNoAccount,
// ErrWrongPassphrase, ErrActivationNeeded and ErrLocked; the attempt that
// reaches the lock is both ErrWrongPassphrase (or ErrActivationNeeded) and
// ErrLocked. A missing code with the right passphrase is not counted as a
// failure: it is how the portal learns to ask for the code.
func (w *Wallets) Unlock(n idnumber.Number, passphrase []byte, code string) (*Unlocked, error) {
	if err := w.check(&n); err != nil {
		return nil, err
	}
	now := w.now().UTC()
	a, err := w.Store.ByLookup(Lookup(w.LookupKey, n))
	if errors.Is(err, ErrNoAccount) {
		w.decoy(passphrase)
		return nil, ErrNoAccount
	}
	if err != nil {
		return nil, err
	}
	if err := lockedAt(a, now); err != nil {
		return nil, err
	}
	k, err := unwrap(a, passphrase)
	passOK := err == nil
	if err != nil && !errors.Is(err, ErrWrongPassphrase) {
		return nil, err
	}
	defer k.Wipe() // Unlocked holds its own copy
	wrapped := a.WrappedKey

	// Record the outcome. Another sign-in may change the account
	// meanwhile; the lock is checked again on every re-read, so parallel
	// guesses get no more tries than sequential ones.
	var fail error
	for i := 0; ; i++ {
		if i == retries {
			return nil, ErrConflict
		}
		var count bool
		fail, count = w.judge(a, passOK, code)
		if fail != nil && !count {
			return nil, fail
		}
		b := *a
		if fail != nil {
			b.Failures++
			if b.Failures >= w.maxFailures() {
				b.LockedUntil = now.Add(LockoutPeriod)
			}
		} else {
			b.Failures, b.LockedUntil = 0, time.Time{}
			b.Activated, b.Activation = true, nil
		}
		if b.Failures == a.Failures && b.LockedUntil.Equal(a.LockedUntil) && b.Activated == a.Activated {
			break // nothing to record; a write would only move the version
		}
		b.Updated = now
		err := w.Store.Update(&b)
		if err == nil {
			a = &b
			break
		}
		if !errors.Is(err, ErrConflict) {
			return nil, err
		}
		if a, err = w.Store.Account(a.ID); err != nil {
			return nil, err
		}
		if !bytes.Equal(a.WrappedKey, wrapped) {
			return nil, ErrConflict
		}
		if err := lockedAt(a, now); err != nil {
			return nil, err
		}
	}
	if fail != nil {
		if !a.LockedUntil.IsZero() && now.Before(a.LockedUntil) {
			return nil, fmt.Errorf("%w; %w", fail, &LockedError{Until: a.LockedUntil})
		}
		return nil, fail
	}
	c, err := w.open(a, k)
	if err != nil {
		return nil, err
	}
	return &Unlocked{Account: a, Contents: c, Key: k}, nil
}

// judge returns the failure an attempt is, and whether it counts towards
// the lock.
func (w *Wallets) judge(a *Account, passOK bool, code string) (fail error, count bool) {
	switch {
	case !passOK:
		return ErrWrongPassphrase, true
	case a.Activated:
		return nil, false
	case normCode(code) == "":
		return ErrActivationNeeded, false
	case len(a.Activation) == 0 || !hmac.Equal(codeHash(w.LookupKey, a.ID, normCode(code)), a.Activation):
		return ErrActivationNeeded, true
	}
	return nil, false
}

func lockedAt(a *Account, now time.Time) error {
	if now.Before(a.LockedUntil) {
		return &LockedError{Until: a.LockedUntil}
	}
	return nil
}

// decoy spends what checking a passphrase against an account would, so
// that ErrNoAccount comes no faster than ErrWrongPassphrase.
func (w *Wallets) decoy(passphrase []byte) {
	p := w.params()
	clear(argon2.IDKey(passphrase, make([]byte, 16), max(p.Time, 1), p.MemoryKiB, max(p.Threads, 1), 32))
}

// ByNumber finds the account of ID number n without opening anything: for
// the counter, to see whether a resident has a hosted wallet and its DID.
func (w *Wallets) ByNumber(n idnumber.Number) (*Account, error) {
	if err := w.check(&n); err != nil {
		return nil, err
	}
	return w.Store.ByLookup(Lookup(w.LookupKey, n))
}

// Open reads the account with id and opens its contents with k: what a
// signed-in request does with what OpenSession returned. ErrNoAccount once
// the account has been replaced.
func (w *Wallets) Open(id string, k WalletKey) (*Account, *wallet.Contents, error) {
	if err := w.check(nil); err != nil {
		return nil, nil, err
	}
	a, err := w.Store.Account(id)
	if err != nil {
		return nil, nil, err
	}
	c, err := w.open(a, k)
	if err != nil {
		return nil, nil, err
	}
	return a, c, nil
}

func (w *Wallets) open(a *Account, k WalletKey) (*wallet.Contents, error) {
	c, err := openContents(a.Wallet, k)
	if err != nil {
		return nil, fmt.Errorf("couldn't open hosted wallet: %w", err)
	}
	if c.DID != a.DID {
		c.Wipe()
		return nil, fmt.Errorf("couldn't open hosted wallet: %w: contents of another DID", wallet.ErrCorrupt)
	}
	return c, nil
}

// Save re-seals c, changed, as a's wallet under k, and refreshes a's status
// references, without the passphrase. It returns ErrConflict if a changed
// since it was read (then Open again, re-apply, Save again) and ErrNoAccount
// if it was replaced. On success a is the stored account.
func (w *Wallets) Save(a *Account, c *wallet.Contents, k WalletKey) error {
	if err := w.check(nil); err != nil {
		return err
	}
	if c == nil || c.DID != a.DID {
		return errors.New("couldn't save hosted wallet: contents of another DID")
	}
	// A wallet sealed under the wrong key, or without its inbox key, would
	// be lost to its resident: refuse both before writing.
	old, err := openContents(a.Wallet, k)
	if err != nil {
		return fmt.Errorf("couldn't save hosted wallet: %w", err)
	}
	old.Wipe()
	if err := checkInboxKey(a, c); err != nil {
		return fmt.Errorf("couldn't save hosted wallet: %w", err)
	}
	b := *a
	if b.Wallet, err = sealContents(c, k); err != nil {
		return fmt.Errorf("couldn't save hosted wallet: %w", err)
	}
	b.Credentials = statusRefs(c)
	b.Updated = w.now().UTC()
	if err := w.Store.Update(&b); err != nil {
		return err
	}
	*a = b
	return nil
}

// ChangePassphrase wraps the wallet key of the account with id under a new
// passphrase, once old opens the current wrap. The contents and the wallet
// key stay as they are, so open sessions go on; the old passphrase stops
// working. ErrWrongPassphrase if old is wrong (not counted as a failed
// sign-in: the caller is signed in and limits its own tries), ErrConflict
// if the account changed meanwhile.
func (w *Wallets) ChangePassphrase(id string, old, next []byte) error {
	if err := w.check(nil); err != nil {
		return err
	}
	a, err := w.Store.Account(id)
	if err != nil {
		return err
	}
	k, err := unwrap(a, old)
	if err != nil {
		return err
	}
	defer k.Wipe()
	b := *a
	if b.WrappedKey, err = wrap(a.DID, k, next, w.params()); err != nil {
		return fmt.Errorf("couldn't change the passphrase: %w", err)
	}
	b.Updated = w.now().UTC()
	return w.Store.Update(&b)
}

// Delete erases the account with id, once passphrase opens it: the sealed
// wallet, its wrapped key, its inbox and its indexes. Nothing is left that
// opens or finds it (crypto-shredding: the chain keeps only pseudonymous
// records nobody can link to the resident any more). ErrWrongPassphrase
// if the passphrase is wrong.
func (w *Wallets) Delete(id string, passphrase []byte) error {
	if err := w.check(nil); err != nil {
		return err
	}
	a, err := w.Store.Account(id)
	if err != nil {
		return err
	}
	k, err := unwrap(a, passphrase)
	if err != nil {
		return err
	}
	k.Wipe()
	return w.Store.Remove(a)
}

func statusRefs(c *wallet.Contents) []StatusRef {
	var out []StatusRef
	for _, cr := range c.Credentials {
		if cr.StatusURI == "" {
			continue // nothing to revoke
		}
		out = append(out, StatusRef{
			IssuerID:     cr.IssuerID,
			StatusList:   cr.StatusURI,
			Index:        cr.StatusIdx,
			Type:         cr.Type,
			CredentialID: cr.ID,
		})
	}
	return out
}
