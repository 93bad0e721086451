package sdjwt

import (
	"crypto"
	"errors"
	"slices"
	"time"

	"github.com/imi-city/imi/internal/jws"
)

// VerifyOptions is the verifier's policy. IssuerKey and Now are required.
type VerifyOptions struct {
	// IssuerKey returns the key that must have signed the issuer-signed JWT,
	// given its header and its not yet verified payload (look up iss and
	// kid; trust nothing else in them). An error rejects the presentation.
	IssuerKey func(h jws.Header, payload map[string]any) (crypto.PublicKey, error)
	// Algorithms allowed for both JWTs; default EdDSA and ES256.
	Algorithms []string
	// Typ the issuer-signed JWT must carry; default TypSDJWT. TypKB is
	// never accepted.
	Typ string
	// RequireKeyBinding is the verifier's decision, never the presenter's:
	// when set, a presentation without a KB-JWT is rejected. A KB-JWT that
	// is present is verified either way.
	RequireKeyBinding bool
	// Audience and Nonce the KB-JWT must carry. Set them whenever a KB-JWT
	// may be present: empty values match nothing.
	Audience, Nonce string
	// Now is the verifier's clock; the package never reads the system time.
	Now time.Time
	// IATWindow is how far the KB-JWT's iat may be from Now, either way;
	// default DefaultIATWindow.
	IATWindow time.Duration
	// Skew is the tolerance for the credential's exp, nbf and iat; default
	// DefaultSkew.
	Skew   time.Duration
	Limits Limits
}

// Result is a verified presentation.
type Result struct {
	Header jws.Header // of the issuer-signed JWT
	// Claims is the Processed SD-JWT Payload: plain claims plus disclosed
	// ones, _sd, _sd_alg and undisclosed array elements removed.
	Claims map[string]any
	// Disclosed lists, sorted, the top-level claims revealed by Disclosures.
	Disclosed []string
	// KeyBinding is nil when the presentation had no KB-JWT.
	KeyBinding *KeyBinding
}

// KeyBinding holds the verified KB-JWT's claims.
type KeyBinding struct {
	Header   jws.Header
	IssuedAt time.Time
	Audience string
	Nonce    string
}

var defaultAlgs = []string{jws.EdDSA, jws.ES256}

// Verify checks a presentation (SD-JWT or SD-JWT+KB) against opts, as RFC
// 9901 sections 7.1 and 7.3 describe, and returns its claims. Any failure
// rejects the whole presentation; the error is an *Error.
func Verify(raw string, opts VerifyOptions) (*Result, error) {
	if opts.IssuerKey == nil || opts.Now.IsZero() {
		return nil, errors.New("sdjwt: VerifyOptions needs IssuerKey and Now")
	}
	algs := opts.Algorithms
	if len(algs) == 0 {
		algs = defaultAlgs
	}
	typ := opts.Typ
	if typ == "" {
		typ = TypSDJWT
	}
	window, skew := opts.IATWindow, opts.Skew
	if window <= 0 {
		window = DefaultIATWindow
	}
	if skew <= 0 {
		skew = DefaultSkew
	}
	l := opts.Limits.withDefaults()

	p, err := split(raw, l)
	if err != nil {
		return nil, err
	}
	if opts.RequireKeyBinding && p.KeyBindingJWT == "" {
		return nil, fail(ReasonKeyBindingRequired, "presentation has no key binding JWT")
	}

	j, payload, err := jws.ParseClaims(p.JWT, algs...)
	if err != nil {
		return nil, jwsFail("issuer-signed JWT", err)
	}
	// Explicit typing keeps a KB-JWT, or any other JWT the issuer's key
	// signed, from passing as a credential (RFC 9901 section 9.11).
	if j.Header.Typ == TypKB || j.Header.Typ != typ {
		return nil, fail(ReasonBadTyp, "issuer-signed JWT has typ %q, want %q", j.Header.Typ, typ)
	}
	key, err := opts.IssuerKey(j.Header, payload)
	if err != nil {
		return nil, &Error{Reason: ReasonIssuerKey, Detail: err.Error(), Err: err}
	}
	if err := j.Verify(key); err != nil {
		return nil, jwsFail("issuer-signed JWT", err)
	}
	if alg, ok := payload[sdAlgKey]; ok && alg != HashSHA256 {
		return nil, fail(ReasonUnsupportedSDAlg, "_sd_alg %v", alg)
	}

	pr := processor{
		ds:       p.Disclosures,
		byDigest: make(map[string]int, len(p.Disclosures)),
		used:     make([]bool, len(p.Disclosures)),
		seen:     make(map[string]struct{}, 16),
		top:      make([]string, 0, len(p.Disclosures)),
	}
	for i, d := range p.Disclosures {
		if _, dup := pr.byDigest[d.Digest]; dup {
			return nil, fail(ReasonDuplicateDisclosure, "disclosure %s presented twice", d.Digest)
		}
		pr.byDigest[d.Digest] = i
	}
	delete(payload, sdAlgKey)
	if err := pr.object(payload, 0); err != nil {
		return nil, err
	}
	// Every Disclosure must hang off the signed payload. An unreferenced one
	// is tampered, foreign, or missing its parent; the whole presentation is
	// rejected rather than quietly dropping it.
	for i, used := range pr.used {
		if !used {
			return nil, fail(ReasonUnreferencedDisclosure, "disclosure %s matches no digest in the credential", p.Disclosures[i].Digest)
		}
	}
	slices.Sort(pr.top)
	if len(pr.top) == 0 {
		pr.top = nil // Disclosed stays nil when nothing was disclosed
	}

	if err := checkTimes(payload, opts.Now, skew); err != nil {
		return nil, err
	}
	res := &Result{Header: j.Header, Claims: payload, Disclosed: pr.top}
	if p.KeyBindingJWT != "" {
		kb, err := verifyKB(p, payload, algs, opts, window)
		if err != nil {
			return nil, err
		}
		res.KeyBinding = kb
	}
	return res, nil
}

func verifyKB(p *SDJWT, payload map[string]any, algs []string, opts VerifyOptions, window time.Duration) (*KeyBinding, error) {
	cnf, _ := payload["cnf"].(map[string]any)
	jwk, _ := cnf["jwk"].(map[string]any)
	if jwk == nil {
		return nil, fail(ReasonNoHolderKey, "credential has no cnf.jwk")
	}
	holder, err := jws.ParseJWKMap(jwk)
	if err != nil {
		return nil, &Error{Reason: ReasonNoHolderKey, Detail: "cnf.jwk: " + err.Error(), Err: err}
	}
	j, kb, err := jws.ParseClaims(p.KeyBindingJWT, algs...)
	if err != nil {
		return nil, jwsFail("key binding JWT", err)
	}
	if j.Header.Typ != TypKB {
		return nil, fail(ReasonKBBadTyp, "key binding JWT has typ %q, want %q", j.Header.Typ, TypKB)
	}
	if err := j.Verify(holder); err != nil {
		return nil, jwsFail("key binding JWT", err)
	}
	iat, ok1 := kb["iat"].(float64)
	aud, ok2 := kb["aud"].(string)
	nonce, ok3 := kb["nonce"].(string)
	sh, ok4 := kb["sd_hash"].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, fail(ReasonMalformed, "key binding JWT needs iat (number), aud, nonce and sd_hash (strings)")
	}
	// Compared on the stack: string(want[:]) in a comparison is not copied.
	if want := encodedDigest(p.Compact); sh != string(want[:]) {
		return nil, fail(ReasonSDHashMismatch, "sd_hash does not cover the presented SD-JWT")
	}
	if aud != opts.Audience || aud == "" {
		return nil, fail(ReasonAudMismatch, "aud %q, want %q", aud, opts.Audience)
	}
	if nonce != opts.Nonce || nonce == "" {
		return nil, fail(ReasonNonceMismatch, "nonce %q, want %q", nonce, opts.Nonce)
	}
	now := unixSeconds(opts.Now)
	if d := now - iat; d > window.Seconds() || -d > window.Seconds() {
		return nil, fail(ReasonKBIATOutOfWindow, "iat %.0f is %.0fs from now", iat, d)
	}
	return &KeyBinding{
		Header:   j.Header,
		IssuedAt: time.Unix(int64(iat), 0).UTC(),
		Audience: aud,
		Nonce:    nonce,
	}, nil
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// checkTimes applies exp, nbf and iat, which must be numbers when present.
func checkTimes(claims map[string]any, now time.Time, skew time.Duration) error {
	n, s := unixSeconds(now), skew.Seconds()
	num := func(name string) (float64, bool, error) {
		v, ok := claims[name]
		if !ok {
			return 0, false, nil
		}
		f, ok := v.(float64)
		if !ok {
			return 0, false, fail(ReasonMalformed, "%s is not a number", name)
		}
		return f, true, nil
	}
	exp, ok, err := num("exp")
	if err != nil {
		return err
	}
	if ok && n > exp+s {
		return fail(ReasonExpired, "expired at %.0f, now %.0f", exp, n)
	}
	for _, name := range []string{"nbf", "iat"} {
		t, ok, err := num(name)
		if err != nil {
			return err
		}
		if ok && n < t-s {
			return fail(ReasonNotYetValid, "%s %.0f is after now %.0f", name, t, n)
		}
	}
	return nil
}

// maxNesting bounds recursion through nested Disclosures, each of which is
// itself at most Limits.MaxDepth deep.
const maxNesting = 256

// processor replaces digests with disclosed claims, RFC 9901 section 7.1
// step 3, in place.
type processor struct {
	ds       []Disclosure
	byDigest map[string]int      // index into ds
	used     []bool              // by index into ds
	seen     map[string]struct{} // every digest met, decoys included
	top      []string            // top-level names disclosed
}

// lookup records dg as seen and returns its Disclosure, if presented.
func (p *processor) lookup(dg any) (*Disclosure, error) {
	s, ok := dg.(string)
	if !ok {
		return nil, fail(ReasonMalformed, "digest is not a string")
	}
	if _, dup := p.seen[s]; dup {
		return nil, fail(ReasonDuplicateDigest, "digest %s appears twice", s)
	}
	p.seen[s] = struct{}{}
	i, ok := p.byDigest[s]
	if !ok {
		return nil, nil
	}
	p.used[i] = true
	return &p.ds[i], nil
}

func (p *processor) value(v any, depth int) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		return v, p.object(v, depth+1)
	case []any:
		return p.array(v, depth+1)
	}
	return v, nil
}

func (p *processor) object(m map[string]any, depth int) error {
	if depth > maxNesting {
		return fail(ReasonTooLarge, "disclosures nested too deep")
	}
	sd, hasSD := m[sdKey]
	delete(m, sdKey)
	for k, v := range m {
		nv, err := p.value(v, depth)
		if err != nil {
			return err
		}
		if a, ok := nv.([]any); ok {
			m[k] = a // array() may have dropped elements
		}
	}
	if !hasSD {
		return nil
	}
	digests, ok := sd.([]any)
	if !ok {
		return fail(ReasonMalformed, "_sd is not an array")
	}
	for _, dg := range digests {
		d, err := p.lookup(dg)
		if err != nil {
			return err
		}
		if d == nil {
			continue // not disclosed, or a decoy
		}
		if d.Element {
			return fail(ReasonDisclosureKind, "array element disclosure %s referenced from _sd", d.Digest)
		}
		if _, exists := m[d.Name]; exists {
			return fail(ReasonDuplicateClaim, "disclosed claim %q already exists", d.Name)
		}
		if depth == 0 {
			if validityClaims[d.Name] {
				return fail(ReasonDisclosedValidityClaim, "%q must not be selectively disclosed", d.Name)
			}
			p.top = append(p.top, d.Name)
		}
		nv, err := p.value(d.Value, depth)
		if err != nil {
			return err
		}
		m[d.Name] = nv
	}
	return nil
}

func (p *processor) array(a []any, depth int) ([]any, error) {
	if depth > maxNesting {
		return nil, fail(ReasonTooLarge, "disclosures nested too deep")
	}
	out := a[:0] // in place: elements are only dropped, never added
	for _, e := range a {
		if m, ok := e.(map[string]any); ok && len(m) == 1 {
			if dg, ok := m[elemKey]; ok {
				d, err := p.lookup(dg)
				if err != nil {
					return nil, err
				}
				if d == nil {
					continue // undisclosed element or decoy: dropped
				}
				if !d.Element {
					return nil, fail(ReasonDisclosureKind, "object property disclosure %s referenced from an array", d.Digest)
				}
				nv, err := p.value(d.Value, depth)
				if err != nil {
					return nil, err
				}
				out = append(out, nv)
				continue
			}
		}
		nv, err := p.value(e, depth)
		if err != nil {
			return nil, err
		}
		out = append(out, nv)
	}
	return out, nil
}
