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
	"strings"
	"testing"
)

var (
	edKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	ecKey = mustEC()
)

func mustEC() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// signRaw builds a token from a raw header, bypassing Sign's own checks.
func signRaw(header, payload string) string {
	in := enc(header) + "." + enc(payload)
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(edKey, []byte(in)))
}

func TestSignParseVerify(t *testing.T) {
	for _, tc := range []struct {
		s   Signer
		pub any
	}{
		{Ed25519Signer(edKey), edKey.Public()},
		{ES256Signer(ecKey), &ecKey.PublicKey},
	} {
		t.Run(tc.s.Alg(), func(t *testing.T) {
			tok, err := Sign(tc.s, Header{Alg: "ignored", Typ: "kb+jwt", Kid: "k1"}, []byte(`{"a":1}`))
			if err != nil {
				t.Fatal(err)
			}
			j, err := Parse(tok, EdDSA, ES256)
			if err != nil {
				t.Fatal(err)
			}
			want := `{"alg":"` + tc.s.Alg() + `","typ":"kb+jwt","kid":"k1"}`
			if string(j.RawHeader) != want {
				t.Errorf("header = %s, want %s", j.RawHeader, want)
			}
			if (j.Header != Header{tc.s.Alg(), "kb+jwt", "k1"}) || string(j.Payload) != `{"a":1}` {
				t.Errorf("got %+v %s", j.Header, j.Payload)
			}
			if string(j.SigningInput) != tok[:strings.LastIndexByte(tok, '.')] {
				t.Errorf("signing input %s", j.SigningInput)
			}
			if err := j.Verify(tc.pub); err != nil {
				t.Fatal(err)
			}
			j.Signature[5] ^= 1
			if err := j.Verify(tc.pub); !errors.Is(err, ErrSignature) {
				t.Fatalf("tampered: %v", err)
			}
		})
	}
}

func TestSignOmitsEmptyHeaderMembers(t *testing.T) {
	tok, err := Sign(Ed25519Signer(edKey), Header{}, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if h := strings.Split(tok, ".")[0]; h != enc(`{"alg":"EdDSA"}`) {
		t.Errorf("header %s", h)
	}
	if _, err := Sign(Ed25519Signer(edKey), Header{}, []byte(`[1]`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("array payload: %v", err)
	}
}

func TestVerifyKeyTypeMustMatchAlg(t *testing.T) {
	tok, _ := Sign(Ed25519Signer(edKey), Header{}, []byte(`{}`))
	j, err := Parse(tok, EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Verify(&ecKey.PublicKey); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("EdDSA with EC key: %v", err)
	}
	tok, _ = Sign(ES256Signer(ecKey), Header{}, []byte(`{}`))
	j, _ = Parse(tok, ES256)
	if err := j.Verify(edKey.Public()); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("ES256 with Ed25519 key: %v", err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err := j.Verify(&p384.PublicKey); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("ES256 with P-384 key: %v", err)
	}
}

func TestParseStrict(t *testing.T) {
	good := signRaw(`{"alg":"EdDSA"}`, `{"a":1}`)
	parts := strings.Split(good, ".")
	sig := parts[2]
	for _, tc := range []struct {
		name, tok string
		want      error
		mention   string
	}{
		{"two parts", parts[0] + "." + parts[1], ErrMalformed, ""},
		{"four parts", good + ".x", ErrMalformed, ""},
		{"padding", parts[0] + "." + parts[1] + "==." + sig, ErrMalformed, ""},
		{"std alphabet", parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(sig) + "+", ErrMalformed, ""},
		{"newline", parts[0] + "." + parts[1][:4] + "\n" + parts[1][4:] + "." + sig, ErrMalformed, ""},
		{"non-canonical trailing bits", parts[0] + "." + enc(`{"a":1}`)[:len(enc(`{"a":1}`))-1] + "F." + sig, ErrMalformed, ""},
		{"empty signature", parts[0] + "." + parts[1] + ".", ErrMalformed, ""},
		{"alg none", enc(`{"alg":"none"}`) + "." + parts[1] + ".", ErrAlgorithm, ""},
		{"alg HS256", signRaw(`{"alg":"HS256"}`, `{}`), ErrAlgorithm, ""},
		{"alg RS256", signRaw(`{"alg":"RS256"}`, `{}`), ErrAlgorithm, ""},
		{"alg ES256 not allowed", signRaw(`{"alg":"ES256"}`, `{}`), ErrAlgorithm, ""},
		{"alg missing", signRaw(`{"typ":"x"}`, `{}`), ErrMalformed, ""},
		{"alg not string", signRaw(`{"alg":1}`, `{}`), ErrMalformed, ""},
		{"header array", signRaw(`["alg"]`, `{}`), ErrMalformed, ""},
		{"header duplicate alg", signRaw(`{"alg":"EdDSA","alg":"none"}`, `{}`), ErrMalformed, "duplicate"},
		{"jwk", signRaw(`{"alg":"EdDSA","jwk":{"kty":"OKP"}}`, `{}`), ErrMalformed, `"jwk"`},
		{"jku", signRaw(`{"alg":"EdDSA","jku":"https://evil"}`, `{}`), ErrMalformed, `"jku"`},
		{"x5u", signRaw(`{"alg":"EdDSA","x5u":"https://evil"}`, `{}`), ErrMalformed, `"x5u"`},
		{"x5c", signRaw(`{"alg":"EdDSA","x5c":["MII"]}`, `{}`), ErrMalformed, `"x5c"`},
		{"x5t", signRaw(`{"alg":"EdDSA","x5t":"a"}`, `{}`), ErrMalformed, `"x5t"`},
		{"x5t#S256", signRaw(`{"alg":"EdDSA","x5t#S256":"a"}`, `{}`), ErrMalformed, `"x5t#S256"`},
		{"crit", signRaw(`{"alg":"EdDSA","crit":["b64"],"b64":false}`, `{}`), ErrMalformed, `"`},
		{"b64", signRaw(`{"alg":"EdDSA","b64":false}`, `{}`), ErrMalformed, `"b64"`},
		{"zip", signRaw(`{"alg":"EdDSA","zip":"DEF"}`, `{}`), ErrMalformed, `"zip"`},
		{"unknown member", signRaw(`{"alg":"EdDSA","cty":"JWT"}`, `{}`), ErrMalformed, `"cty"`},
		{"payload array", signRaw(`{"alg":"EdDSA"}`, `[]`), ErrMalformed, ""},
		{"payload duplicate", signRaw(`{"alg":"EdDSA"}`, `{"a":1,"a":2}`), ErrMalformed, "duplicate"},
		{"payload trailing", signRaw(`{"alg":"EdDSA"}`, `{"a":1} {}`), ErrMalformed, ""},
		{"payload not utf-8", signRaw(`{"alg":"EdDSA"}`, "{\"a\":\"\xff\"}"), ErrMalformed, ""},
		{"payload too deep", signRaw(`{"alg":"EdDSA"}`, `{"a":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`), ErrTooLarge, ""},
		{"signature length", parts[0] + "." + parts[1] + "." + enc(strings.Repeat("x", 70)), ErrMalformed, ""},
		{"too large", signRaw(`{"alg":"EdDSA"}`, `{"a":"`+strings.Repeat("x", MaxSize)+`"}`), ErrTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.tok, EdDSA)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("err = %v, want mention of %s", err, tc.mention)
			}
		})
	}
	if _, err := Parse(good, EdDSA); err != nil {
		t.Fatalf("good token: %v", err)
	}
	if _, err := Parse(enc(`{"alg":"none"}`)+"."+parts[1]+".", "none", EdDSA); !errors.Is(err, ErrAlgorithm) {
		t.Fatalf("none allowed by caller: %v", err)
	}
}

func TestES256RejectsASN1Signature(t *testing.T) {
	tok, _ := Sign(ES256Signer(ecKey), Header{}, []byte(`{}`))
	in := tok[:strings.LastIndexByte(tok, '.')]
	der, err := ecdsa.SignASN1(rand.Reader, ecKey, sha256Sum([]byte(in)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(in+"."+base64.RawURLEncoding.EncodeToString(der), ES256); !errors.Is(err, ErrMalformed) {
		t.Fatalf("DER signature: %v", err)
	}
}

func TestCheckJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{`{"a":[1,{"b":null}],"c":"\u00e9"}`, nil},
		{`"x"`, nil},
		{`{"a":{"b":1,"b":2}}`, ErrMalformed},
		{`[{"a":1},{"a":1}]`, nil},
		{`{"a":1,"\u0061":2}`, ErrMalformed}, // same name, different spelling
		{`{"a":1`, ErrMalformed},
		{`{"a":1}x`, ErrMalformed},
		{``, ErrMalformed},
		{strings.Repeat("[", 32) + strings.Repeat("]", 32), nil},
		{strings.Repeat("[", 33) + strings.Repeat("]", 33), ErrTooLarge},
	} {
		if err := CheckJSON([]byte(tc.in), 32); !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("CheckJSON(%.40s) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

// TestCheckJSONDeepNesting shows that 100,000 '[' are refused after reading
// a bounded prefix, with bounded memory.
func TestCheckJSONDeepNesting(t *testing.T) {
	deep := []byte(strings.Repeat("[", 100_000))
	if err := CheckJSON(deep, 32); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	allocs := testing.AllocsPerRun(10, func() { _ = CheckJSON(deep, 32) })
	if allocs > 200 {
		t.Errorf("%v allocations for a refused document", allocs)
	}
}

func TestJWK(t *testing.T) {
	for _, pub := range []any{edKey.Public(), &ecKey.PublicKey} {
		m, err := PublicJWK(pub)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(m)
		got, err := ParseJWK(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Errorf("round trip of %s", raw)
		}
	}
	ec, _ := PublicJWK(&ecKey.PublicKey)
	x, y := ec["x"].(string), ec["y"].(string)
	ed, _ := PublicJWK(edKey.Public())
	edx := ed["x"].(string)
	badY := []byte(y)
	badY[3] ^= 1 // almost surely off the curve
	for name, raw := range map[string]string{
		"private d":      `{"kty":"OKP","crv":"Ed25519","x":"` + edx + `","d":"` + edx + `"}`,
		"EC private d":   `{"kty":"EC","crv":"P-256","x":"` + x + `","y":"` + y + `","d":"` + x + `"}`,
		"short x":        `{"kty":"OKP","crv":"Ed25519","x":"` + edx[:40] + `"}`,
		"long EC x":      `{"kty":"EC","crv":"P-256","x":"` + x + `AA","y":"` + y + `"}`,
		"off curve":      `{"kty":"EC","crv":"P-256","x":"` + x + `","y":"` + string(badY) + `"}`,
		"P-384":          `{"kty":"EC","crv":"P-384","x":"` + x + `","y":"` + y + `"}`,
		"RSA":            `{"kty":"RSA","n":"AQAB","e":"AQAB"}`,
		"X25519":         `{"kty":"OKP","crv":"X25519","x":"` + edx + `"}`,
		"duplicate x":    `{"kty":"OKP","crv":"Ed25519","x":"` + edx + `","x":"` + edx + `"}`,
		"x5c":            `{"kty":"OKP","crv":"Ed25519","x":"` + edx + `","x5c":"MII"}`,
		"padded x":       `{"kty":"OKP","crv":"Ed25519","x":"` + edx + `="}`,
		"not an object":  `["OKP"]`,
		"missing y":      `{"kty":"EC","crv":"P-256","x":"` + x + `"}`,
		"OKP with y":     `{"kty":"OKP","crv":"Ed25519","x":"` + edx + `","y":"` + edx + `"}`,
		"numeric member": `{"kty":"OKP","crv":"Ed25519","x":"` + edx + `","kid":1}`,
	} {
		if _, err := ParseJWK(json.RawMessage(raw)); err == nil {
			t.Errorf("%s: accepted %s", name, raw)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(signRaw(`{"alg":"EdDSA","typ":"kb+jwt"}`, `{"a":[1,2,{"b":null}]}`))
	f.Add(signRaw(`{"alg":"EdDSA","jwk":{}}`, `{}`))
	f.Fuzz(func(t *testing.T, s string) {
		j, err := Parse(s, EdDSA, ES256)
		if err != nil {
			return
		}
		if err := CheckJSON(j.Payload, MaxDepth); err != nil {
			t.Fatalf("Parse accepted a payload CheckJSON rejects: %v", err)
		}
		_ = j.Verify(edKey.Public())
		_ = j.Verify(&ecKey.PublicKey)
	})
}

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}
