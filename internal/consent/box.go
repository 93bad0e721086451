package consent

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imi-city/imi/internal/tx"
)

const (
	kemLabel = "imi/v1/authority-kem"
	boxLabel = "imi/v1/consent-box"

	// bucket is the size of every padded plaintext: a 2-byte big-endian
	// length, the subject's canonical JSON, zeros. A did:imi DID is 40
	// characters, so the largest subject (with a guardian) is 311 bytes of
	// JSON; 512 leaves room and makes every box the same length, so the
	// chain does not show whether a guardian acted.
	bucket    = 512
	lenPrefix = 2
	encSize   = 32 // DHKEM(X25519) encapsulated key
	tagSize   = 16 // ChaCha20Poly1305 tag

	// MaxBox is the largest box the ledger should accept. Every box Seal
	// makes is exactly this long: the encapsulated key, the padded
	// plaintext and the AEAD tag.
	MaxBox = encSize + bucket + tagSize
)

// ErrBadBox is wrapped by every Open failure. The detail never contains
// plaintext.
var ErrBadBox = errors.New("bad consent box")

// suite is the one HPKE ciphersuite: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, ChaCha20Poly1305. There is no negotiation, so nothing to
// downgrade.
var (
	suiteKEM  = hpke.DHKEM(ecdh.X25519())
	suiteKDF  = hpke.HKDFSHA256()
	suiteAEAD = hpke.ChaCha20Poly1305()
)

// KEMKey derives an authority's X25519 key from its Ed25519 seed
// (key.Private.Seed()) with HKDF-SHA256, no salt, info "imi/v1/authority-kem".
// Deriving it, instead of keeping a second key file, means the authority's
// one seed backs up both; the label keeps the two keys independent. The
// public half, PublicKey().Bytes(), goes on the ledger in tx.SetKEMKey.
func KEMKey(authoritySeed []byte) (*ecdh.PrivateKey, error) {
	if len(authoritySeed) != 32 {
		return nil, fmt.Errorf("authority seed is %d bytes, want 32", len(authoritySeed))
	}
	b, err := hkdf.Key(sha256.New, authoritySeed, nil, kemLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("couldn't derive KEM key: %w", err)
	}
	return ecdh.X25519().NewPrivateKey(b)
}

// info binds the HPKE context to ctx, so a box opens only for the grant,
// pseudonym, service and authority it was sealed for.
func info(ctx Context) []byte { return []byte(boxLabel + "\x00" + ctx.join()) }

// Seal encrypts s to an authority's X25519 public key (32 bytes, as on the
// ledger) for ctx. It refuses a subject that Open would refuse, so a
// malformed subject is caught in the wallet and not by the authority.
func Seal(kemPub []byte, ctx Context, s Subject) ([]byte, error) {
	if err := ctx.check(); err != nil {
		return nil, fmt.Errorf("couldn't seal consent subject: %w", err)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("couldn't seal consent subject: %w", err)
	}
	js, err := tx.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("couldn't seal consent subject: %w", err)
	}
	pt, err := pad(js)
	if err != nil {
		return nil, fmt.Errorf("couldn't seal consent subject: %w", err)
	}
	return seal(kemPub, ctx, pt)
}

func seal(kemPub []byte, ctx Context, pt []byte) ([]byte, error) {
	pk, err := suiteKEM.NewPublicKey(kemPub)
	if err != nil {
		return nil, fmt.Errorf("couldn't seal consent subject: authority KEM key: %w", err)
	}
	box, err := hpke.Seal(pk, suiteKDF, suiteAEAD, info(ctx), pt)
	if err != nil {
		return nil, fmt.Errorf("couldn't seal consent subject: %w", err)
	}
	return box, nil
}

// Open decrypts a box sealed to kem for ctx and decodes it strictly: exactly
// MaxBox bytes, exact padding, and the one canonical JSON encoding of a
// Subject (no unknown or duplicate fields, no whitespace, fields in order).
// Every failure is ErrBadBox. Open checks the subject's shape but not its
// signatures: for those the caller resolves the keys and calls Check.
func Open(kem *ecdh.PrivateKey, ctx Context, box []byte) (*Subject, error) {
	if kem == nil || kem.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%w: not an X25519 key", ErrBadBox)
	}
	if err := ctx.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBox, err)
	}
	if len(box) != MaxBox {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadBox, len(box), MaxBox)
	}
	sk, err := hpke.NewDHKEMPrivateKey(kem)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBox, err)
	}
	pt, err := hpke.Open(sk, suiteKDF, suiteAEAD, info(ctx), box)
	if err != nil {
		// Wrong key, wrong context and a changed byte all end here, and
		// deliberately look the same.
		return nil, fmt.Errorf("%w: does not decrypt for this key and context", ErrBadBox)
	}
	s, err := decode(pt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBox, err)
	}
	return s, nil
}

// pad returns the length-prefixed js followed by zeros up to bucket.
func pad(js []byte) ([]byte, error) {
	if len(js) > bucket-lenPrefix {
		return nil, fmt.Errorf("subject is %d bytes of JSON, at most %d", len(js), bucket-lenPrefix)
	}
	pt := make([]byte, bucket)
	binary.BigEndian.PutUint16(pt, uint16(len(js)))
	copy(pt[lenPrefix:], js)
	return pt, nil
}

// decode parses a padded plaintext. There is one valid plaintext per
// subject: the length, the canonical JSON, then only zeros. The errors name
// what is wrong, never what the plaintext holds; in particular the JSON
// decoder's messages are dropped, because they quote field names.
func decode(pt []byte) (*Subject, error) {
	if len(pt) != bucket {
		return nil, fmt.Errorf("plaintext is %d bytes, want %d", len(pt), bucket)
	}
	n := int(binary.BigEndian.Uint16(pt))
	if n > bucket-lenPrefix {
		return nil, errors.New("length prefix exceeds the plaintext")
	}
	js, padding := pt[lenPrefix:lenPrefix+n], pt[lenPrefix+n:]
	for _, b := range padding {
		if b != 0 {
			return nil, errors.New("padding is not all zeros")
		}
	}
	var s Subject
	if err := tx.Unmarshal(js, &s); err != nil {
		return nil, errors.New("subject is not valid JSON of the expected fields")
	}
	if again, err := tx.Marshal(&s); err != nil || !bytes.Equal(again, js) {
		return nil, errors.New("subject is not in canonical form")
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}
