package sdjwt

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/jws"
)

var (
	issuerKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	holderKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
	otherKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	now       = time.Unix(1_800_000_000, 0)
)

const (
	testAud   = "https://verifier.imi.example"
	testNonce = "n-0S6_WzA2Mj"
)

func testRand() *mrand.ChaCha8 { return mrand.NewChaCha8([32]byte{9}) }

func testOptions() VerifyOptions {
	return VerifyOptions{
		IssuerKey: func(h jws.Header, _ map[string]any) (crypto.PublicKey, error) {
			return issuerKey.Public(), nil
		},
		Audience: testAud,
		Nonce:    testNonce,
		Now:      now,
	}
}

func requireKB() VerifyOptions {
	o := testOptions()
	o.RequireKeyBinding = true
	return o
}

var disclosable = map[string]any{
	"given_name":     "Mei",
	"family_name":    "Chen",
	"birthdate":      "1990-04-01",
	"address":        map[string]any{"street_address": "12 Zumiao Rd", "locality": "Chancheng", "country": "CN"},
	"district":       "Chancheng",
	"phone_number":   "+86-757-0000-0000",
	"email":          "mei@example.cn",
	"nationality":    "CN",
	"resident_since": 2015,
	"id_hash":        "6rEJ2cS5B0qLw9ZbU1tLzA",
}

func testIssuance() Issuance {
	jwk, err := jws.PublicJWK(holderKey.Public())
	if err != nil {
		panic(err)
	}
	return Issuance{
		Header: jws.Header{Kid: "registrar-1"},
		Claims: map[string]any{
			"iss":    "did:imi:registrar:chancheng",
			"iat":    now.Add(-time.Hour).Unix(),
			"exp":    now.Add(365 * 24 * time.Hour).Unix(),
			"vct":    "urn:imi:resident:1",
			"cnf":    map[string]any{"jwk": jwk},
			"status": map[string]any{"status_list": map[string]any{"idx": 7, "uri": "https://imi.example/status/1"}},
		},
		Disclosable: disclosable,
		MinDecoys:   2,
	}
}

func issue(t testing.TB) string {
	t.Helper()
	sd, err := Issue(jws.Ed25519Signer(issuerKey), testIssuance(), testRand())
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

var presented = []string{"given_name", "birthdate", "district"}

// presentation is the benchmark's shape: 10 disclosable claims, 3 presented,
// key bound.
func presentation(t testing.TB) string {
	t.Helper()
	p, err := Present(issue(t), presented)
	if err != nil {
		t.Fatal(err)
	}
	p, err = AddKeyBinding(p, jws.Ed25519Signer(holderKey), testAud, testNonce, now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func reason(err error) string {
	var e *Error
	if errors.As(err, &e) && errors.Is(err, ErrInvalid) {
		return e.Reason
	}
	if err == nil {
		return "<nil>"
	}
	return "not an *Error: " + err.Error()
}

func wantReason(t *testing.T, raw string, opts VerifyOptions, want string) {
	t.Helper()
	res, err := Verify(raw, opts)
	if got := reason(err); got != want {
		t.Fatalf("reason %s, want %s (err %v)", got, want, err)
	}
	if res != nil {
		t.Fatalf("a rejected presentation returned claims %v", res.Claims)
	}
}

func b64s(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// disc encodes a Disclosure from its JSON text, as an attacker would.
func disc(json string) string { return b64s([]byte(json)) }

// signed signs payload as the issuer and appends discs as an SD-JWT.
func signed(t testing.TB, h jws.Header, payload map[string]any, discs ...string) string {
	t.Helper()
	pb, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := jws.Sign(jws.Ed25519Signer(issuerKey), h, pb)
	if err != nil {
		t.Fatal(err)
	}
	return jwt + "~" + strings.Join(append(discs, ""), "~")
}

// signedRaw signs a raw header, which jws.Sign would not produce.
func signedRaw(header string, payload map[string]any) string {
	pb, _ := json.Marshal(payload)
	in := b64s([]byte(header)) + "." + b64s(pb)
	return in + "." + b64s(ed25519.Sign(issuerKey, []byte(in))) + "~"
}

func basePayload() map[string]any {
	jwk, _ := jws.PublicJWK(holderKey.Public())
	return map[string]any{
		"iss": "did:imi:registrar:chancheng", "iat": now.Unix() - 60, "exp": now.Unix() + 3600,
		"vct": "urn:imi:resident:1", "cnf": map[string]any{"jwk": jwk}, "_sd_alg": "sha-256",
	}
}

// withSD returns basePayload with the digests of discs in _sd.
func withSD(discs ...string) map[string]any {
	p := basePayload()
	var ds []string
	for _, d := range discs {
		ds = append(ds, digest(d))
	}
	p["_sd"] = ds
	return p
}

type kbClaims struct {
	IAT    int64  `json:"iat"`
	Aud    string `json:"aud"`
	Nonce  string `json:"nonce"`
	SDHash string `json:"sd_hash"`
}

// kb signs a KB-JWT by hand, with sd_hash over hashed.
func kb(t testing.TB, hashed, typ string, key ed25519.PrivateKey, edit func(*kbClaims)) string {
	t.Helper()
	c := kbClaims{IAT: now.Unix(), Aud: testAud, Nonce: testNonce, SDHash: sdHash(hashed)}
	if edit != nil {
		edit(&c)
	}
	pb, _ := json.Marshal(c)
	tok, err := jws.Sign(jws.Ed25519Signer(key), jws.Header{Typ: typ}, pb)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRoundTrip(t *testing.T) {
	sd := issue(t)
	p, err := Parse(sd, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Disclosures) != 10 || p.KeyBindingJWT != "" {
		t.Fatalf("%d disclosures, kb %q", len(p.Disclosures), p.KeyBindingJWT)
	}
	salts := map[string]bool{}
	for _, d := range p.Disclosures {
		salt, err := base64.RawURLEncoding.Strict().DecodeString(d.Salt)
		if err != nil || len(salt) != 16 {
			t.Errorf("salt %q: %d bytes, %v", d.Salt, len(salt), err)
		}
		salts[d.Salt] = true
		if !reflect.DeepEqual(d.Value, normalize(disclosable[d.Name])) {
			t.Errorf("%s = %v", d.Name, d.Value)
		}
	}
	if len(salts) != 10 {
		t.Errorf("salts repeat: %v", salts)
	}
	_, payload, err := jws.ParseClaims(p.JWT, jws.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	sdList := payload["_sd"].([]any)
	if len(sdList) < 12 || len(sdList)%8 != 0 {
		t.Errorf("_sd has %d digests, want >= 10 + 2 decoys, a multiple of 8", len(sdList))
	}
	if !slices.IsSortedFunc(sdList, func(a, b any) int { return strings.Compare(a.(string), b.(string)) }) {
		t.Errorf("_sd not sorted: %v", sdList)
	}
	if payload["_sd_alg"] != "sha-256" {
		t.Errorf("_sd_alg %v", payload["_sd_alg"])
	}
	for _, c := range []string{"given_name", "email", "address"} {
		if _, ok := payload[c]; ok {
			t.Errorf("%s in the clear", c)
		}
	}

	res, err := Verify(presentation(t), requireKB())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Disclosed, []string{"birthdate", "district", "given_name"}) {
		t.Errorf("disclosed %v", res.Disclosed)
	}
	for _, c := range presented {
		if res.Claims[c] != disclosable[c] {
			t.Errorf("%s = %v", c, res.Claims[c])
		}
	}
	plain := []string{"iss", "iat", "exp", "vct", "cnf", "status"}
	if len(res.Claims) != len(plain)+len(presented) {
		t.Errorf("claims %v", res.Claims)
	}
	for _, c := range plain {
		if _, ok := res.Claims[c]; !ok {
			t.Errorf("missing %s", c)
		}
	}
	if res.Header.Typ != TypSDJWT || res.Header.Kid != "registrar-1" || res.Header.Alg != jws.EdDSA {
		t.Errorf("header %+v", res.Header)
	}
	if res.KeyBinding == nil || !res.KeyBinding.IssuedAt.Equal(now) {
		t.Errorf("key binding %+v", res.KeyBinding)
	}

	// A second issuance draws new salts and decoys.
	sd2, err := Issue(jws.Ed25519Signer(issuerKey), testIssuance(), mrand.NewChaCha8([32]byte{10}))
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := Parse(sd2, Limits{})
	for _, d := range p2.Disclosures {
		if salts[d.Salt] {
			t.Errorf("salt %s reused across issuances", d.Salt)
		}
	}
}

func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func TestIssueRefusesHiddenValidityClaims(t *testing.T) {
	for _, c := range []string{"iss", "iat", "nbf", "exp", "cnf", "vct", "status", "_sd", "..."} {
		in := testIssuance()
		in.Disclosable = map[string]any{c: "x"}
		if _, err := Issue(jws.Ed25519Signer(issuerKey), in, testRand()); err == nil {
			t.Errorf("%s accepted as disclosable", c)
		}
	}
	in := testIssuance()
	in.Disclosable = map[string]any{"iss": "x"}
	delete(in.Claims, "iss")
	if _, err := Issue(jws.Ed25519Signer(issuerKey), in, testRand()); err == nil {
		t.Error("disclosable iss accepted")
	}
	in = testIssuance()
	in.Claims["given_name"] = "plain"
	if _, err := Issue(jws.Ed25519Signer(issuerKey), in, testRand()); err == nil {
		t.Error("claim both plain and disclosable accepted")
	}
}

func TestPresentUnknownClaim(t *testing.T) {
	if _, err := Present(issue(t), []string{"shoe_size"}); err == nil {
		t.Error("unknown claim presented")
	}
}

func TestVerifyWithoutKeyBindingWhenNotRequired(t *testing.T) {
	p, _ := Present(issue(t), presented)
	res, err := Verify(p, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyBinding != nil || len(res.Disclosed) != 3 {
		t.Errorf("%+v", res)
	}
}

func TestAttackAlgNone(t *testing.T) {
	pb := b64s([]byte(`{"iss":"x","_sd_alg":"sha-256"}`))
	raw := b64s([]byte(`{"alg":"none","typ":"dc+sd-jwt"}`)) + "." + pb + ".~"
	wantReason(t, raw, testOptions(), ReasonAlgNotAllowed)
	o := testOptions()
	o.Algorithms = []string{"none", jws.EdDSA}
	wantReason(t, raw, o, ReasonAlgNotAllowed)
}

func TestAttackAlgOutsideAllowList(t *testing.T) {
	for _, alg := range []string{"HS256", "RS256", "ES384", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			wantReason(t, signedRaw(`{"alg":"`+alg+`","typ":"dc+sd-jwt"}`, basePayload()), testOptions(), ReasonAlgNotAllowed)
		})
	}
	o := testOptions()
	o.Algorithms = []string{jws.ES256}
	wantReason(t, presentation(t), o, ReasonAlgNotAllowed)
}

func TestAttackKeyInHeader(t *testing.T) {
	jwk, _ := json.Marshal(map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64s(otherKey.Public().(ed25519.PublicKey))})
	for _, member := range []string{`"jwk":` + string(jwk), `"jku":"https://evil.example/jwks"`, `"x5u":"https://evil.example/cert"`, `"x5c":["MIIB"]`, `"crit":["exp"]`} {
		name := member[1 : strings.IndexByte(member[1:], '"')+1]
		t.Run(name, func(t *testing.T) {
			_, err := Verify(signedRaw(`{"alg":"EdDSA","typ":"dc+sd-jwt",`+member+`}`, basePayload()), testOptions())
			if reason(err) != ReasonMalformed || !strings.Contains(err.Error(), `"`+name+`"`) {
				t.Fatalf("err %v, want malformed naming %q", err, name)
			}
		})
	}
}

func TestAttackDisclosureShape(t *testing.T) {
	for name, d := range map[string]string{
		"one element":     disc(`["salt"]`),
		"four elements":   disc(`["salt","name","value","extra"]`),
		"empty array":     disc(`[]`),
		"object":          disc(`{"salt":"s","name":"n"}`),
		"salt number":     disc(`[1234,"given_name","x"]`),
		"element salt":    disc(`[null,"x"]`),
		"name number":     disc(`["salt",7,"x"]`),
		"name null":       disc(`["salt",null,"x"]`),
		"duplicate key":   disc(`["salt","n",{"a":1,"a":2}]`),
		"not json":        disc(`["salt","n",`),
		"padded base64":   disc(`["salt","n","x"]`) + "=",
		"standard base64": strings.ReplaceAll(base64.StdEncoding.EncodeToString([]byte(`["salt","n",">>>?"]`)), "=", ""),
	} {
		t.Run(name, func(t *testing.T) {
			wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, withSD(d), d), testOptions(), ReasonMalformed)
		})
	}
}

func TestAttackReservedNames(t *testing.T) {
	for _, name := range []string{"_sd", "..."} {
		d := disc(`["c2FsdHNhbHRzYWx0c2FsdA","` + name + `",["x"]]`)
		wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, withSD(d), d), testOptions(), ReasonReservedClaimName)
	}
}

func TestAttackRepeatedDigest(t *testing.T) {
	d := disc(`["c2FsdA","given_name","Mei"]`)
	p := withSD(d, d)
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, p, d), testOptions(), ReasonDuplicateDigest)
	// Once in _sd, once as an array element, the Disclosure not even sent.
	e := disc(`["c2FsdA","CN"]`)
	p = withSD(e)
	p["nationalities"] = []any{map[string]any{"...": digest(e)}}
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, p), testOptions(), ReasonDuplicateDigest)
	// The same Disclosure presented twice.
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, withSD(d), d, d), testOptions(), ReasonDuplicateDisclosure)
}

func TestAttackUnreferencedDisclosure(t *testing.T) {
	d := disc(`["c2FsdA","given_name","Mei"]`)
	stray := disc(`["c2FsdA","is_admin",true]`)
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, withSD(d), d, stray), testOptions(), ReasonUnreferencedDisclosure)
	p, _ := Present(issue(t), presented)
	wantReason(t, p+stray+"~", testOptions(), ReasonUnreferencedDisclosure)
}

func TestAttackTamperedDisclosure(t *testing.T) {
	p := presentation(t)
	parsed, _ := Parse(p, Limits{})
	d := parsed.Disclosures[0]
	forged, _ := json.Marshal([]any{d.Salt, d.Name, "Mallory"})
	tampered := strings.Replace(p, d.Encoded, b64s(forged), 1)
	// Re-bind so only the Disclosure is wrong, not the sd_hash.
	bare := tampered[:strings.LastIndexByte(tampered, '~')+1]
	tampered = bare + kb(t, bare, TypKB, holderKey, nil)
	wantReason(t, tampered, requireKB(), ReasonUnreferencedDisclosure)
}

func TestAttackDisclosureKind(t *testing.T) {
	elem := disc(`["c2FsdA","CN"]`)
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, withSD(elem), elem), testOptions(), ReasonDisclosureKind)
	prop := disc(`["c2FsdA","nationality","CN"]`)
	p := basePayload()
	p["nationalities"] = []any{map[string]any{"...": digest(prop)}}
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, p, prop), testOptions(), ReasonDisclosureKind)
}

func TestAttackDisclosedClaimAlreadyPlain(t *testing.T) {
	d := disc(`["c2FsdA","vct","urn:evil"]`)
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, withSD(d), d), testOptions(), ReasonDuplicateClaim)
	d = disc(`["c2FsdA","district","Nanhai"]`)
	p := withSD(d)
	p["district"] = "Chancheng"
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, p, d), testOptions(), ReasonDuplicateClaim)
}

func TestAttackKeyBindingStripped(t *testing.T) {
	p := presentation(t)
	wantReason(t, p[:strings.LastIndexByte(p, '~')+1], requireKB(), ReasonKeyBindingRequired)
}

func TestAttackNonceMismatch(t *testing.T) {
	o := requireKB()
	o.Nonce = "another-transaction"
	wantReason(t, presentation(t), o, ReasonNonceMismatch)
	// A KB-JWT that was not asked for is still checked.
	o.RequireKeyBinding = false
	wantReason(t, presentation(t), o, ReasonNonceMismatch)
}

func TestAttackWrongAudience(t *testing.T) {
	o := requireKB()
	o.Audience = "https://other-verifier.example"
	wantReason(t, presentation(t), o, ReasonAudMismatch)
}

func TestAttackKBIATOutsideWindow(t *testing.T) {
	for name, shift := range map[string]time.Duration{"past": -6 * time.Minute, "future": 6 * time.Minute} {
		t.Run(name, func(t *testing.T) {
			p, _ := Present(issue(t), presented)
			p += kb(t, p, TypKB, holderKey, func(c *kbClaims) { c.IAT = now.Add(shift).Unix() })
			wantReason(t, p, requireKB(), ReasonKBIATOutOfWindow)
		})
	}
	p, _ := Present(issue(t), presented)
	p += kb(t, p, TypKB, holderKey, func(c *kbClaims) { c.IAT = now.Add(4 * time.Minute).Unix() })
	if _, err := Verify(p, requireKB()); err != nil {
		t.Errorf("inside the window: %v", err)
	}
}

func TestAttackSDHashOverOtherDisclosures(t *testing.T) {
	sd := issue(t)
	all, _ := Present(sd, []string{"given_name", "birthdate", "district", "email"})
	three, _ := Present(sd, presented)
	// Bound over four Disclosures, presented with three.
	wantReason(t, three+kb(t, all, TypKB, holderKey, nil), requireKB(), ReasonSDHashMismatch)
	// Bound over three, presented with four.
	wantReason(t, all+kb(t, three, TypKB, holderKey, nil), requireKB(), ReasonSDHashMismatch)
}

func TestAttackSDHashWithoutTrailingTilde(t *testing.T) {
	p, _ := Present(issue(t), presented)
	wantReason(t, p+kb(t, strings.TrimSuffix(p, "~"), TypKB, holderKey, nil), requireKB(), ReasonSDHashMismatch)
}

func TestAttackKBSignedByOtherKey(t *testing.T) {
	p, _ := Present(issue(t), presented)
	wantReason(t, p+kb(t, p, TypKB, otherKey, nil), requireKB(), ReasonBadSignature)
}

func TestAttackTypConfusion(t *testing.T) {
	// An issuer-signed JWT typed kb+jwt is never a credential, whatever the
	// verifier expects.
	kbTyped := signed(t, jws.Header{Typ: TypKB}, basePayload())
	wantReason(t, kbTyped, testOptions(), ReasonBadTyp)
	o := testOptions()
	o.Typ = TypKB
	wantReason(t, kbTyped, o, ReasonBadTyp)
	wantReason(t, signed(t, jws.Header{Typ: "JWT"}, basePayload()), testOptions(), ReasonBadTyp)
	wantReason(t, signed(t, jws.Header{}, basePayload()), testOptions(), ReasonBadTyp)
	// A KB-JWT typed as a credential.
	p, _ := Present(issue(t), presented)
	wantReason(t, p+kb(t, p, TypSDJWT, holderKey, nil), requireKB(), ReasonKBBadTyp)
	wantReason(t, p+kb(t, p, "", holderKey, nil), requireKB(), ReasonKBBadTyp)
}

func TestAttackHiddenValidityClaims(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"exp", `9999999999`}, {"cnf", `{"jwk":{"kty":"OKP","crv":"Ed25519","x":"` + b64s(otherKey.Public().(ed25519.PublicKey)) + `"}}`},
		{"status", `{"status_list":{"idx":0,"uri":"https://evil.example"}}`}, {"iss", `"did:imi:evil"`},
		{"nbf", `0`}, {"iat", `0`}, {"vct", `"urn:evil"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := disc(`["c2FsdA","` + c.name + `",` + c.value + `]`)
			p := withSD(d)
			delete(p, c.name)
			wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, p, d), testOptions(), ReasonDisclosedValidityClaim)
		})
	}
	// Nested, a claim named exp is just data.
	inner := disc(`["c2FsdA","exp","2030-01"]`)
	card := disc(`["c2FsdB","card",{"_sd":["` + digest(inner) + `"]}]`)
	if _, err := Verify(signed(t, jws.Header{Typ: TypSDJWT}, withSD(card), card, inner), testOptions()); err != nil {
		t.Errorf("nested exp: %v", err)
	}
}

func TestAttackExpired(t *testing.T) {
	o := requireKB()
	o.Now = now.Add(366 * 24 * time.Hour)
	p, _ := Present(issue(t), presented)
	p += kb(t, p, TypKB, holderKey, func(c *kbClaims) { c.IAT = o.Now.Unix() })
	wantReason(t, p, o, ReasonExpired)

	pl := basePayload()
	pl["nbf"] = now.Add(time.Hour).Unix()
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, pl), testOptions(), ReasonNotYetValid)
	pl = basePayload()
	pl["exp"] = "tomorrow"
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, pl), testOptions(), ReasonMalformed)
}

func TestAttackBadIssuerSignature(t *testing.T) {
	p := presentation(t)
	i := strings.IndexByte(p, '~')
	sig := []byte(p[strings.LastIndexByte(p[:i], '.')+1 : i])
	sig[10] ^= 'A' ^ 'B'
	forged := p[:strings.LastIndexByte(p[:i], '.')+1] + string(sig) + p[i:]
	if r := reason(func() error { _, err := Verify(forged, requireKB()); return err }()); r != ReasonBadSignature && r != ReasonMalformed {
		t.Fatalf("reason %s", r)
	}
	o := requireKB()
	o.IssuerKey = func(jws.Header, map[string]any) (crypto.PublicKey, error) { return otherKey.Public(), nil }
	wantReason(t, p, o, ReasonBadSignature)
	o.IssuerKey = func(jws.Header, map[string]any) (crypto.PublicKey, error) { return nil, errors.New("unknown kid") }
	wantReason(t, p, o, ReasonIssuerKey)
}

func TestAttackUnsupportedSDAlg(t *testing.T) {
	p := basePayload()
	p["_sd_alg"] = "md5"
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, p), testOptions(), ReasonUnsupportedSDAlg)
}

func TestAttackManyTildes(t *testing.T) {
	s := strings.Repeat("~", 1_000_000)
	wantReason(t, s, testOptions(), ReasonTooLarge)
	if _, err := Parse(s, Limits{}); reason(err) != ReasonTooLarge {
		t.Fatalf("Parse: %v", err)
	}
	// Within the size limit, the count of "~" alone refuses it.
	wantReason(t, strings.Repeat("~", 60_000), testOptions(), ReasonTooLarge)
	allocs := testing.AllocsPerRun(10, func() { _, _ = Verify(s, testOptions()) })
	if allocs > 10 {
		t.Errorf("%v allocations to refuse 1,000,000 '~'", allocs)
	}
}

func TestAttackTenThousandDisclosures(t *testing.T) {
	d := disc(`["c2FsdA","n",1]`)
	s := signed(t, jws.Header{Typ: TypSDJWT}, basePayload()) + strings.Repeat(d+"~", 10_000)
	wantReason(t, s, testOptions(), ReasonTooLarge)
	o := testOptions()
	o.Limits.MaxSize = 1 << 20
	wantReason(t, s, o, ReasonTooLarge) // too many, even when small enough
	allocs := testing.AllocsPerRun(10, func() { _, _ = Verify(s, o) })
	if allocs > 10 {
		t.Errorf("%v allocations to refuse 10,000 disclosures", allocs)
	}
}

func TestAttackDeepNesting(t *testing.T) {
	// 100,000 '[' do not fit the size limit.
	deep := disc(strings.Repeat("[", 100_000))
	wantReason(t, signed(t, jws.Header{Typ: TypSDJWT}, basePayload(), deep), testOptions(), ReasonTooLarge)
	// 10,000 do, and are refused by depth, after reading a bounded prefix.
	deep = disc(`["c2FsdA","n",` + strings.Repeat("[", 10_000))
	s := signed(t, jws.Header{Typ: TypSDJWT}, withSD(deep), deep)
	wantReason(t, s, testOptions(), ReasonTooLarge)
	allocs := testing.AllocsPerRun(10, func() { _, _ = Verify(s, testOptions()) })
	if allocs > 300 {
		t.Errorf("%v allocations to refuse deep nesting", allocs)
	}
	// And in the issuer-signed payload.
	pl := basePayload()
	var v any = "x"
	for range 40 {
		v = []any{v}
	}
	pl["deep"] = v
	wantReason(t, signedRaw(`{"alg":"EdDSA","typ":"dc+sd-jwt"}`, pl), testOptions(), ReasonTooLarge)
}

func TestParseStructure(t *testing.T) {
	jwt := signed(t, jws.Header{Typ: TypSDJWT}, basePayload())
	jwt = jwt[:len(jwt)-1]
	for name, s := range map[string]string{
		"no tilde":          jwt,
		"empty disclosure":  jwt + "~~",
		"empty jwt":         "~",
		"kb not a jwt":      jwt + "~" + disc(`["s","n",1]`),
		"jwt two parts":     "a.b~",
		"disclosure spaces": jwt + "~ " + disc(`["s","n",1]`) + "~",
	} {
		if _, err := Parse(s, Limits{}); reason(err) != ReasonMalformed {
			t.Errorf("%s: %v", name, err)
		}
	}
	p, err := Parse(jwt+"~", Limits{})
	if err != nil || p.JWT != jwt || len(p.Disclosures) != 0 || p.Compact != jwt+"~" {
		t.Errorf("bare SD-JWT: %+v %v", p, err)
	}
}

func TestVerifyNeedsClockAndKey(t *testing.T) {
	if _, err := Verify(presentation(t), VerifyOptions{IssuerKey: testOptions().IssuerKey}); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("zero Now: %v", err)
	}
	if _, err := Verify(presentation(t), VerifyOptions{Now: now}); err == nil {
		t.Error("nil IssuerKey accepted")
	}
}

func BenchmarkVerifyPresentation(b *testing.B) {
	p := presentation(b)
	o := requireKB()
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, err := Verify(p, o); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyPresentationNoCrypto is the same work minus the two
// signature checks, which dominate: what this package itself costs.
func BenchmarkVerifyPresentationNoCrypto(b *testing.B) {
	p := presentation(b)
	b.ReportAllocs()
	for b.Loop() {
		s, err := split(p, Limits{}.withDefaults())
		if err != nil {
			b.Fatal(err)
		}
		_, payload, err := jws.ParseClaims(s.JWT, jws.EdDSA)
		if err != nil {
			b.Fatal(err)
		}
		pr := processor{ds: s.Disclosures, byDigest: map[string]int{}, used: make([]bool, len(s.Disclosures)), seen: map[string]struct{}{}}
		for i, d := range s.Disclosures {
			pr.byDigest[d.Digest] = i
		}
		if err := pr.object(payload, 0); err != nil {
			b.Fatal(err)
		}
		if _, _, err := jws.ParseClaims(s.KeyBindingJWT, jws.EdDSA); err != nil {
			b.Fatal(err)
		}
		_ = sdHash(s.Compact)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(presentation(f))
	f.Add(issue(f))
	f.Add("~")
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := Parse(s, Limits{}); err == nil && !strings.HasPrefix(s, p.Compact) {
			t.Fatalf("Compact %q is not a prefix", p.Compact)
		}
		res, err := Verify(s, requireKB())
		if err == nil && res.KeyBinding == nil {
			t.Fatal("verified without the required key binding")
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error is not ErrInvalid: %v", err)
		}
	})
}
