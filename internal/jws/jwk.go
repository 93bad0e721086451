package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"fmt"
)

const p256CoordSize = 32

// PublicJWK returns the public JWK (RFC 7517) of an Ed25519 key (kty OKP,
// RFC 8037) or a P-256 key (kty EC), ready for json.Marshal.
func PublicJWK(pub crypto.PublicKey) (map[string]any, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 public key is %d bytes", ErrMalformed, len(k))
		}
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64.EncodeToString(k)}, nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: only P-256 EC keys are supported", ErrAlgorithm)
		}
		b, err := k.Bytes() // 0x04 || x || y, checks the point
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return map[string]any{
			"kty": "EC", "crv": "P-256",
			"x": b64.EncodeToString(b[1 : 1+p256CoordSize]),
			"y": b64.EncodeToString(b[1+p256CoordSize:]),
		}, nil
	}
	return nil, fmt.Errorf("%w: unsupported key type %T", ErrAlgorithm, pub)
}

// ParseJWK parses a public JWK; see ParseJWKMap.
func ParseJWK(raw json.RawMessage) (crypto.PublicKey, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("%w: JWK is not a JSON object", ErrMalformed)
	}
	v, err := DecodeJSON(raw, 2)
	if err != nil {
		return nil, fmt.Errorf("JWK: %w", err)
	}
	return ParseJWKMap(v.(map[string]any))
}

// jwkMembers are the members a public JWK may carry. Anything else, and in
// particular the private "d", is rejected: a private key where a public one
// is expected means a key has leaked.
var jwkMembers = map[string]bool{"kty": true, "crv": true, "x": true, "y": true, "kid": true, "alg": true, "use": true}

// ParseJWKMap parses an already decoded public JWK: OKP/Ed25519 returns an
// ed25519.PublicKey, EC/P-256 a *ecdsa.PublicKey. Coordinates must have their
// exact length and the EC point must be on the curve.
func ParseJWKMap(m map[string]any) (crypto.PublicKey, error) {
	str := func(name string) (string, error) {
		v, ok := m[name]
		if !ok {
			return "", fmt.Errorf("%w: JWK has no %q", ErrMalformed, name)
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%w: JWK member %q is not a string", ErrMalformed, name)
		}
		return s, nil
	}
	coord := func(name string, size int) ([]byte, error) {
		s, err := str(name)
		if err != nil {
			return nil, err
		}
		b, err := decodePart(s, "JWK "+name)
		if err != nil {
			return nil, err
		}
		if len(b) != size {
			return nil, fmt.Errorf("%w: JWK %q is %d bytes, want %d", ErrMalformed, name, len(b), size)
		}
		return b, nil
	}
	for k, v := range m {
		if !jwkMembers[k] {
			return nil, fmt.Errorf("%w: JWK member %q not allowed", ErrMalformed, k)
		}
		if _, ok := v.(string); !ok {
			return nil, fmt.Errorf("%w: JWK member %q is not a string", ErrMalformed, k)
		}
	}
	kty, err := str("kty")
	if err != nil {
		return nil, err
	}
	crv, err := str("crv")
	if err != nil {
		return nil, err
	}
	switch {
	case kty == "OKP" && crv == "Ed25519":
		if _, ok := m["y"]; ok {
			return nil, fmt.Errorf("%w: OKP JWK has \"y\"", ErrMalformed)
		}
		x, err := coord("x", ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		return ed25519.PublicKey(x), nil
	case kty == "EC" && crv == "P-256":
		x, err := coord("x", p256CoordSize)
		if err != nil {
			return nil, err
		}
		y, err := coord("y", p256CoordSize)
		if err != nil {
			return nil, err
		}
		pt := make([]byte, 0, 1+2*p256CoordSize)
		pt = append(append(append(pt, 4), x...), y...)
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return nil, fmt.Errorf("%w: JWK point: %v", ErrMalformed, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: JWK kty %q crv %q not supported", ErrAlgorithm, kty, crv)
}
