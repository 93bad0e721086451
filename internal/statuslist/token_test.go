package statuslist

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/jws"
)

const testURI = "https://psb.imi.example/status/1"

var (
	testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	testPub = testKey.Public().(ed25519.PublicKey)
	// now is the injected clock of these tests.
	now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func testList(t testing.TB) *List {
	t.Helper()
	l, err := New(2, 64)
	if err != nil {
		t.Fatal(err)
	}
	l.Set(3, Invalid)
	l.Set(9, Suspended)
	return l
}

func signTest(t testing.TB, l *List) string {
	t.Helper()
	tok, err := SignToken(jws.Ed25519Signer(testKey), "key-1", testURI, now.Add(-time.Hour), now.Add(time.Hour), 10*time.Minute, l)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenRoundTrip(t *testing.T) {
	tok := signTest(t, testList(t))
	pt, err := ParseToken(tok, testURI, testPub, now, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if pt.Subject != testURI || !pt.IssuedAt.Equal(now.Add(-time.Hour)) || !pt.ExpiresAt.Equal(now.Add(time.Hour)) || pt.TTL != 10*time.Minute {
		t.Errorf("token = %+v", pt)
	}
	for _, tc := range []struct {
		idx  uint64
		want byte
	}{{0, Valid}, {3, Invalid}, {9, Suspended}, {63, Valid}} {
		got, err := pt.Status(tc.idx)
		if err != nil || got != tc.want {
			t.Errorf("Status(%d) = %#x, %v; want %#x", tc.idx, got, err, tc.want)
		}
	}
	for _, idx := range []uint64{64, 1 << 40, ^uint64(0)} {
		if _, err := pt.Status(idx); !errors.Is(err, ErrIndex) {
			t.Errorf("Status(%d) error = %v, want ErrIndex", idx, err)
		}
	}

	// The header and payload are what the draft and other verifiers expect.
	parts := strings.Split(tok, ".")
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var hdr, pl map[string]any
	json.Unmarshal(h, &hdr)
	json.Unmarshal(p, &pl)
	if hdr["typ"] != "statuslist+jwt" || hdr["alg"] != "EdDSA" || hdr["kid"] != "key-1" {
		t.Errorf("header = %s", h)
	}
	sl, _ := pl["status_list"].(map[string]any)
	if pl["sub"] != testURI || pl["iat"] != float64(now.Add(-time.Hour).Unix()) || pl["ttl"] != float64(600) || sl["bits"] != float64(2) || sl["lst"] == "" {
		t.Errorf("payload = %s", p)
	}
}

func TestTokenES256(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.NewChaCha8([32]byte{}))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := SignToken(jws.ES256Signer(k), "", testURI, now, now.Add(time.Hour), 0, testList(t))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := ParseToken(tok, testURI, &k.PublicKey, now, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if pt.TTL != 0 {
		t.Errorf("TTL = %v for a token without ttl", pt.TTL)
	}
	if _, err := ParseToken(tok, testURI, testPub, now, 1<<20); !errors.Is(err, ErrToken) {
		t.Errorf("ES256 token checked with an Ed25519 key: %v", err)
	}
}

// forge signs an arbitrary header and payload with the test key, to build
// tokens SignToken would refuse to.
func forge(t testing.TB, typ string, payload map[string]any) string {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.Sign(jws.Ed25519Signer(testKey), jws.Header{Typ: typ}, b)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func goodPayload(t testing.TB) map[string]any {
	lst, err := testList(t).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"sub":         testURI,
		"iat":         now.Add(-time.Hour).Unix(),
		"exp":         now.Add(time.Hour).Unix(),
		"status_list": map[string]any{"bits": 2, "lst": lst},
	}
}

func TestParseTokenRejects(t *testing.T) {
	otherKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	good := signTest(t, testList(t))
	with := func(k string, v any) string {
		p := goodPayload(t)
		p[k] = v
		return forge(t, TokenType, p)
	}
	without := func(k string) string {
		p := goodPayload(t)
		delete(p, k)
		return forge(t, TokenType, p)
	}
	withList := func(k string, v any) string {
		p := goodPayload(t)
		sl := p["status_list"].(map[string]any)
		if v == nil {
			delete(sl, k)
		} else {
			sl[k] = v
		}
		return forge(t, TokenType, p)
	}
	parts := strings.Split(good, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	badSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	bomb := zlibLst(t, make([]byte, 1<<20))

	for _, tc := range []struct {
		name  string
		token string
		uri   string
		want  error
	}{
		{"wrong typ", forge(t, "JWT", goodPayload(t)), testURI, ErrToken},
		{"no typ", forge(t, "", goodPayload(t)), testURI, ErrToken},
		{"media type typ", forge(t, "application/statuslist+jwt", goodPayload(t)), testURI, ErrToken},
		{"wrong sub", good, "https://psb.imi.example/status/2", ErrToken},
		{"sub differs in case", good, strings.ToUpper(testURI), ErrToken},
		{"bad signature", badSig, testURI, jws.ErrSignature},
		{"other key", func() string {
			tok, _ := SignToken(jws.Ed25519Signer(otherKey), "", testURI, now, now.Add(time.Hour), 0, testList(t))
			return tok
		}(), testURI, jws.ErrSignature},
		{"expired", with("exp", now.Unix()), testURI, ErrExpired},
		{"expired long ago", with("exp", now.Add(-24*time.Hour).Unix()), testURI, ErrExpired},
		{"no exp", without("exp"), testURI, ErrToken},
		{"null exp", with("exp", nil), testURI, ErrToken},
		{"no iat", without("iat"), testURI, ErrToken},
		{"iat in the future", with("iat", now.Add(2*time.Minute).Unix()), testURI, ErrToken},
		{"fractional iat", with("iat", 1.5), testURI, ErrToken},
		{"string iat", with("iat", "1"), testURI, ErrToken},
		{"nbf in the future", with("nbf", now.Add(time.Minute).Unix()), testURI, ErrToken},
		{"zero ttl", with("ttl", 0), testURI, ErrToken},
		{"negative ttl", with("ttl", -5), testURI, ErrToken},
		{"huge ttl", with("ttl", int64(1)<<60), testURI, ErrToken},
		{"no sub", without("sub"), testURI, ErrToken},
		{"SUB not sub", func() string {
			p := goodPayload(t)
			p["SUB"] = p["sub"]
			delete(p, "sub")
			return forge(t, TokenType, p)
		}(), testURI, ErrToken},
		{"no status_list", without("status_list"), testURI, ErrToken},
		{"status_list not object", with("status_list", "x"), testURI, ErrToken},
		{"bits 3", withList("bits", 3), testURI, ErrBits},
		{"bits string", withList("bits", "2"), testURI, ErrToken},
		{"no lst", withList("lst", nil), testURI, ErrToken},
		{"lst not base64url", withList("lst", "!!"), testURI, ErrMalformed},
		{"lst too large", withList("lst", bomb), testURI, ErrTooLarge},
		{"not a JWS", "abc", testURI, jws.ErrMalformed},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoic3RhdHVzbGlzdCtqd3QifQ." + parts[1] + ".", testURI, ErrToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseToken(tc.token, tc.uri, testPub, now, 1<<16)
			if !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
			if !errors.Is(err, ErrToken) {
				t.Errorf("error %v does not wrap ErrToken", err)
			}
		})
	}

	// Controls: the helpers build acceptable tokens when left alone, and
	// extra claims are ignored as the draft allows.
	for name, tok := range map[string]string{
		"forged good":  forge(t, TokenType, goodPayload(t)),
		"extra claim":  with("iss", "did:imi:authority:psb"),
		"nbf past":     with("nbf", now.Add(-time.Minute).Unix()),
		"iat now+30s":  with("iat", now.Add(30*time.Second).Unix()),
		"aggregation":  withList("aggregation_uri", "https://psb.imi.example/status"),
		"signed token": good,
	} {
		if _, err := ParseToken(tok, testURI, testPub, now, 1<<16); err != nil {
			t.Errorf("control %s: %v", name, err)
		}
	}
}

func TestSignTokenRejects(t *testing.T) {
	s := jws.Ed25519Signer(testKey)
	l := testList(t)
	for _, tc := range []struct {
		name     string
		sub      string
		iat, exp time.Time
		ttl      time.Duration
	}{
		{"relative sub", "status/1", now, now.Add(time.Hour), 0},
		{"empty sub", "", now, now.Add(time.Hour), 0},
		{"no iat", testURI, time.Time{}, now.Add(time.Hour), 0},
		{"exp before iat", testURI, now, now.Add(-time.Hour), 0},
		{"exp equals iat", testURI, now, now, 0},
		{"negative ttl", testURI, now, now.Add(time.Hour), -time.Second},
		{"sub-second ttl", testURI, now, now.Add(time.Hour), time.Millisecond},
	} {
		if _, err := SignToken(s, "", tc.sub, tc.iat, tc.exp, tc.ttl, l); err == nil {
			t.Errorf("%s: SignToken succeeded", tc.name)
		}
	}

	// A list whose token would exceed what jws.Parse accepts is refused at
	// signing time.
	big, _ := New(8, 1<<20)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range big.Size() {
		big.Set(i, byte(r.IntN(256)))
	}
	if _, err := SignToken(s, "", testURI, now, now.Add(time.Hour), 0, big); err == nil {
		t.Error("SignToken produced a token over jws.MaxSize")
	}
}

func TestClaim(t *testing.T) {
	c, err := NewClaim(Reference{Idx: 42, URI: testURI})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{"status": c})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"status":{"status_list":{"idx":42,"uri":"` + testURI + `"}}}`; string(b) != want {
		t.Errorf("claim JSON = %s, want %s", b, want)
	}

	// The same claim read back both ways: raw, and decoded as sdjwt does.
	var payload map[string]json.RawMessage
	json.Unmarshal(b, &payload)
	r, err := ParseClaim(payload["status"])
	if err != nil || r != (Reference{42, testURI}) {
		t.Errorf("ParseClaim = %+v, %v", r, err)
	}
	decoded, err := jws.DecodeJSON(b, jws.MaxDepth)
	if err != nil {
		t.Fatal(err)
	}
	r, err = FromClaims(decoded.(map[string]any))
	if err != nil || r != (Reference{42, testURI}) {
		t.Errorf("FromClaims = %+v, %v", r, err)
	}

	for _, bad := range []Reference{
		{0, ""}, {0, "status/1"}, {0, "ftp://x/y"}, {0, "https://"}, {0, "https://u:p@x/y"},
		{0, "https://x/y#frag"}, {0, "https://x/" + strings.Repeat("a", maxURI)}, {1<<53 + 1, testURI},
	} {
		if _, err := NewClaim(bad); !errors.Is(err, ErrClaim) {
			t.Errorf("NewClaim(%+v) error = %v, want ErrClaim", bad, err)
		}
	}
}

func TestParseClaimRejects(t *testing.T) {
	const uri = `"https://x.example/s/1"`
	for _, tc := range []struct {
		status string
		want   error
	}{
		{`{}`, ErrNoStatus},
		{`{"other_mechanism":{}}`, ErrNoStatus},
		{`null`, ErrClaim},
		{`[]`, ErrClaim},
		{`{"status_list":null}`, ErrClaim},
		{`{"status_list":[]}`, ErrClaim},
		{`{"status_list":{"uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"idx":null,"uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"idx":-1,"uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"idx":1.5,"uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"idx":1e3,"uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"idx":"1","uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"idx":18446744073709551616,"uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"IDX":1,"uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"idx":1}}`, ErrClaim},
		{`{"status_list":{"idx":1,"uri":7}}`, ErrClaim},
		{`{"status_list":{"idx":1,"idx":2,"uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"idx":1,"uri":` + uri + `},"status_list":{"idx":2,"uri":` + uri + `}}`, ErrClaim},
		{`{"status_list":{"idx":1,"uri":` + uri + `}} x`, ErrClaim},
	} {
		if _, err := ParseClaim([]byte(tc.status)); !errors.Is(err, tc.want) {
			t.Errorf("ParseClaim(%s) error = %v, want %v", tc.status, err, tc.want)
		}
	}
	// Extra members are allowed by the draft.
	r, err := ParseClaim([]byte(`{"other":1,"status_list":{"idx":7,"uri":` + uri + `,"x":true}}`))
	if err != nil || r.Idx != 7 {
		t.Errorf("extra members: %+v, %v", r, err)
	}
}

func TestFromClaimsRejects(t *testing.T) {
	ref := func(idx any) map[string]any {
		return map[string]any{"status": map[string]any{"status_list": map[string]any{"idx": idx, "uri": testURI}}}
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   error
	}{
		{"no status", map[string]any{}, ErrNoStatus},
		{"no status_list", map[string]any{"status": map[string]any{}}, ErrNoStatus},
		{"status string", map[string]any{"status": "x"}, ErrClaim},
		{"status_list string", map[string]any{"status": map[string]any{"status_list": "x"}}, ErrClaim},
		{"negative", ref(-1.0), ErrClaim},
		{"fraction", ref(0.5), ErrClaim},
		{"above 2^53", ref(float64(1 << 54)), ErrClaim},
		{"string", ref("1"), ErrClaim},
		{"null", ref(nil), ErrClaim},
		{"json.Number fraction", ref(json.Number("1.5")), ErrClaim},
		{"no uri", map[string]any{"status": map[string]any{"status_list": map[string]any{"idx": 1.0}}}, ErrClaim},
	} {
		if _, err := FromClaims(tc.claims); !errors.Is(err, tc.want) {
			t.Errorf("%s: error = %v, want %v", tc.name, err, tc.want)
		}
	}
	if r, err := FromClaims(ref(json.Number("12"))); err != nil || r.Idx != 12 {
		t.Errorf("json.Number: %+v, %v", r, err)
	}
}
