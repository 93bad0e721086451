package authn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/key"
)

var t0 = time.Unix(1_700_000_000, 0)

func seedKey(t testing.TB, b byte) key.Private {
	t.Helper()
	k, err := key.FromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// authorities is a fake ledger of two authorities.
func authorities(t testing.TB) (map[string]key.Private, KeyLookup) {
	ks := map[string]key.Private{"tax": seedKey(t, 1), "water": seedKey(t, 2)}
	return ks, func(id string) (key.Public, error) {
		k, ok := ks[id]
		if !ok {
			return key.Public{}, fmt.Errorf("no authority %q", id)
		}
		return k.Public(), nil
	}
}

// fakeClock is a settable clock, safe for concurrent reads.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

const target = "/v1/consents?subject=psn%3Aabc&x=1"

var body = []byte(`{"purpose":"water-bill"}`)

// signed returns the request as the node receives it, signed by tax at t0.
func signed(t testing.TB, ks map[string]key.Private) *http.Request {
	t.Helper()
	out, err := http.NewRequest(http.MethodPost, "https://node.example"+target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := SignRequest(out, body, "tax", ks["tax"], t0); err != nil {
		t.Fatal(err)
	}
	in := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	in.Header = out.Header.Clone()
	return in
}

func setHeader(t testing.TB, r *http.Request, edit func(s *signature)) {
	t.Helper()
	s, err := parseSignature(r.Header.Get(HeaderSignature))
	if err != nil {
		t.Fatal(err)
	}
	edit(&s)
	r.Header.Set(HeaderSignature, s.String())
}

func TestRequestRoundTripOverHTTP(t *testing.T) {
	ks, keys := authorities(t)
	v := &Verifier{Keys: keys, Now: func() time.Time { return t0 }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		id, err := v.Verify(r, b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, id)
	}))
	defer srv.Close()

	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, target},
		{http.MethodGet, ""}, // net/http sends "/"
		{http.MethodGet, "/v1/dids/did:imi:abc?"},
		{http.MethodDelete, "/v1/a%2Fb/%E4%BD%A0?q=%20"},
	} {
		var b []byte
		if tc.method == http.MethodPost {
			b = body
		}
		r, err := http.NewRequest(tc.method, srv.URL+tc.path, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := SignRequest(r, b, "tax", ks["tax"], t0); err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != "tax" {
			t.Errorf("%s %q: got %d %q, want 200 \"tax\"", tc.method, tc.path, resp.StatusCode, got)
		}
	}
}

func TestVerifyRefusesTampering(t *testing.T) {
	ks, keys := authorities(t)
	for _, tc := range []struct {
		name   string
		tamper func(r *http.Request) []byte // returns the body the node received
		want   error
	}{
		{"untouched", func(r *http.Request) []byte { return body }, nil},
		{"method", func(r *http.Request) []byte { r.Method = http.MethodPut; return body }, ErrBadSignature},
		{"path", func(r *http.Request) []byte { r.URL.Path = "/v1/consent"; return body }, ErrBadSignature},
		{"query", func(r *http.Request) []byte { r.URL.RawQuery = "subject=psn%3Aabc&x=2"; return body }, ErrBadSignature},
		{"query dropped", func(r *http.Request) []byte { r.URL.RawQuery = ""; return body }, ErrBadSignature},
		{"body", func(r *http.Request) []byte { return []byte(`{"purpose":"tax-audit"}`) }, ErrBadSignature},
		{"body dropped", func(r *http.Request) []byte { return nil }, ErrBadSignature},
		{"authority", func(r *http.Request) []byte {
			setHeader(t, r, func(s *signature) { s.authority = "water" })
			return body
		}, ErrBadSignature},
		{"unknown authority", func(r *http.Request) []byte {
			setHeader(t, r, func(s *signature) { s.authority = "nobody" })
			return body
		}, ErrUnknownAuthority},
		{"ts", func(r *http.Request) []byte {
			setHeader(t, r, func(s *signature) { s.ts++ })
			return body
		}, ErrBadSignature},
		{"nonce", func(r *http.Request) []byte {
			setHeader(t, r, func(s *signature) { s.nonce[0] ^= 1 })
			return body
		}, ErrBadSignature},
		{"sig", func(r *http.Request) []byte {
			setHeader(t, r, func(s *signature) { s.sig[10] ^= 1 })
			return body
		}, ErrBadSignature},
		{"sig not base64url", func(r *http.Request) []byte {
			h := r.Header.Get(HeaderSignature)
			r.Header.Set(HeaderSignature, h[:len(h)-1]+"!")
			return body
		}, ErrMalformed},
		{"no header", func(r *http.Request) []byte { r.Header.Del(HeaderSignature); return body }, ErrNoSignature},
		{"two headers", func(r *http.Request) []byte {
			r.Header.Add(HeaderSignature, r.Header.Get(HeaderSignature))
			return body
		}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verifier{Keys: keys, Now: func() time.Time { return t0 }}
			r := signed(t, ks)
			b := tc.tamper(r)
			id, err := v.Verify(r, b)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Verify = %q, %v; want %v", id, err, tc.want)
			}
			if tc.want == nil && id != "tax" {
				t.Errorf("Verify = %q, want \"tax\"", id)
			}
			if tc.want != nil && id != "" {
				t.Errorf("Verify returned id %q with an error", id)
			}
		})
	}
}

func TestVerifyTimeWindow(t *testing.T) {
	ks, keys := authorities(t)
	for _, tc := range []struct {
		name string
		skew time.Duration
		now  time.Time // the node's time; the request was signed at t0
		want error
	}{
		{"same time", 0, t0, nil},
		{"node ahead by the skew", 0, t0.Add(DefaultSkew), nil},
		{"node ahead beyond the skew", 0, t0.Add(DefaultSkew + time.Second), ErrStale},
		{"node behind by the skew", 0, t0.Add(-DefaultSkew), nil},
		{"node behind beyond the skew", 0, t0.Add(-DefaultSkew - time.Second), ErrStale},
		{"custom skew ahead", 10 * time.Second, t0.Add(11 * time.Second), ErrStale},
		{"custom skew behind", 10 * time.Second, t0.Add(-11 * time.Second), ErrStale},
		{"custom skew within", 10 * time.Second, t0.Add(-10 * time.Second), nil},
		{"a year later", 0, t0.AddDate(1, 0, 0), ErrStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verifier{Keys: keys, Skew: tc.skew, Now: func() time.Time { return tc.now }}
			if _, err := v.Verify(signed(t, ks), body); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyRefusesReplay(t *testing.T) {
	ks, keys := authorities(t)
	clk := newClock()
	v := &Verifier{Keys: keys, Now: clk.Now}
	r := signed(t, ks)
	if _, err := v.Verify(r, body); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, time.Second, DefaultSkew} {
		clk.Set(t0.Add(d))
		if _, err := v.Verify(r, body); !errors.Is(err, ErrReplay) {
			t.Errorf("the same request again %s later: %v, want ErrReplay", d, err)
		}
	}
	// Once the nonce is forgotten the request is stale, so it still fails.
	clk.Set(t0.Add(DefaultSkew + 2*time.Second))
	if _, err := v.Verify(r, body); !errors.Is(err, ErrStale) {
		t.Errorf("the same request after the window: %v, want ErrStale", err)
	}
	// Another nonce from the same authority is a new request.
	clk.Set(t0)
	if _, err := v.Verify(signed(t, ks), body); err != nil {
		t.Errorf("a new request: %v", err)
	}
}

func TestVerifyReplayConcurrent(t *testing.T) {
	ks, keys := authorities(t)
	v := &Verifier{Keys: keys, Now: func() time.Time { return t0 }}
	r := signed(t, ks)
	var ok, replay atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		in := r.Clone(r.Context())
		wg.Go(func() {
			<-start
			_, err := v.Verify(in, body)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrReplay):
				replay.Add(1)
			default:
				t.Errorf("Verify: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || replay.Load() != 99 {
		t.Errorf("accepted %d, refused as replays %d; want 1 and 99", ok.Load(), replay.Load())
	}
}

func TestVerifyBusyRatherThanForget(t *testing.T) {
	ks, keys := authorities(t)
	clk := newClock()
	v := &Verifier{Keys: keys, Now: clk.Now, maxLen: 2}
	sign := func() *http.Request { return signed(t, ks) }
	first := sign()
	for i, want := range []error{nil, nil, ErrBusy} {
		r := sign()
		if i == 0 {
			r = first
		}
		if _, err := v.Verify(r, body); !errors.Is(err, want) || (want == nil && err != nil) {
			t.Fatalf("request %d: %v, want %v", i, err, want)
		}
	}
	// The full cache still refuses the first request as a replay.
	if _, err := v.Verify(first, body); !errors.Is(err, ErrReplay) {
		t.Errorf("replay into a full cache: %v, want ErrReplay", err)
	}
	// Once the window has passed, the entries are swept and room returns.
	clk.Set(t0.Add(DefaultSkew + 2*time.Second))
	fresh, err := http.NewRequest(http.MethodPost, "https://node.example"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := SignRequest(fresh, body, "tax", ks["tax"], clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(fresh, body); err != nil {
		t.Errorf("after the window: %v", err)
	}
	if n := len(v.seen.m); n != 1 {
		t.Errorf("replay cache holds %d entries after the sweep, want 1", n)
	}
}

func TestSignRequestRefuses(t *testing.T) {
	ks, _ := authorities(t)
	for _, tc := range []struct {
		name, method, id string
		k                key.Private
		now              time.Time
	}{
		{"bad authority id", http.MethodGet, "Tax", ks["tax"], t0},
		{"no key", http.MethodGet, "tax", key.Private{}, t0},
		{"bad method", "GET POST", "tax", ks["tax"], t0},
		{"clock before 1970", http.MethodGet, "tax", ks["tax"], time.Unix(-1, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Method = tc.method
			if err := SignRequest(r, nil, tc.id, tc.k, tc.now); err == nil {
				t.Errorf("SignRequest succeeded")
			}
			if h := r.Header.Get(HeaderSignature); h != "" {
				t.Errorf("header set after an error: %q", h)
			}
		})
	}
}

// TestRequestGolden pins the signed bytes and the header: changing either
// breaks every authority's client.
func TestRequestGolden(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/v1/consents?x=1", nil)
	var nonce [nonceSize]byte
	for i := range nonce {
		nonce[i] = byte(i)
	}
	s := signature{authority: "tax", ts: t0.Unix(), nonce: nonce}
	msg, err := requestSignBytes(r, s, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	wantMsg := "imi/v1/request\x00POST\x00/v1/consents?x=1\x00tax\x001700000000\x00AAECAwQFBgcICQoLDA0ODw\x00" +
		"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	if string(msg) != wantMsg {
		t.Errorf("signed bytes\n got %q\nwant %q", msg, wantMsg)
	}

	if err := signRequest(r, []byte("{}"), "tax", seedKey(t, 1), t0, nonce); err != nil {
		t.Fatal(err)
	}
	const wantHeader = "authority=tax, ts=1700000000, nonce=AAECAwQFBgcICQoLDA0ODw, " +
		"sig=nW8m_KR_5ViqxW1jQV1KZRa4XgwnWFX7DryL792u1Bi4NDOO9o9Vs3Dtf7vZdGl1jRN3FN6qlhAa5UWLdLW7Aw"
	if got := r.Header.Get(HeaderSignature); got != wantHeader {
		t.Errorf("header\n got %s\nwant %s", got, wantHeader)
	}
	// The pinned signature is over the pinned bytes, checked apart from Verify.
	g, err := parseSignature(wantHeader)
	if err != nil {
		t.Fatal(err)
	}
	if !seedKey(t, 1).Public().Verify([]byte(wantMsg), g.sig[:]) {
		t.Error("the golden signature does not verify over the golden bytes")
	}
}

func TestParseSignature(t *testing.T) {
	const nonce = "AAECAwQFBgcICQoLDA0ODw"
	sig := strings.Repeat("A", 85) + "A"
	ok := "authority=tax, ts=1700000000, nonce=" + nonce + ", sig=" + sig
	for _, tc := range []struct {
		name, h string
		ok      bool
	}{
		{"canonical", ok, true},
		{"ts zero", strings.Replace(ok, "1700000000", "0", 1), true},
		{"empty", "", false},
		{"fields reordered", "ts=1700000000, authority=tax, nonce=" + nonce + ", sig=" + sig, false},
		{"no space", strings.ReplaceAll(ok, ", ", ","), false},
		{"extra field", ok + ", alg=ed25519", false},
		{"missing field", "authority=tax, ts=1700000000, nonce=" + nonce, false},
		{"quoted value", strings.Replace(ok, "authority=tax", `authority="tax"`, 1), false},
		{"upper-case authority", strings.Replace(ok, "authority=tax", "authority=Tax", 1), false},
		{"one-letter authority", strings.Replace(ok, "authority=tax", "authority=t", 1), false},
		{"ts leading zero", strings.Replace(ok, "1700000000", "01700000000", 1), false},
		{"ts sign", strings.Replace(ok, "1700000000", "+1700000000", 1), false},
		{"ts negative", strings.Replace(ok, "1700000000", "-1", 1), false},
		{"ts too long", strings.Replace(ok, "1700000000", "1700000000000", 1), false},
		{"ts fraction", strings.Replace(ok, "1700000000", "1700000000.5", 1), false},
		{"nonce padded", strings.Replace(ok, nonce, nonce+"==", 1), false},
		{"nonce short", strings.Replace(ok, nonce, nonce[:21], 1), false},
		{"nonce std base64", strings.Replace(ok, nonce, "AAECAwQFBgcICQoLDA0O+w", 1), false},
		{"nonce non-canonical", strings.Replace(ok, nonce, "AAECAwQFBgcICQoLDA0ODx", 1), false},
		{"sig short", strings.Replace(ok, sig, sig[:85], 1), false},
		{"sig non-canonical", strings.Replace(ok, sig, sig[:85]+"B", 1), false},
		{"trailing space", ok + " ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseSignature(tc.h)
			if tc.ok != (err == nil) {
				t.Fatalf("parseSignature(%q) error = %v, want ok = %v", tc.h, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v is not ErrMalformed", err)
			}
			if err == nil && s.String() != tc.h {
				t.Errorf("String() = %q, want %q", s.String(), tc.h)
			}
		})
	}
}

func FuzzParseSignature(f *testing.F) {
	ks, _ := authorities(f)
	r := signed(f, ks)
	f.Add(r.Header.Get(HeaderSignature))
	f.Add("authority=tax, ts=0, nonce=AAECAwQFBgcICQoLDA0ODw, sig=" + strings.Repeat("A", 86))
	f.Add("authority=tax, ts=1, nonce=, sig=")
	f.Add("authority=a-1, ts=999999999999, nonce=____________________-w, sig=" + strings.Repeat("_", 85) + "w")
	f.Add("")
	f.Add(", , , ")
	f.Fuzz(func(t *testing.T, h string) {
		s, err := parseSignature(h)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		// One spelling: what parses is exactly what String writes.
		if got := s.String(); got != h {
			t.Fatalf("parseSignature(%q).String() = %q", h, got)
		}
		if strings.IndexByte(h, 0) >= 0 {
			t.Fatalf("accepted a NUL byte: %q", h)
		}
	})
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []string
		want   string
	}{
		{"none", nil, ""},
		{"bearer", []string{"Bearer abc-_DEF"}, "abc-_DEF"},
		{"scheme case", []string{"bearer abc"}, "abc"},
		{"padded", []string{"Bearer abc=="}, "abc=="},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, ""},
		{"no token", []string{"Bearer "}, ""},
		{"no space", []string{"Bearer"}, ""},
		{"two spaces", []string{"Bearer  abc"}, ""},
		{"trailing space", []string{"Bearer abc "}, ""},
		{"comma", []string{"Bearer abc,def"}, ""},
		{"only padding", []string{"Bearer =="}, ""},
		{"two headers", []string{"Bearer abc", "Bearer def"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tc.header {
				r.Header.Add("Authorization", h)
			}
			if got := BearerToken(r); got != tc.want {
				t.Errorf("BearerToken = %q, want %q", got, tc.want)
			}
		})
	}
}
