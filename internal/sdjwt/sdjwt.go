// Package sdjwt issues, presents and verifies Selective Disclosure JWTs (RFC
// 9901) in the SD-JWT VC shape (typ "dc+sd-jwt", holder key in cnf.jwk).
//
// The issuer hides each selectively disclosable claim behind the SHA-256
// digest of a salted Disclosure; the holder presents the signed JWT with only
// the Disclosures it chooses, bound to one verifier and transaction by a
// Key Binding JWT; the verifier checks every digest and rejects the whole
// presentation on any inconsistency, never returning fewer claims instead.
//
// The package knows nothing about the ledger: the verifier supplies the
// issuer's key through VerifyOptions.IssuerKey, and the current time.
package sdjwt

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/imi-city/imi/internal/jws"
)

// Type names and the one digest algorithm.
const (
	TypSDJWT   = "dc+sd-jwt" // issuer-signed JWT of an SD-JWT VC
	TypKB      = "kb+jwt"    // Key Binding JWT
	HashSHA256 = "sha-256"   // the only _sd_alg accepted
)

// Defaults for Limits and VerifyOptions.
const (
	DefaultMaxSize        = 64 << 10
	DefaultMaxDisclosures = 128
	DefaultIATWindow      = 5 * time.Minute
	DefaultSkew           = time.Minute
)

const (
	saltSize    = 16 // 128 bits, RFC 9901 section 9.3
	decoyBucket = 8  // _sd lengths are rounded up to a multiple of this
	sdKey       = "_sd"
	sdAlgKey    = "_sd_alg"
	elemKey     = "..."
)

// validityClaims must be plain claims: a holder who could withhold exp or
// status, or swap cnf, would decide the credential's validity itself (RFC
// 9901 section 9.7, SD-JWT VC). sub may be disclosed, as in SD-JWT VC.
var validityClaims = map[string]bool{
	"iss": true, "iat": true, "nbf": true, "exp": true, "cnf": true,
	"vct": true, "vct#integrity": true, "status": true,
}

var b64 = base64.RawURLEncoding

// Reasons carried by *Error; stable, for logs, metrics and API problems.
const (
	ReasonMalformed              = "malformed"
	ReasonTooLarge               = "too_large"
	ReasonAlgNotAllowed          = "alg_not_allowed"
	ReasonBadSignature           = "bad_signature"
	ReasonBadTyp                 = "bad_typ"
	ReasonIssuerKey              = "issuer_key"
	ReasonUnsupportedSDAlg       = "unsupported_sd_alg"
	ReasonReservedClaimName      = "reserved_claim_name"
	ReasonDisclosureKind         = "disclosure_kind"
	ReasonDuplicateDigest        = "duplicate_digest"
	ReasonDuplicateDisclosure    = "duplicate_disclosure"
	ReasonDuplicateClaim         = "duplicate_claim"
	ReasonUnreferencedDisclosure = "unreferenced_disclosure"
	ReasonDisclosedValidityClaim = "disclosed_validity_claim"
	ReasonExpired                = "expired"
	ReasonNotYetValid            = "not_yet_valid"
	ReasonKeyBindingRequired     = "key_binding_required"
	ReasonNoHolderKey            = "no_holder_key"
	ReasonKBBadTyp               = "kb_bad_typ"
	ReasonSDHashMismatch         = "sd_hash_mismatch"
	ReasonNonceMismatch          = "nonce_mismatch"
	ReasonAudMismatch            = "aud_mismatch"
	ReasonKBIATOutOfWindow       = "kb_iat_out_of_window"
)

// ErrInvalid matches every *Error with errors.Is.
var ErrInvalid = errors.New("sdjwt: invalid")

// Error is why an SD-JWT was rejected. Reason is one of the Reason constants;
// Detail is for logs and may quote the input, so it is not for residents.
type Error struct {
	Reason string
	Detail string
	Err    error // underlying error, if any
}

func (e *Error) Error() string { return "sdjwt: " + e.Reason + ": " + e.Detail }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Unwrap returns the underlying jws error, if any.
func (e *Error) Unwrap() error { return e.Err }

func fail(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// jwsFail maps the jws sentinels to reasons.
func jwsFail(what string, err error) *Error {
	r := ReasonMalformed
	switch {
	case errors.Is(err, jws.ErrTooLarge):
		r = ReasonTooLarge
	case errors.Is(err, jws.ErrAlgorithm):
		r = ReasonAlgNotAllowed
	case errors.Is(err, jws.ErrSignature):
		r = ReasonBadSignature
	}
	return &Error{Reason: r, Detail: what + ": " + err.Error(), Err: err}
}

// Disclosure is one salted claim, as in RFC 9901 section 4.2.
type Disclosure struct {
	Encoded string // base64url as transmitted; the digest covers these bytes
	Digest  string // base64url(SHA-256(Encoded))
	Salt    string
	Name    string // claim name; empty for an array element
	Element bool   // an array element, [salt, value], rather than [salt, name, value]
	Value   any    // decoded as encoding/json does
}

// digestLen is the length of a base64url SHA-256 digest.
const digestLen = 43

func digest(encoded string) string {
	d := encodedDigest(encoded)
	return string(d[:])
}

// encodedDigest is base64url(SHA-256(s)), without allocating: a verifier
// compares it and keeps none but the Disclosures' own.
func encodedDigest(s string) [digestLen]byte {
	sum := sum256(s)
	var d [digestLen]byte
	b64.Encode(d[:], sum[:])
	return d
}

// sum256 is sha256.Sum256 of the bytes of s, fed through a buffer on the
// stack rather than copied to the heap by a []byte conversion: a
// presentation is kilobytes, hashed whole for sd_hash.
func sum256(s string) [sha256.Size]byte {
	h := sha256.New()
	var buf [512]byte
	for len(s) > 0 {
		n := copy(buf[:], s)
		h.Write(buf[:n])
		s = s[n:]
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
