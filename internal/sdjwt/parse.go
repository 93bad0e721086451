package sdjwt

import (
	"strings"

	"github.com/imi-city/imi/internal/jws"
)

// Limits bound the work Parse and Verify do on untrusted input. Zero fields
// take the defaults.
type Limits struct {
	MaxSize        int // bytes of the whole string; default DefaultMaxSize
	MaxDisclosures int // default DefaultMaxDisclosures
	MaxDepth       int // JSON nesting in any part; default jws.MaxDepth
}

func (l Limits) withDefaults() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxDisclosures <= 0 {
		l.MaxDisclosures = DefaultMaxDisclosures
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = jws.MaxDepth
	}
	return l
}

// SDJWT is a parsed SD-JWT or SD-JWT+KB. Nothing in it is verified yet.
type SDJWT struct {
	JWT         string // the issuer-signed JWT
	Disclosures []Disclosure
	// Compact is "<JWT>~<Disclosure>~...~": the SD-JWT without the KB-JWT,
	// exactly as received, which is what a KB-JWT's sd_hash covers.
	Compact       string
	KeyBindingJWT string // "" when absent
}

// Parse splits s and decodes its Disclosures strictly. The issuer-signed
// JWT is checked for syntax only (see jws.Parse), not for its signature.
func Parse(s string, l Limits) (*SDJWT, error) {
	p, err := split(s, l.withDefaults())
	if err != nil {
		return nil, err
	}
	if _, err := jws.Parse(p.JWT, jws.EdDSA, jws.ES256); err != nil {
		return nil, jwsFail("issuer-signed JWT", err)
	}
	if p.KeyBindingJWT != "" {
		if _, err := jws.Parse(p.KeyBindingJWT, jws.EdDSA, jws.ES256); err != nil {
			return nil, jwsFail("key binding JWT", err)
		}
	}
	return p, nil
}

func split(s string, l Limits) (*SDJWT, error) {
	// Sizes are checked before anything is allocated, so a flood of "~"
	// costs one pass over the bytes.
	if len(s) > l.MaxSize {
		return nil, fail(ReasonTooLarge, "%d bytes, limit %d", len(s), l.MaxSize)
	}
	n := strings.Count(s, "~")
	if n == 0 {
		return nil, fail(ReasonMalformed, `no "~": an SD-JWT ends in "~"`)
	}
	if n-1 > l.MaxDisclosures {
		return nil, fail(ReasonTooLarge, "%d disclosures, limit %d", n-1, l.MaxDisclosures)
	}
	last := strings.LastIndexByte(s, '~')
	p := &SDJWT{Compact: s[:last+1], KeyBindingJWT: s[last+1:]}
	rest := p.Compact
	p.JWT, rest, _ = strings.Cut(rest, "~")
	if p.JWT == "" {
		return nil, fail(ReasonMalformed, "empty issuer-signed JWT")
	}
	if n > 1 {
		p.Disclosures = make([]Disclosure, 0, n-1)
	}
	for rest != "" {
		var enc string
		enc, rest, _ = strings.Cut(rest, "~")
		d, err := decodeDisclosure(enc, l.MaxDepth)
		if err != nil {
			return nil, err
		}
		p.Disclosures = append(p.Disclosures, d)
	}
	return p, nil
}

func decodeDisclosure(enc string, maxDepth int) (Disclosure, error) {
	d := Disclosure{Encoded: enc}
	if enc == "" {
		return d, fail(ReasonMalformed, `empty disclosure ("~~")`)
	}
	raw, err := jws.DecodeBase64(enc)
	if err != nil {
		return d, &Error{Reason: ReasonMalformed, Detail: "disclosure: " + err.Error(), Err: err}
	}
	if len(raw) == 0 || raw[0] != '[' {
		return d, fail(ReasonMalformed, "disclosure is not a JSON array")
	}
	v, err := jws.DecodeJSON(raw, maxDepth)
	if err != nil {
		return d, jwsFail("disclosure", err)
	}
	a := v.([]any)
	var ok bool
	switch len(a) {
	case 3:
		if d.Name, ok = a[1].(string); !ok {
			return d, fail(ReasonMalformed, "disclosure claim name is not a string")
		}
		if d.Name == sdKey || d.Name == elemKey {
			return d, fail(ReasonReservedClaimName, "disclosure claim name %q", d.Name)
		}
		d.Value = a[2]
	case 2:
		d.Element = true
		d.Value = a[1]
	default:
		return d, fail(ReasonMalformed, "disclosure has %d elements, want 2 or 3", len(a))
	}
	if d.Salt, ok = a[0].(string); !ok {
		return d, fail(ReasonMalformed, "disclosure salt is not a string")
	}
	d.Digest = digest(enc)
	return d, nil
}
