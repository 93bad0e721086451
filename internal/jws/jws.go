// Package jws signs and parses JWS Compact Serialization (RFC 7515) strictly,
// for the two algorithms IMI uses: EdDSA (Ed25519) and ES256.
//
// Strict means the parser accepts one spelling of each token: base64url
// without padding and with zero trailing bits, a header that is a JSON object
// with no duplicate or unknown members, an algorithm from the caller's
// allow-list (never "none"), a payload that is a JSON object, and a bounded
// size. Header members that let a token name its own key (jwk, jku, x5u,
// x5c, x5t) or change how it is read (crit, b64, zip) are rejected, as is
// every other member but alg, typ and kid: the verifier alone picks the key.
package jws

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Algorithms.
const (
	EdDSA = "EdDSA"
	ES256 = "ES256"
)

// MaxSize bounds one compact JWS, in bytes.
const MaxSize = 64 << 10

const sigSize = 64 // Ed25519, and ES256 as r||s with 32 bytes each

// Sentinel errors, wrapped with detail.
var (
	ErrMalformed = errors.New("jws: malformed")
	ErrAlgorithm = errors.New("jws: algorithm not allowed")
	ErrSignature = errors.New("jws: invalid signature")
	// ErrTooLarge is returned for input over MaxSize or nested too deep.
	ErrTooLarge = errors.New("jws: too large")
)

var b64 = base64.RawURLEncoding.Strict()

// Header holds the only header members this package accepts.
type Header struct {
	Alg, Typ, Kid string
}

// Signer signs the JWS signing input ("b64header.b64payload").
type Signer interface {
	Alg() string
	Sign(signingInput []byte) ([]byte, error)
}

type ed25519Signer struct{ k ed25519.PrivateKey }

func (ed25519Signer) Alg() string { return EdDSA }
func (s ed25519Signer) Sign(in []byte) ([]byte, error) {
	return ed25519.Sign(s.k, in), nil
}

// Ed25519Signer signs with EdDSA.
func Ed25519Signer(k ed25519.PrivateKey) Signer { return ed25519Signer{k} }

type es256Signer struct{ k *ecdsa.PrivateKey }

func (es256Signer) Alg() string { return ES256 }
func (s es256Signer) Sign(in []byte) ([]byte, error) {
	if s.k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("jws: ES256 needs a P-256 key")
	}
	h := sha256.Sum256(in)
	r, ss, err := ecdsa.Sign(rand.Reader, s.k, h[:])
	if err != nil {
		return nil, err
	}
	sig := make([]byte, sigSize)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return sig, nil
}

// ES256Signer signs with ES256, producing the JWS form of the signature: r||s
// as two 32-byte big-endian integers (not ASN.1).
func ES256Signer(k *ecdsa.PrivateKey) Signer { return es256Signer{k} }

// headerJSON fixes the member order, so equal headers encode identically.
type headerJSON struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid,omitempty"`
}

// Sign returns the compact JWS of payload, which must be a JSON object.
// h.Alg is ignored and set from s.Alg().
func Sign(s Signer, h Header, payload []byte) (string, error) {
	alg := s.Alg()
	if alg != EdDSA && alg != ES256 {
		return "", fmt.Errorf("%w: %q", ErrAlgorithm, alg)
	}
	if err := checkObject(payload); err != nil {
		return "", fmt.Errorf("couldn't sign payload: %w", err)
	}
	hb, err := json.Marshal(headerJSON{alg, h.Typ, h.Kid})
	if err != nil {
		return "", err
	}
	n := b64.EncodedLen(len(hb)) + 1 + b64.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+b64.EncodedLen(sigSize))
	b64.Encode(buf, hb)
	buf[b64.EncodedLen(len(hb))] = '.'
	b64.Encode(buf[b64.EncodedLen(len(hb))+1:], payload)
	sig, err := s.Sign(buf)
	if err != nil {
		return "", fmt.Errorf("couldn't sign: %w", err)
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

func checkObject(b []byte) error {
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	return CheckJSON(b, MaxDepth)
}

// JWS is a parsed compact JWS. Its signature is not yet verified.
type JWS struct {
	Header       Header
	RawHeader    []byte // decoded header JSON
	Payload      []byte // decoded payload JSON
	SigningInput []byte // the exact ASCII "b64header.b64payload" received
	Signature    []byte
}

// Parse parses a compact JWS strictly and checks that its alg is one of
// allowed. "none" is never accepted, even if listed.
func Parse(compact string, allowed ...string) (*JWS, error) {
	j, err := parse(compact, allowed)
	if err != nil {
		return nil, err
	}
	if err := checkObject(j.Payload); err != nil {
		return nil, err
	}
	return j, nil
}

// ParseClaims is Parse that also returns the payload decoded (see
// DecodeJSON), so callers that need the claims read the JSON once.
func ParseClaims(compact string, allowed ...string) (*JWS, map[string]any, error) {
	j, err := parse(compact, allowed)
	if err != nil {
		return nil, nil, err
	}
	if len(j.Payload) == 0 || j.Payload[0] != '{' {
		return nil, nil, fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	// The map has room to grow: a selective disclosure verifier replaces
	// digests with the claims they disclose in it, and a map that outgrows
	// its size is rebuilt.
	v, err := walkJSON(j.Payload, MaxDepth, true, true)
	if err != nil {
		return nil, nil, err
	}
	return j, v.(map[string]any), nil
}

func parse(compact string, allowed []string) (*JWS, error) {
	if len(compact) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(compact), MaxSize)
	}
	h, rest, ok1 := strings.Cut(compact, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, fmt.Errorf("%w: want three dot-separated parts", ErrMalformed)
	}
	// One allocation holds a copy of the token, whose first part is the
	// signing input, and the three parts decoded from that copy. Each slice
	// handed out is capped at its own end, so appending to one cannot
	// overwrite another.
	n := len(compact)
	buf := make([]byte, n+b64.DecodedLen(len(h))+b64.DecodedLen(len(p))+b64.DecodedLen(len(s)))
	copy(buf, compact)
	in, free := buf[:n:n], buf[n:]
	hb, free, err := decodeInto(free, in[:len(h)], "header")
	if err != nil {
		return nil, err
	}
	header, err := parseHeader(hb)
	if err != nil {
		return nil, err
	}
	if !algAllowed(header.Alg, allowed) {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, header.Alg)
	}
	pb, free, err := decodeInto(free, in[len(h)+1:len(h)+1+len(p)], "payload")
	if err != nil {
		return nil, err
	}
	sb, _, err := decodeInto(free, in[len(h)+1+len(p)+1:], "signature")
	if err != nil {
		return nil, err
	}
	if len(sb) != sigSize {
		return nil, fmt.Errorf("%w: %s signature is %d bytes, want %d", ErrMalformed, header.Alg, len(sb), sigSize)
	}
	return &JWS{
		Header:       header,
		RawHeader:    hb,
		Payload:      pb,
		SigningInput: in[: len(h)+1+len(p) : len(h)+1+len(p)],
		Signature:    sb,
	}, nil
}

func algAllowed(alg string, allowed []string) bool {
	if alg != EdDSA && alg != ES256 {
		return false // includes "none" and anything this package can't verify
	}
	for _, a := range allowed {
		if a == alg {
			return true
		}
	}
	return false
}

// decodePart decodes one base64url part strictly. The decoder rejects
// every byte outside the URL alphabet but CR and LF, which it silently
// skips; so those two are refused first, with a fast scan, and the decoder
// checks the rest.
func decodePart(s, what string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty %s", ErrMalformed, what)
	}
	if strings.IndexByte(s, '\r') >= 0 || strings.IndexByte(s, '\n') >= 0 {
		return nil, notBase64(what)
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, decodeError(s, what, err)
	}
	return b, nil
}

// decodeInto is decodePart for bytes, decoding into the front of dst, which
// must have room for b64.DecodedLen(len(src)) bytes. It returns the decoded
// bytes, capped, and the rest of dst.
func decodeInto(dst, src []byte, what string) (out, rest []byte, err error) {
	if len(src) == 0 {
		return nil, nil, fmt.Errorf("%w: empty %s", ErrMalformed, what)
	}
	if bytes.IndexByte(src, '\r') >= 0 || bytes.IndexByte(src, '\n') >= 0 {
		return nil, nil, notBase64(what)
	}
	n, err := b64.Decode(dst, src)
	if err != nil {
		return nil, nil, decodeError(src, what, err)
	}
	return dst[:n:n], dst[n:], nil
}

func notBase64(what string) error {
	return fmt.Errorf("%w: %s is not base64url", ErrMalformed, what)
}

// decodeError names the failure: a byte outside the alphabet, or bad length
// or trailing bits.
func decodeError[T string | []byte](s T, what string, err error) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return notBase64(what)
		}
	}
	return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
}

// DecodeBase64 decodes unpadded base64url strictly: only the URL alphabet,
// no padding, no line breaks, zero trailing bits.
func DecodeBase64(s string) ([]byte, error) { return decodePart(s, "value") }

func parseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) == 0 || b[0] != '{' {
		return h, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	// The header is checked as any JSON is, then its members are read off
	// the parser: a header needs no map, nor its values boxed.
	p, err := topMembers(b, MaxDepth)
	if err != nil {
		return h, fmt.Errorf("header: %w", err)
	}
	defer p.free()
	for i, k := range p.keys {
		var dst *string
		switch k {
		case "alg":
			dst = &h.Alg
		case "typ":
			dst = &h.Typ
		case "kid":
			dst = &h.Kid
		default:
			return h, fmt.Errorf("%w: header member %q not allowed", ErrMalformed, k)
		}
		s, ok := p.stringAt(p.start[i])
		if !ok {
			return h, fmt.Errorf("%w: header member %q is not a string", ErrMalformed, k)
		}
		*dst = s
	}
	if h.Alg == "" {
		return h, fmt.Errorf("%w: header has no alg", ErrMalformed)
	}
	return h, nil
}

// Verify checks the signature with pub: an ed25519.PublicKey for EdDSA or a
// P-256 *ecdsa.PublicKey for ES256. The key type must match the header's alg,
// so a token cannot pick how its own signature is checked.
func (j *JWS) Verify(pub crypto.PublicKey) error {
	if len(j.Signature) != sigSize {
		return fmt.Errorf("%w: signature is %d bytes", ErrSignature, len(j.Signature))
	}
	switch j.Header.Alg {
	case EdDSA:
		k, ok := pub.(ed25519.PublicKey)
		if !ok || len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: EdDSA needs an Ed25519 public key, got %T", ErrAlgorithm, pub)
		}
		if !ed25519.Verify(k, j.SigningInput, j.Signature) {
			return fmt.Errorf("%w: EdDSA", ErrSignature)
		}
		return nil
	case ES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k == nil || k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ES256 needs a P-256 public key, got %T", ErrAlgorithm, pub)
		}
		h := sha256.Sum256(j.SigningInput)
		r := new(big.Int).SetBytes(j.Signature[:32])
		s := new(big.Int).SetBytes(j.Signature[32:])
		if !ecdsa.Verify(k, h[:], r, s) {
			return fmt.Errorf("%w: ES256", ErrSignature)
		}
		return nil
	}
	return fmt.Errorf("%w: %q", ErrAlgorithm, j.Header.Alg)
}
