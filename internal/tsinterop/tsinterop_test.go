package tsinterop

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	aud       = "https://verifier.example"
	nonce     = "n-0S6_WzA2Mj"
	statusURI = "https://imi.example/status/7"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// statusListToken is a statuslist+jwt (EdDSA) holding statuses with 2 bits
// each, made with the standard library only.
func statusListToken(t *testing.T, key ed25519.PrivateKey, sub string, iat, exp int64, statuses []byte) string {
	t.Helper()
	raw := make([]byte, (len(statuses)+3)/4)
	for i, s := range statuses {
		raw[i/4] |= (s & 3) << (2 * (i % 4))
	}
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	w.Write(raw)
	w.Close()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(map[string]any{"alg": "EdDSA", "typ": "statuslist+jwt"}) + "." + enc(map[string]any{
		"sub": sub, "iat": iat, "exp": exp,
		"status_list": map[string]any{"bits": 2, "lst": base64.RawURLEncoding.EncodeToString(z.Bytes())},
	})
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(input)))
}

func TestRoundTrip(t *testing.T) {
	c := ctx(t)
	issuer, holder, statusKey := newKey(t), newKey(t), newKey(t)
	now := time.Now().Unix()

	issued, err := Issue(c, IssueRequest{
		IssuerPrivateJWK: PrivateJWK(issuer),
		Iss:              "did:imi:test-issuer",
		Kid:              "did:imi:test-issuer#key-1",
		Vct:              "https://imi.example/vct/resident",
		HolderJWK:        JWK(holder.Public().(ed25519.PublicKey)),
		Claims:           map[string]any{"given_name": "Ada", "family_name": "Lovelace", "age_over_60": true, "district": "north"},
		Disclosable:      []string{"given_name", "family_name", "age_over_60"},
		IAT:              now - 60,
		Exp:              now + 3600,
		StatusURI:        statusURI,
		StatusIdx:        5,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(issued, "~"); got != 4 {
		t.Fatalf("issued credential has %d '~', want 4 (3 disclosures): %s", got, issued)
	}
	header := strings.SplitN(issued, ".", 2)[0]
	if b, _ := base64.RawURLEncoding.DecodeString(header); !strings.Contains(string(b), `"typ":"dc+sd-jwt"`) || !strings.Contains(string(b), `"alg":"EdDSA"`) {
		t.Fatalf("issuer header %s", b)
	}

	pres, err := Present(c, PresentRequest{
		SDJWT: issued, HolderPrivateJWK: PrivateJWK(holder),
		Disclose: []string{"given_name", "age_over_60"}, Aud: aud, Nonce: nonce, IAT: now,
	})
	if err != nil {
		t.Fatal(err)
	}

	token := statusListToken(t, statusKey, statusURI, now-10, now+600, []byte{0, 0, 0, 0, 0, 2, 0, 0})
	req := VerifyRequest{
		SDJWT: pres, IssuerJWK: JWK(issuer.Public().(ed25519.PublicKey)),
		RequireKeyBinding: true, Aud: aud, Nonce: nonce,
		RequiredClaims:  []string{"given_name", "age_over_60"},
		StatusListToken: token, StatusListIssuerJWK: JWK(statusKey.Public().(ed25519.PublicKey)),
		Now: now,
	}
	res, err := Verify(c, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Fatalf("verify: %s", res.Error)
	}
	if res.Claims["given_name"] != "Ada" || res.Claims["age_over_60"] != true || res.Claims["district"] != "north" {
		t.Errorf("claims %v", res.Claims)
	}
	if _, ok := res.Claims["family_name"]; ok {
		t.Errorf("family_name was not disclosed but is in %v", res.Claims)
	}
	if res.Status == nil || *res.Status != 2 {
		t.Errorf("status %v, want 2 (suspended at idx 5)", res.Status)
	}

	// Tampering with the signed parts must be refused.
	parts := strings.Split(pres, "~")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`["c2FsdHNhbHRzYWx0c2FsdA","given_name","Eve"]`))
	other := JWK(newKey(t).Public().(ed25519.PublicKey))
	for name, mod := range map[string]func(r *VerifyRequest){
		"replaced disclosure": func(r *VerifyRequest) {
			r.SDJWT = strings.Join(slices.Concat(parts[:1], []string{forged}, parts[2:]), "~")
			r.RequiredClaims = nil // reach the sd_hash check
		},
		"added disclosure, no key binding": func(r *VerifyRequest) {
			r.SDJWT = strings.Join(slices.Concat(parts[:len(parts)-1], []string{forged, ""}), "~")
			r.RequireKeyBinding, r.RequiredClaims = false, nil
		},
		"no key binding JWT": func(r *VerifyRequest) { r.SDJWT = strings.Join(parts[:len(parts)-1], "~") + "~" },
		"wrong nonce":        func(r *VerifyRequest) { r.Nonce = "other" },
		"wrong aud":          func(r *VerifyRequest) { r.Aud = "https://other.example" },
		"wrong issuer key":   func(r *VerifyRequest) { r.IssuerJWK = other },
		"expired":            func(r *VerifyRequest) { r.Now = now + 7200 },
		"status list key":    func(r *VerifyRequest) { r.StatusListIssuerJWK = other },
		"status list sub": func(r *VerifyRequest) {
			r.StatusListToken = statusListToken(t, statusKey, "https://x", now, now+600, []byte{0})
		},
		"undisclosed claim":   func(r *VerifyRequest) { r.RequiredClaims = []string{"family_name"} },
		"issuer sig bit flip": func(r *VerifyRequest) { r.SDJWT = flipSig(parts[0]) + "~" + strings.Join(parts[1:], "~") },
	} {
		r := req
		mod(&r)
		res, err := Verify(c, r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.OK {
			t.Errorf("%s: verified, want refused", name)
		} else {
			t.Logf("%s: refused: %s", name, res.Error)
		}
	}
}

// flipSig flips one bit in the signature of a compact JWS.
func flipSig(jws string) string {
	i := strings.LastIndex(jws, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(jws[i+1:])
	sig[0] ^= 1
	return jws[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func TestStatus(t *testing.T) {
	c := ctx(t)
	key := newKey(t)
	now := time.Now().Unix()
	want := []byte{0, 1, 2, 3, 3, 2, 1, 0}
	token := statusListToken(t, key, statusURI, now, now+600, want)
	pub := JWK(key.Public().(ed25519.PublicKey))
	for idx, w := range want {
		res, err := Status(c, StatusRequest{Token: token, IssuerJWK: pub, Idx: idx, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK || res.Status != int(w) || res.Bits != 2 {
			t.Errorf("idx %d: %+v, want status %d bits 2", idx, res, w)
		}
	}
	for name, r := range map[string]StatusRequest{
		"wrong key":    {Token: token, IssuerJWK: JWK(newKey(t).Public().(ed25519.PublicKey))},
		"expired":      {Token: token, IssuerJWK: pub, Now: now + 3600},
		"out of range": {Token: token, IssuerJWK: pub, Idx: 8},
	} {
		res, err := Status(c, r)
		if err != nil {
			t.Fatal(err)
		}
		if res.OK {
			t.Errorf("%s: %+v, want refused", name, res)
		}
	}
}

func TestBench(t *testing.T) {
	c := ctx(t)
	issuer, holder := newKey(t), newKey(t)
	now := time.Now().Unix()
	issued, err := Issue(c, IssueRequest{
		IssuerPrivateJWK: PrivateJWK(issuer), Iss: "did:imi:test-issuer", Vct: "https://imi.example/vct/resident",
		HolderJWK: JWK(holder.Public().(ed25519.PublicKey)), Claims: map[string]any{"given_name": "Ada"},
		Disclosable: []string{"given_name"}, IAT: now, Exp: now + 3600,
	})
	if err != nil {
		t.Fatal(err)
	}
	pres, err := Present(c, PresentRequest{SDJWT: issued, HolderPrivateJWK: PrivateJWK(holder), Disclose: []string{"given_name"}, Aud: aud, Nonce: nonce, IAT: now})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Bench(c, BenchRequest{Presentations: []string{pres}, IssuerJWK: JWK(issuer.Public().(ed25519.PublicKey)), Aud: aud, Nonce: nonce, Now: now, Seconds: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verified < 1 || res.PerSecond <= 0 {
		t.Fatalf("bench %+v", res)
	}
	t.Logf("@sd-jwt/sd-jwt-vc 0.19.0 verifies %.0f presentations/s (one core)", res.PerSecond)

	_, err = Bench(c, BenchRequest{Presentations: []string{pres}, IssuerJWK: JWK(issuer.Public().(ed25519.PublicKey)), Aud: aud, Nonce: "other", Now: now, Seconds: 0.1})
	if err == nil {
		t.Fatal("bench with a wrong nonce: no error")
	}
}

func TestJWK(t *testing.T) {
	priv := newKey(t)
	j := PrivateJWK(priv)
	if j["kty"] != "OKP" || j["crv"] != "Ed25519" {
		t.Fatal(j)
	}
	seed, _ := base64.RawURLEncoding.DecodeString(j["d"].(string))
	x, _ := base64.RawURLEncoding.DecodeString(j["x"].(string))
	if !ed25519.NewKeyFromSeed(seed).Equal(priv) || !bytes.Equal(x, priv.Public().(ed25519.PublicKey)) {
		t.Fatal("JWK does not round-trip")
	}
}
