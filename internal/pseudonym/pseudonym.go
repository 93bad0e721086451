// Package pseudonym derives the names a resident has on the ledger's consent
// and access records: one per authority, so records of one resident with two
// authorities cannot be linked by anyone but the resident.
//
// A pseudonym is a self-certifying Ed25519 public key, "psn:<base64url>". The
// wallet derives its private key from a wallet secret and the authority's id
// with HKDF, so the wallet can always re-derive every pseudonym it has and
// show the resident's complete log, while the keys reveal nothing about each
// other or about the resident's DID: HKDF outputs under different labels are
// independent, and nothing on the chain ties a pseudonym to a DID.
package pseudonym

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/imi-city/imi/internal/key"
)

const (
	// Prefix starts every pseudonym.
	Prefix = "psn:"
	// SecretSize is the size of a wallet's pseudonym secret.
	SecretSize = 32
	label      = "imi/v1/pseudonym"
	encLen     = 43 // base64url of 32 bytes, no padding
)

// ErrSyntax is returned for any string that is not a pseudonym.
var ErrSyntax = errors.New("not a pseudonym")

// ID is a parsed pseudonym.
type ID struct{ k key.Public }

// Parse accepts exactly "psn:" and 43 base64url characters of an Ed25519 key.
func Parse(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok || len(rest) != encLen {
		return ID{}, fmt.Errorf("%w: want %q and %d base64url characters", ErrSyntax, Prefix, encLen)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	k, err := key.PublicFromBytes(b)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return ID{k: k}, nil
}

// Is reports whether s looks like a pseudonym (it may still fail Parse).
func Is(s string) bool { return strings.HasPrefix(s, Prefix) }

// FromKey names the pseudonym whose key is k.
func FromKey(k key.Public) ID { return ID{k: k} }

// Key is the key that signs for the pseudonym.
func (p ID) Key() key.Public { return p.k }

// String returns "psn:<base64url>".
func (p ID) String() string { return Prefix + base64.RawURLEncoding.EncodeToString(p.k.Bytes()) }

// IsZero reports whether p is the zero value.
func (p ID) IsZero() bool { return p.k.IsZero() }

// NewSecret returns a fresh wallet pseudonym secret. It is kept apart from the
// DID key so that rotating or recovering that key keeps the pseudonyms.
func NewSecret() ([]byte, error) {
	s := make([]byte, SecretSize)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Derive returns the private key of the pseudonym a wallet with secret has
// towards authority.
func Derive(secret []byte, authority string) (key.Private, error) {
	if len(secret) != SecretSize {
		return key.Private{}, fmt.Errorf("pseudonym secret is %d bytes, want %d", len(secret), SecretSize)
	}
	if authority == "" {
		return key.Private{}, errors.New("pseudonym needs an authority")
	}
	seed, err := hkdf.Key(sha256.New, secret, []byte(label), authority, 32)
	if err != nil {
		return key.Private{}, err
	}
	return key.FromSeed(seed)
}
