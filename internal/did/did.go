// Package did holds IMI's DID method, did:imi, and its W3C DID Core documents.
//
// A did:imi identifier is derived from the first key it was registered with, so
// it carries no personal data and the registrar cannot choose it. The key can
// change later (rotation, recovery); the identifier stays.
package did

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	"github.com/imi-city/imi/internal/key"
)

const (
	// Prefix starts every IMI DID.
	Prefix = "did:imi:"
	// idBytes of the SHA-256 digest are kept: 160 bits make an accidental
	// collision among even a billion DIDs negligible.
	idBytes = 20
	idChars = 32 // base32 of 20 bytes, no padding
	label   = "imi/v1/did"
)

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrSyntax is returned for any string that is not a did:imi identifier.
var ErrSyntax = errors.New("not a did:imi identifier")

// DID is a parsed did:imi identifier.
type DID struct{ id string }

// FromKey derives the DID of a subject whose first key is k.
func FromKey(k key.Public) DID {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write(k.Bytes())
	return DID{id: enc.EncodeToString(h.Sum(nil)[:idBytes])}
}

// Parse accepts exactly "did:imi:" and 32 lower-case base32 characters. Any
// other form, including a DID URL with a path, query or fragment, is refused:
// one identifier has one spelling.
func Parse(s string) (DID, error) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return DID{}, fmt.Errorf("%w: %q must start with %q", ErrSyntax, clip(s), Prefix)
	}
	if len(rest) != idChars {
		return DID{}, fmt.Errorf("%w: the identifier after %q has %d characters, want %d", ErrSyntax, Prefix, len(rest), idChars)
	}
	b, err := enc.DecodeString(rest)
	if err != nil || len(b) != idBytes || enc.EncodeToString(b) != rest {
		return DID{}, fmt.Errorf("%w: %q is not lower-case base32", ErrSyntax, clip(rest))
	}
	return DID{id: rest}, nil
}

// String returns the DID.
func (d DID) String() string {
	if d.id == "" {
		return ""
	}
	return Prefix + d.id
}

// IsZero reports whether d is the zero value.
func (d DID) IsZero() bool { return d.id == "" }

// MarshalText implements encoding.TextMarshaler.
func (d DID) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *DID) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
