// Package key holds IMI's typed Ed25519 keys and their file and text forms.
//
// A Private key cannot be printed or compared with ==, so it does not end up in
// a log line or a map key by accident. Text forms carry a prefix that names the
// kind of key, so a public key pasted where a private one is expected is caught.
package key

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const (
	publicPrefix  = "ed25519-pub:"
	privateType   = "imi-ed25519-private-key"
	hmacType      = "imi-hmac-sha256-key"
	hmacKeySize   = 32
	fileMode      = 0o600
	recoveryLabel = "imi/v1/recovery-key-hash"
)

// ErrBadKey is returned for any malformed key text or key file.
var ErrBadKey = errors.New("malformed key")

// Public is an Ed25519 public key.
type Public struct{ k [ed25519.PublicKeySize]byte }

// PublicFromBytes checks the length and copies b.
func PublicFromBytes(b []byte) (Public, error) {
	var p Public
	if len(b) != ed25519.PublicKeySize {
		return p, fmt.Errorf("%w: public key is %d bytes, want %d", ErrBadKey, len(b), ed25519.PublicKeySize)
	}
	copy(p.k[:], b)
	return p, nil
}

// ParsePublic parses the text form "ed25519-pub:<base64url>".
func ParsePublic(s string) (Public, error) {
	rest, ok := strings.CutPrefix(s, publicPrefix)
	if !ok {
		return Public{}, fmt.Errorf("%w: public key must start with %q", ErrBadKey, publicPrefix)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return Public{}, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return PublicFromBytes(b)
}

// String returns the text form "ed25519-pub:<base64url>".
func (p Public) String() string { return publicPrefix + base64.RawURLEncoding.EncodeToString(p.k[:]) }

// Bytes returns a copy of the raw 32 bytes.
func (p Public) Bytes() []byte { return bytes.Clone(p.k[:]) }

// Ed25519 returns the key for crypto/ed25519.
func (p Public) Ed25519() ed25519.PublicKey { return ed25519.PublicKey(p.Bytes()) }

// IsZero reports whether p is the zero value.
func (p Public) IsZero() bool { return p.k == [ed25519.PublicKeySize]byte{} }

// Equal reports whether p and o are the same key.
func (p Public) Equal(o Public) bool { return p.k == o.k }

// Verify checks sig over msg. The caller adds the domain-separation label.
func (p Public) Verify(msg, sig []byte) bool {
	if p.IsZero() {
		return false
	}
	return ed25519.Verify(p.k[:], msg, sig)
}

// MarshalText implements encoding.TextMarshaler.
func (p Public) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Public) UnmarshalText(b []byte) error {
	q, err := ParsePublic(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// RecoveryHash is the commitment to a recovery key stored at registration:
// SHA-256 over a label and the key, so the key itself stays offline and unknown
// until it is used once.
func RecoveryHash(p Public) [32]byte {
	h := sha256.New()
	h.Write([]byte(recoveryLabel))
	h.Write([]byte{0})
	h.Write(p.k[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Private is an Ed25519 private key. It has no String method that reveals it,
// and comparing two with == does not compile.
type Private struct {
	_ [0]func() // not comparable
	k ed25519.PrivateKey
}

// Generate makes a new key from the operating system's CSPRNG.
func Generate() (Private, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Private{}, fmt.Errorf("couldn't generate key: %w", err)
	}
	return Private{k: k}, nil
}

// FromSeed builds a key from a 32-byte seed. Tests and deterministic tools use it.
func FromSeed(seed []byte) (Private, error) {
	if len(seed) != ed25519.SeedSize {
		return Private{}, fmt.Errorf("%w: seed is %d bytes, want %d", ErrBadKey, len(seed), ed25519.SeedSize)
	}
	return Private{k: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public returns the matching public key.
func (k Private) Public() Public {
	var p Public
	copy(p.k[:], k.k[ed25519.SeedSize:])
	return p
}

// Sign signs msg. The caller adds the domain-separation label.
func (k Private) Sign(msg []byte) []byte { return ed25519.Sign(k.k, msg) }

// IsZero reports whether k holds no key.
func (k Private) IsZero() bool { return len(k.k) == 0 }

// String never shows key material.
func (k Private) String() string { return "key.Private(" + k.Public().String() + ")" }

// GoString never shows key material.
func (k Private) GoString() string { return k.String() }

type privateFile struct {
	Type   string `json:"type"`
	Public string `json:"public_key"`
	Seed   string `json:"seed"`
}

// WriteFile stores k in a new file readable only by its owner. It refuses to
// overwrite an existing file: losing a key by accident is worse than an error.
func (k Private) WriteFile(path string) error {
	b, err := json.MarshalIndent(privateFile{
		Type:   privateType,
		Public: k.Public().String(),
		Seed:   base64.RawURLEncoding.EncodeToString(k.k.Seed()),
	}, "", "  ")
	if err != nil {
		return err
	}
	return writeNew(path, append(b, '\n'))
}

// Seed returns a copy of the 32-byte seed, for storing the key inside an
// encrypted container such as the resident's wallet. Callers clear it after.
func (k Private) Seed() []byte { return k.k.Seed() }

// ReadFile loads a key written by WriteFile.
func ReadFile(path string) (Private, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Private{}, fmt.Errorf("couldn't read key file: %w", err)
	}
	var f privateFile
	if err := strictJSON(b, &f); err != nil || f.Type != privateType {
		return Private{}, fmt.Errorf("%w: %s is not an IMI private key file", ErrBadKey, path)
	}
	seed, err := base64.RawURLEncoding.Strict().DecodeString(f.Seed)
	if err != nil {
		return Private{}, fmt.Errorf("%w: %s: bad seed", ErrBadKey, path)
	}
	k, err := FromSeed(seed)
	if err != nil {
		return Private{}, err
	}
	if k.Public().String() != f.Public {
		return Private{}, fmt.Errorf("%w: %s: public key does not match the seed", ErrBadKey, path)
	}
	return k, nil
}

// HMAC is a secret key for keyed hashes (the registrar's uniqueness key).
type HMAC struct {
	_ [0]func()
	k []byte
}

// GenerateHMAC makes a new 256-bit key from the CSPRNG.
func GenerateHMAC() (HMAC, error) {
	b := make([]byte, hmacKeySize)
	if _, err := rand.Read(b); err != nil {
		return HMAC{}, fmt.Errorf("couldn't generate key: %w", err)
	}
	return HMAC{k: b}, nil
}

// Bytes returns the secret. Only the keyed-hash code should call it.
func (h HMAC) Bytes() []byte { return h.k }

// String never shows key material.
func (h HMAC) String() string { return "key.HMAC(redacted)" }

type hmacFile struct {
	Type   string `json:"type"`
	Secret string `json:"secret"`
}

// WriteFile stores h in a new owner-only file.
func (h HMAC) WriteFile(path string) error {
	b, err := json.MarshalIndent(hmacFile{Type: hmacType, Secret: base64.RawURLEncoding.EncodeToString(h.k)}, "", "  ")
	if err != nil {
		return err
	}
	return writeNew(path, append(b, '\n'))
}

// ReadHMACFile loads a key written by HMAC.WriteFile.
func ReadHMACFile(path string) (HMAC, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return HMAC{}, fmt.Errorf("couldn't read key file: %w", err)
	}
	var f hmacFile
	if err := strictJSON(b, &f); err != nil || f.Type != hmacType {
		return HMAC{}, fmt.Errorf("%w: %s is not an IMI HMAC key file", ErrBadKey, path)
	}
	s, err := base64.RawURLEncoding.Strict().DecodeString(f.Secret)
	if err != nil || len(s) != hmacKeySize {
		return HMAC{}, fmt.Errorf("%w: %s: bad secret", ErrBadKey, path)
	}
	return HMAC{k: s}, nil
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func writeNew(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("couldn't create key directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return fmt.Errorf("couldn't create key file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("couldn't write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("couldn't write key file: %w", err)
	}
	return f.Close()
}
