package sdjwt

import (
	"fmt"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/jws"
)

// Present returns the SD-JWT with only the Disclosures needed to reveal the
// named top-level claims: each claim's own Disclosure, if it has one, and
// every Disclosure nested in its value (RFC 9901 section 4.2.6), in their
// original order. A named claim that is plain needs no Disclosure of its own.
// Present does not verify the issuer's signature; the holder does that when
// it receives the SD-JWT.
func Present(sdjwt string, claimNames []string) (string, error) {
	p, err := Parse(sdjwt, Limits{})
	if err != nil {
		return "", err
	}
	if p.KeyBindingJWT != "" {
		return "", fail(ReasonMalformed, "present from an SD-JWT without a key binding JWT")
	}
	_, payload, err := jws.ParseClaims(p.JWT, jws.EdDSA, jws.ES256)
	if err != nil {
		return "", jwsFail("issuer-signed JWT", err)
	}
	byDigest := make(map[string]int, len(p.Disclosures))
	for i, d := range p.Disclosures {
		byDigest[d.Digest] = i
	}
	keep := make([]bool, len(p.Disclosures))
	var walk func(v any)
	take := func(dg any) {
		s, _ := dg.(string)
		if i, ok := byDigest[s]; ok && !keep[i] {
			keep[i] = true
			walk(p.Disclosures[i].Value)
		}
	}
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if k == sdKey {
					if a, ok := e.([]any); ok {
						for _, dg := range a {
							take(dg)
						}
					}
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				if m, ok := e.(map[string]any); ok && len(m) == 1 {
					if dg, ok := m[elemKey]; ok {
						take(dg)
						continue
					}
				}
				walk(e)
			}
		}
	}
	top := map[string]int{}
	if a, ok := payload[sdKey].([]any); ok {
		for _, dg := range a {
			s, _ := dg.(string)
			if i, ok := byDigest[s]; ok && !p.Disclosures[i].Element {
				top[p.Disclosures[i].Name] = i
			}
		}
	}
	for _, name := range claimNames {
		if i, ok := top[name]; ok {
			take(p.Disclosures[i].Digest)
			continue
		}
		v, ok := payload[name]
		if !ok || name == sdKey || name == sdAlgKey {
			return "", fmt.Errorf("sdjwt: claim %q is not in the credential", name)
		}
		walk(v)
	}
	var b strings.Builder
	b.WriteString(p.JWT)
	b.WriteByte('~')
	for i, d := range p.Disclosures {
		if keep[i] {
			b.WriteString(d.Encoded)
			b.WriteByte('~')
		}
	}
	return b.String(), nil
}

// kbPayload fixes the KB-JWT's members, RFC 9901 section 4.3.
type kbPayload struct {
	IAT    int64  `json:"iat"`
	Aud    string `json:"aud"`
	Nonce  string `json:"nonce"`
	SDHash string `json:"sd_hash"`
}

// AddKeyBinding appends a Key Binding JWT, signed by the holder, to a
// presentation "<jwt>~<disclosure>~...~". Its sd_hash covers the
// presentation byte for byte, trailing "~" included, so a verifier sees
// exactly the Disclosures the holder chose.
func AddKeyBinding(presentation string, holder jws.Signer, aud, nonce string, iat time.Time) (string, error) {
	if !strings.HasSuffix(presentation, "~") {
		return "", fmt.Errorf(`sdjwt: presentation must end in "~" and have no key binding JWT`)
	}
	if aud == "" || nonce == "" {
		return "", fmt.Errorf("sdjwt: key binding needs an audience and a nonce")
	}
	pb, err := marshal(kbPayload{IAT: iat.Unix(), Aud: aud, Nonce: nonce, SDHash: sdHash(presentation)})
	if err != nil {
		return "", err
	}
	kb, err := jws.Sign(holder, jws.Header{Typ: TypKB}, pb)
	if err != nil {
		return "", fmt.Errorf("sdjwt: couldn't sign key binding JWT: %w", err)
	}
	return presentation + kb, nil
}

// sdHash is the sd_hash of a presentation "<jwt>~<disclosure>~...~".
func sdHash(compact string) string { return digest(compact) }
