package statuslist

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"

	"github.com/imi-city/imi/internal/jws"
)

var (
	// ErrNoStatus is returned when a credential carries no status_list
	// reference; the caller decides whether that is acceptable.
	ErrNoStatus = errors.New("no status_list reference")
	// ErrClaim is returned for a status claim that is present but malformed.
	ErrClaim = errors.New("malformed status claim")
)

// maxURI bounds a status list URI; it is fetched, logged and compared.
const maxURI = 2048

// Reference is what a credential carries to point at its status (draft §6.1):
// the index of its entry and the URI of the Status List Token holding it.
type Reference struct {
	Idx uint64 `json:"idx"`
	URI string `json:"uri"`
}

// Claim is the value of a credential's "status" claim,
// {"status_list":{"idx":N,"uri":"..."}}: put it in the claims as "status".
type Claim struct {
	StatusList Reference `json:"status_list"`
}

// NewClaim checks r and returns the "status" claim value for it.
func NewClaim(r Reference) (Claim, error) {
	if err := checkURI(r.URI); err != nil {
		return Claim{}, err
	}
	// Above 2^53 the index would not survive the float64 of a JSON
	// consumer, including FromClaims.
	if r.Idx > maxSafeInt {
		return Claim{}, fmt.Errorf("%w: idx %d above 2^53", ErrClaim, r.Idx)
	}
	return Claim{StatusList: r}, nil
}

const maxSafeInt = 1 << 53

// checkURI accepts an absolute http(s) URI with a host: the list is fetched
// from it, and the token's sub is compared with it byte for byte.
func checkURI(s string) error {
	if s == "" || len(s) > maxURI {
		return fmt.Errorf("%w: uri length %d not in [1, %d]", ErrClaim, len(s), maxURI)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%w: uri: %v", ErrClaim, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%w: uri %q is not an absolute http(s) URL without userinfo or fragment", ErrClaim, s)
	}
	return nil
}

// ParseClaim parses the raw JSON value of a "status" claim. Members other than
// status_list, and members of status_list other than idx and uri, are ignored
// as the draft allows; duplicates, wrong types, a fractional or negative idx,
// and an unusable uri are errors. Names are matched exactly, unlike
// encoding/json's case-insensitive matching.
func ParseClaim(status []byte) (Reference, error) {
	if err := jws.CheckJSON(status, jws.MaxDepth); err != nil {
		return Reference{}, fmt.Errorf("%w: %w", ErrClaim, err)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(status, &outer); err != nil || outer == nil {
		return Reference{}, fmt.Errorf("%w: status is not an object", ErrClaim)
	}
	raw, ok := outer["status_list"]
	if !ok {
		return Reference{}, ErrNoStatus
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(raw, &inner); err != nil || inner == nil {
		return Reference{}, fmt.Errorf("%w: status_list is not an object", ErrClaim)
	}
	var r Reference
	if err := member(inner, "idx", &r.Idx); err != nil {
		return Reference{}, err
	}
	if err := member(inner, "uri", &r.URI); err != nil {
		return Reference{}, err
	}
	return checked(r)
}

// member decodes the required member name of m into v.
func member(m map[string]json.RawMessage, name string, v any) error {
	raw, ok := m[name]
	// encoding/json leaves v untouched for null: a null idx would read as 0.
	if !ok || string(raw) == "null" {
		return fmt.Errorf("%w: %s missing", ErrClaim, name)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrClaim, name, err)
	}
	return nil
}

func checked(r Reference) (Reference, error) {
	if _, err := NewClaim(r); err != nil {
		return Reference{}, err
	}
	return r, nil
}

// FromClaims reads the reference from a decoded credential payload, as
// jws.DecodeJSON and sdjwt return it: numbers are float64, so idx must be a
// whole number no larger than 2^53.
func FromClaims(claims map[string]any) (Reference, error) {
	st, ok := claims["status"]
	if !ok {
		return Reference{}, ErrNoStatus
	}
	outer, ok := st.(map[string]any)
	if !ok {
		return Reference{}, fmt.Errorf("%w: status is not an object", ErrClaim)
	}
	sl, ok := outer["status_list"]
	if !ok {
		return Reference{}, ErrNoStatus
	}
	inner, ok := sl.(map[string]any)
	if !ok {
		return Reference{}, fmt.Errorf("%w: status_list is not an object", ErrClaim)
	}
	var r Reference
	switch idx := inner["idx"].(type) {
	case float64:
		if idx < 0 || idx > maxSafeInt || idx != math.Trunc(idx) {
			return Reference{}, fmt.Errorf("%w: idx %v is not an integer in [0, 2^53]", ErrClaim, idx)
		}
		r.Idx = uint64(idx)
	case json.Number:
		if err := json.Unmarshal([]byte(idx), &r.Idx); err != nil {
			return Reference{}, fmt.Errorf("%w: idx %v is not a non-negative integer", ErrClaim, idx)
		}
	case nil:
		return Reference{}, fmt.Errorf("%w: idx missing", ErrClaim)
	default:
		return Reference{}, fmt.Errorf("%w: idx is %T, not a number", ErrClaim, idx)
	}
	uri, ok := inner["uri"].(string)
	if !ok {
		return Reference{}, fmt.Errorf("%w: uri missing or not a string", ErrClaim)
	}
	r.URI = uri
	return checked(r)
}
