package sdjwt

import (
	"crypto"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/jws"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rfcOptions verifies the RFC's examples: ES256, typ example+sd-jwt, and the
// clock at the KB-JWT's iat.
func rfcOptions(t *testing.T) VerifyOptions {
	key, err := jws.ParseJWK(json.RawMessage(readTestdata(t, "rfc9901_issuer_jwk.json")))
	if err != nil {
		t.Fatal(err)
	}
	return VerifyOptions{
		IssuerKey:  func(jws.Header, map[string]any) (crypto.PublicKey, error) { return key, nil },
		Algorithms: []string{jws.ES256},
		Typ:        "example+sd-jwt",
		Audience:   "https://verifier.example.org",
		Nonce:      "1234567890",
		Now:        time.Unix(1748537243, 0),
	}
}

func processed(t *testing.T, name string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(readTestdata(t, name)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRFC9901Section5Presentation(t *testing.T) {
	opts := rfcOptions(t)
	opts.RequireKeyBinding = true
	res, err := Verify(strings.TrimSpace(readTestdata(t, "rfc9901_sec5_presentation.txt")), opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := processed(t, "rfc9901_sec5_processed.json"); !reflect.DeepEqual(res.Claims, want) {
		t.Errorf("claims\n got %v\nwant %v", res.Claims, want)
	}
	if want := []string{"address", "family_name", "given_name"}; !slices.Equal(res.Disclosed, want) {
		t.Errorf("disclosed %v, want %v", res.Disclosed, want)
	}
	kb := res.KeyBinding
	if kb == nil || kb.Nonce != "1234567890" || kb.Audience != "https://verifier.example.org" || kb.IssuedAt.Unix() != 1748537243 {
		t.Errorf("key binding %+v", kb)
	}
}

func TestRFC9901Section5Issued(t *testing.T) {
	res, err := Verify(readTestdata(t, "rfc9901_sec5_sdjwt.txt"), rfcOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Claims["nationalities"]; !reflect.DeepEqual(got, []any{"US", "DE"}) {
		t.Errorf("nationalities %v", got)
	}
	want := []string{"address", "birthdate", "email", "family_name", "given_name", "phone_number", "phone_number_verified", "updated_at"}
	if !slices.Equal(res.Disclosed, want) {
		t.Errorf("disclosed %v", res.Disclosed)
	}
	// The holder's view: presenting the same claims as the RFC's Section
	// 5.2 (and one nationality) yields the same processed payload.
	p, err := Present(readTestdata(t, "rfc9901_sec5_sdjwt.txt"), []string{"given_name", "family_name", "address"})
	if err != nil {
		t.Fatal(err)
	}
	res, err = Verify(p, rfcOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"address", "family_name", "given_name"}; !slices.Equal(res.Disclosed, want) {
		t.Errorf("presented %v", res.Disclosed)
	}
	if got := res.Claims["nationalities"]; !reflect.DeepEqual(got, []any{}) {
		t.Errorf("undisclosed nationalities %v, want []", got)
	}
}

func TestRFC9901AppendixA1(t *testing.T) {
	res, err := Verify(readTestdata(t, "rfc9901_a1_presentation.txt"), rfcOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := processed(t, "rfc9901_a1_processed.json"); !reflect.DeepEqual(res.Claims, want) {
		t.Errorf("claims\n got %v\nwant %v", res.Claims, want)
	}
	if len(res.Disclosed) != 0 {
		t.Errorf("top-level disclosed %v, want none", res.Disclosed)
	}
}

func TestRFC9901Digests(t *testing.T) {
	var vectors []struct{ Section, Disclosure, Digest string }
	if err := json.Unmarshal([]byte(readTestdata(t, "rfc9901_digests.json")), &vectors); err != nil {
		t.Fatal(err)
	}
	for _, v := range vectors {
		d, err := decodeDisclosure(v.Disclosure, jws.MaxDepth)
		if err != nil {
			t.Fatalf("section %s: %v", v.Section, err)
		}
		if d.Digest != v.Digest {
			t.Errorf("section %s: digest %s, want %s", v.Section, d.Digest, v.Digest)
		}
	}
}

// TestRFC9901Section6_3Recursive uses the RFC's recursive Disclosures under
// a payload signed with a test key (the RFC publishes no signed JWT for it).
func TestRFC9901Section6_3Recursive(t *testing.T) {
	var vectors []struct{ Section, Disclosure, Digest string }
	if err := json.Unmarshal([]byte(readTestdata(t, "rfc9901_digests.json")), &vectors); err != nil {
		t.Fatal(err)
	}
	var discs []string
	for _, v := range vectors {
		if v.Section == "6.3" {
			discs = append(discs, v.Disclosure)
		}
	}
	payload := map[string]any{
		"_sd":     []string{"HvrKX6fPV0v9K_yCVFBiLFHsMaxcD_114Em6VT8x1lg"},
		"iss":     "https://issuer.example.com",
		"iat":     1683000000,
		"exp":     1883000000,
		"sub":     "6c5c0a49-b589-431d-bae7-219122a9ec2c",
		"_sd_alg": "sha-256",
	}
	sdjwt := signed(t, jws.Header{Typ: TypSDJWT}, payload, discs...)
	opts := testOptions()
	opts.Now = time.Unix(1748537243, 0)
	res, err := Verify(sdjwt, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"street_address": "Schulstr. 12", "locality": "Schulpforta", "region": "Sachsen-Anhalt", "country": "DE"}
	if !reflect.DeepEqual(res.Claims["address"], want) {
		t.Errorf("address %v", res.Claims["address"])
	}
	// Presenting address takes its nested Disclosures with it.
	p, err := Present(sdjwt, []string{"address"})
	if err != nil {
		t.Fatal(err)
	}
	if p != sdjwt {
		t.Errorf("Present(address) dropped disclosures:\n%s", p)
	}
	p, _ = Present(sdjwt, []string{"sub"})
	if strings.Count(p, "~") != 1 {
		t.Errorf("Present(sub) kept disclosures: %s", p)
	}
	// A child without its parent hangs off nothing.
	if _, err := Verify(signed(t, jws.Header{Typ: TypSDJWT}, payload, discs[0]), opts); reason(err) != ReasonUnreferencedDisclosure {
		t.Errorf("orphan child: %v", err)
	}
}
