package hosted

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/imi-city/imi/internal/wallet"
)

const (
	walletKeySize = 32

	// SessionKeySize is the length of the key SealSession takes: the half
	// of a portal session that only the browser's cookie carries.
	SessionKeySize = chacha20poly1305.KeySize

	sessionLabel = "imi/v1/hosted-session"
)

// keyedParams is the Argon2id cost of the contents layer: the least the
// wallet format accepts. Its "passphrase" is a uniformly random 256-bit
// key, which no amount of stretching makes harder to guess.
var keyedParams = wallet.Params{Time: 1, MemoryKiB: 8, Threads: 1}

// ErrSession is returned by OpenSession for a blob that does not open under
// the key: tampered, truncated, or paired with another session's cookie.
var ErrSession = errors.New("hosted-wallet session does not open")

// WalletKey is the random key an account's contents are sealed under. It
// cannot be printed or compared with ==, so it does not end up in a log
// line or a map key by accident.
type WalletKey struct {
	_ [0]func()
	k [walletKeySize]byte
}

func newWalletKey() (WalletKey, error) {
	var k WalletKey
	if _, err := rand.Read(k.k[:]); err != nil {
		return WalletKey{}, fmt.Errorf("couldn't generate wallet key: %w", err)
	}
	return k, nil
}

// String never shows key material.
func (WalletKey) String() string { return "hosted.WalletKey(redacted)" }

// GoString never shows key material.
func (k WalletKey) GoString() string { return k.String() }

// LogValue never shows key material.
func (k WalletKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// IsZero reports whether k holds no key.
func (k WalletKey) IsZero() bool { return k.k == [walletKeySize]byte{} }

// Wipe zeroes k.
func (k *WalletKey) Wipe() { clear(k.k[:]) }

// text is k in the form wallet.Seal takes as a passphrase. The caller
// clears it.
func (k WalletKey) text() []byte {
	return base64.RawURLEncoding.AppendEncode(nil, k.k[:])
}

// sealContents is the contents layer: the CLI wallet format, keyed by k.
func sealContents(c *wallet.Contents, k WalletKey) ([]byte, error) {
	t := k.text()
	defer clear(t)
	return wallet.Seal(c, t, keyedParams, nil)
}

func openContents(b []byte, k WalletKey) (*wallet.Contents, error) {
	t := k.text()
	defer clear(t)
	c, err := wallet.Open(b, t)
	if errors.Is(err, wallet.ErrWrongPassphrase) {
		// The key came from the account's own wrap or from a session;
		// a mismatch means the wrong session, not a resident's typo.
		return nil, fmt.Errorf("%w: wallet key does not match", wallet.ErrCorrupt)
	}
	return c, err
}

// wrap is the passphrase layer: k and the DID it belongs to, in the CLI
// wallet format under the resident's passphrase at cost p. Reusing the
// format means one Argon2id envelope, one parser and one passphrase check
// for both kinds of wallet.
func wrap(did string, k WalletKey, passphrase []byte, p wallet.Params) ([]byte, error) {
	c := &wallet.Contents{DID: did, Key: k.k[:]}
	return wallet.Seal(c, passphrase, p, nil)
}

// unwrap returns the wallet key of a, or wallet.ErrWrongPassphrase.
func unwrap(a *Account, passphrase []byte) (WalletKey, error) {
	c, err := wallet.Open(a.WrappedKey, passphrase)
	if err != nil {
		return WalletKey{}, err
	}
	defer c.Wipe()
	if c.DID != a.DID || len(c.Key) != walletKeySize || len(c.Credentials) != 0 || c.RecoveryKey != nil || c.Extra != nil {
		return WalletKey{}, fmt.Errorf("%w: wrapped key does not belong to this account", wallet.ErrCorrupt)
	}
	var k WalletKey
	copy(k.k[:], c.Key)
	return k, nil
}

// SealSession seals what a signed-in portal session needs, the account id
// and its wallet key, under cookieKey (SessionKeySize random bytes that
// only the browser's cookie carries). The node keeps the blob; neither the
// blob nor the cookie opens the wallet alone, and forgetting the blob ends
// the session for good.
func SealSession(cookieKey []byte, accountID string, k WalletKey) ([]byte, error) {
	if len(cookieKey) != SessionKeySize {
		return nil, fmt.Errorf("couldn't seal session: key is %d bytes, want %d", len(cookieKey), SessionKeySize)
	}
	if !validID(accountID) || k.IsZero() {
		return nil, errors.New("couldn't seal session: no account or wallet key")
	}
	aead, err := chacha20poly1305.NewX(cookieKey)
	if err != nil {
		return nil, err
	}
	// A fresh random 192-bit nonce per blob: the portal may seal under one
	// cookie key more than once.
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+walletKeySize+len(accountID)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("couldn't seal session: %w", err)
	}
	plain := make([]byte, 0, walletKeySize+len(accountID))
	plain = append(plain, k.k[:]...)
	plain = append(plain, accountID...)
	defer clear(plain)
	return aead.Seal(out, out, plain, []byte(sessionLabel)), nil
}

// OpenSession opens a blob made by SealSession. Every failure is
// ErrSession.
func OpenSession(cookieKey, blob []byte) (accountID string, k WalletKey, err error) {
	if len(cookieKey) != SessionKeySize {
		return "", WalletKey{}, ErrSession
	}
	aead, err := chacha20poly1305.NewX(cookieKey)
	if err != nil {
		return "", WalletKey{}, ErrSession
	}
	n := aead.NonceSize()
	if len(blob) != n+walletKeySize+2*idSize+aead.Overhead() {
		return "", WalletKey{}, ErrSession
	}
	plain, err := aead.Open(nil, blob[:n], blob[n:], []byte(sessionLabel))
	if err != nil {
		return "", WalletKey{}, ErrSession
	}
	defer clear(plain)
	id := plain[walletKeySize:]
	if !validID(string(id)) {
		return "", WalletKey{}, ErrSession
	}
	copy(k.k[:], plain[:walletKeySize])
	return string(id), k, nil
}
