package statuslist

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/imi-city/imi/internal/jws"
)

// TokenType is the JWT typ of a Status List Token (draft §5.1).
const TokenType = "statuslist+jwt"

// clockSkew is how far in the future iat may be: issuer and verifier clocks
// differ a little. exp gets no leeway, since a late answer could be stale.
const clockSkew = time.Minute

var (
	// ErrToken is returned for a Status List Token that must not be used.
	// The status it would give is undetermined, never "invalid".
	ErrToken = errors.New("invalid status list token")
	// ErrExpired is returned, wrapped with ErrToken, for a token past its
	// exp: fetch a fresh one.
	ErrExpired = errors.New("status list token expired")
)

// Token is a verified Status List Token.
type Token struct {
	Subject   string // the URI the token is published at
	IssuedAt  time.Time
	ExpiresAt time.Time
	TTL       time.Duration // how long it may be cached; zero if absent
	List      *List
}

type tokenPayload struct {
	Sub        string   `json:"sub"`
	Iat        int64    `json:"iat"`
	Exp        int64    `json:"exp"`
	TTL        int64    `json:"ttl,omitempty"`
	StatusList listJSON `json:"status_list"`
}

type listJSON struct {
	Bits int    `json:"bits"`
	Lst  string `json:"lst"`
}

// SignToken returns the statuslist+jwt for l, published at sub. exp is
// required: a token without one could be replayed as current forever. ttl is
// sent in whole seconds and omitted when zero.
func SignToken(s jws.Signer, kid, sub string, iat, exp time.Time, ttl time.Duration, l *List) (string, error) {
	if err := checkURI(sub); err != nil {
		return "", fmt.Errorf("couldn't sign status list: sub: %w", err)
	}
	if iat.IsZero() || !exp.After(iat) {
		return "", fmt.Errorf("couldn't sign status list: need iat and an exp after it, got %v and %v", iat, exp)
	}
	if ttl < 0 || (ttl > 0 && ttl < time.Second) {
		return "", fmt.Errorf("couldn't sign status list: ttl %v is not zero or at least 1s", ttl)
	}
	lst, err := l.Encode()
	if err != nil {
		return "", fmt.Errorf("couldn't sign status list: %w", err)
	}
	payload, err := json.Marshal(tokenPayload{
		Sub:        sub,
		Iat:        iat.Unix(),
		Exp:        exp.Unix(),
		TTL:        int64(ttl / time.Second),
		StatusList: listJSON{Bits: l.Bits(), Lst: lst},
	})
	if err != nil {
		return "", err
	}
	tok, err := jws.Sign(s, jws.Header{Typ: TokenType, Kid: kid}, payload)
	if err != nil {
		return "", fmt.Errorf("couldn't sign status list: %w", err)
	}
	// Better to fail here than to publish a token no verifier will parse.
	if len(tok) > jws.MaxSize {
		return "", fmt.Errorf("couldn't sign status list: token is %d bytes, over the %d a verifier accepts", len(tok), jws.MaxSize)
	}
	return tok, nil
}

// ParseToken verifies a Status List Token fetched from expectedURI: an EdDSA
// or ES256 signature by key, typ statuslist+jwt, sub equal to expectedURI,
// iat present and not in the future, exp present and after now, nbf if
// present not after now, ttl if present positive. The list is decoded only
// after the signature checks, and never past maxListSize statuses.
//
// Every error wraps ErrToken.
func ParseToken(token, expectedURI string, key crypto.PublicKey, now time.Time, maxListSize int) (*Token, error) {
	j, err := jws.Parse(token, jws.EdDSA, jws.ES256)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	if j.Header.Typ != TokenType {
		return nil, fmt.Errorf("%w: typ %q, want %q", ErrToken, j.Header.Typ, TokenType)
	}
	if err := j.Verify(key); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}

	// jws.Parse has checked the payload is one JSON object without
	// duplicate names. Other claims are allowed (§5.1) and ignored.
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(j.Payload, &claims); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrToken, err)
	}
	var t Token
	if err := claim(claims, "sub", &t.Subject, true); err != nil {
		return nil, err
	}
	if t.Subject != expectedURI {
		return nil, fmt.Errorf("%w: sub %q, want %q", ErrToken, t.Subject, expectedURI)
	}
	var iat, exp, nbf, ttl int64
	if err := claim(claims, "iat", &iat, true); err != nil {
		return nil, err
	}
	if err := claim(claims, "exp", &exp, true); err != nil {
		return nil, err
	}
	hasNbf := claims["nbf"] != nil
	if err := claim(claims, "nbf", &nbf, false); err != nil {
		return nil, err
	}
	hasTTL := claims["ttl"] != nil
	if err := claim(claims, "ttl", &ttl, false); err != nil {
		return nil, err
	}
	t.IssuedAt, t.ExpiresAt = time.Unix(iat, 0), time.Unix(exp, 0)
	switch {
	case t.IssuedAt.After(now.Add(clockSkew)):
		return nil, fmt.Errorf("%w: iat %v is in the future", ErrToken, t.IssuedAt.UTC())
	case !now.Before(t.ExpiresAt):
		return nil, fmt.Errorf("%w: %w at %v", ErrToken, ErrExpired, t.ExpiresAt.UTC())
	case hasNbf && now.Before(time.Unix(nbf, 0)):
		return nil, fmt.Errorf("%w: not valid before %v", ErrToken, time.Unix(nbf, 0).UTC())
	case hasTTL && (ttl <= 0 || ttl > int64(maxTTL/time.Second)):
		return nil, fmt.Errorf("%w: ttl %d not in [1, %d]", ErrToken, ttl, int64(maxTTL/time.Second))
	}
	t.TTL = time.Duration(ttl) * time.Second

	var sl map[string]json.RawMessage
	if err := claim(claims, "status_list", &sl, true); err != nil {
		return nil, err
	}
	var lj listJSON
	if err := claim(sl, "bits", &lj.Bits, true); err != nil {
		return nil, err
	}
	if err := claim(sl, "lst", &lj.Lst, true); err != nil {
		return nil, err
	}
	t.List, err = Decode(lj.Bits, lj.Lst, maxListSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	return &t, nil
}

// maxTTL keeps ttl*time.Second from overflowing a Duration.
const maxTTL = 100 * 365 * 24 * time.Hour

// claim decodes member name of m into v, names matched exactly. A null value
// counts as missing: encoding/json would leave v at zero for it.
func claim(m map[string]json.RawMessage, name string, v any, required bool) error {
	raw, ok := m[name]
	if !ok || string(raw) == "null" {
		if ok || required {
			return fmt.Errorf("%w: %s missing or null", ErrToken, name)
		}
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrToken, name, err)
	}
	return nil
}

// Status returns the status at idx, which comes from the credential. An index
// the list does not cover is an error, never Valid; on error the byte returned
// means nothing.
func (t *Token) Status(idx uint64) (byte, error) {
	if idx >= uint64(t.List.Size()) {
		return 0, fmt.Errorf("%w: %d not in [0, %d)", ErrIndex, idx, t.List.Size())
	}
	return t.List.Get(int(idx)), nil
}
