package credential_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/tsinterop"
	"github.com/imi-city/imi/internal/tx"
)

// acceptAll is a NonceStore that accepts every nonce, so a benchmark can
// verify one presentation over and over and measure verification only.
type acceptAll struct{}

func (acceptAll) Use(string, time.Time) bool { return true }

// benchWorld is a world whose resident identity type has a tenth claim, as
// the benchmark figures are stated for a 10-claim credential.
func benchWorld(tb testing.TB) *world {
	w := newWorld(tb)
	w.l.mu.Lock()
	ct := w.l.byVCT[credential.VCTPrefix+credential.TypeResidentIdentity]
	ct.Claims = append(ct.Claims, tx.ClaimSpec{Name: "issuing_office", NameZH: "签发机关", NameEN: "Issuing office"})
	w.l.mu.Unlock()
	return w
}

// benchCredential issues a 10-claim credential and returns it.
func benchCredential(tb testing.TB, w *world) *credential.Issued {
	tb.Helper()
	c := identityClaims(tb, 1990, 5, 17)
	c["issuing_office"] = "北京市公安局朝阳分局"
	is, err := w.issuer(credential.TypeResidentIdentity).Issue(context.Background(), w.sub, c, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if n := strings.Count(is.SDJWT, "~") - 1; n != 10 {
		tb.Fatalf("%d disclosures, want 10", n)
	}
	return is
}

// benchPresentation is a 10-claim credential presenting 3 claims with key
// binding, and the policy that accepts it.
func benchPresentation(b *testing.B) (*world, string, credential.Policy) {
	b.Helper()
	w := benchWorld(b)
	is := benchCredential(b, w)
	w.now = w.now.Add(time.Hour)
	pres := w.present(is.SDJWT, threeClaims, aud, nonce)
	p := w.policy()
	p.Nonces = acceptAll{}
	if r := credential.Verify(w.l, pres, p); r.Outcome != credential.Valid || len(r.Disclosed) != 3 {
		b.Fatalf("%s/%s %v", r.Outcome, r.Reason, r.Disclosed)
	}
	return w, pres, p
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "presentations/s")
}

// BenchmarkVerifyPresentation verifies a presentation of 3 of 10 claims
// with key binding and a status check against the (in-memory) ledger.
func BenchmarkVerifyPresentation(b *testing.B) {
	w, pres, p := benchPresentation(b)
	b.SetBytes(int64(len(pres)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if r := credential.Verify(w.l, pres, p); r.Outcome != credential.Valid {
			b.Fatal(r.Reason)
		}
	}
	reportRate(b)
}

// BenchmarkVerifyPresentationParallel is the same on GOMAXPROCS goroutines.
func BenchmarkVerifyPresentationParallel(b *testing.B) {
	w, pres, p := benchPresentation(b)
	b.SetBytes(int64(len(pres)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := credential.Verify(w.l, pres, p); r.Outcome != credential.Valid {
				b.Error(r.Reason)
				return
			}
		}
	})
	reportRate(b)
}

// ed25519Inputs are the two signatures a verification checks, over the very
// bytes of the benchmark's presentation: the issuer's and the resident's.
func ed25519Inputs(b *testing.B) (pubs [2]ed25519.PublicKey, msgs, sigs [2][]byte) {
	w, pres, _ := benchPresentation(b)
	jwt, _, _ := strings.Cut(pres, "~")
	kb := pres[strings.LastIndexByte(pres, '~')+1:]
	pubs = [2]ed25519.PublicKey{w.keys[psb].Public().Ed25519(), w.resident.Public().Ed25519()}
	for i, s := range []string{jwt, kb} {
		j, err := jws.Parse(s, jws.EdDSA)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i], sigs[i] = j.SigningInput, j.Signature
	}
	return
}

// BenchmarkEd25519Verify is the bound: the two Ed25519 verifications every
// presentation needs, and nothing else.
func BenchmarkEd25519Verify(b *testing.B) {
	pubs, msgs, sigs := ed25519Inputs(b)
	b.ResetTimer()
	for range b.N {
		if !ed25519.Verify(pubs[0], msgs[0], sigs[0]) || !ed25519.Verify(pubs[1], msgs[1], sigs[1]) {
			b.Fatal("signature")
		}
	}
	reportRate(b)
}

// BenchmarkEd25519VerifyParallel is the bound of the parallel benchmark.
func BenchmarkEd25519VerifyParallel(b *testing.B) {
	pubs, msgs, sigs := ed25519Inputs(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !ed25519.Verify(pubs[0], msgs[0], sigs[0]) || !ed25519.Verify(pubs[1], msgs[1], sigs[1]) {
				b.Error("signature")
				return
			}
		}
	})
	reportRate(b)
}

// TestTSVerifyThroughput measures the TypeScript verifier on 200 distinct
// presentations of the benchmark's credential shape, for comparison with
// BenchmarkVerifyPresentation. It runs only with IMI_BENCH_TS=1. The TS
// side gets no status list token: it checks what IMI checks bar the status,
// which IMI reads from the ledger rather than from a token.
func TestTSVerifyThroughput(t *testing.T) {
	if os.Getenv("IMI_BENCH_TS") != "1" {
		t.Skip("set IMI_BENCH_TS=1 to measure the TypeScript verifier")
	}
	ctx := tsContext(t)
	w := benchWorld(t)
	const n = 200
	presentations := make([]string, n)
	for i := range presentations {
		is := benchCredential(t, w)
		presentations[i] = w.present(is.SDJWT, threeClaims, aud, nonce)
	}
	for i, p := range presentations {
		if r := credential.Verify(w.l, p, credential.Policy{Audience: aud, Nonce: nonce, Now: w.now, Nonces: acceptAll{}}); r.Outcome != credential.Valid {
			t.Fatalf("presentation %d: %s/%s", i, r.Outcome, r.Reason)
		}
	}
	res, err := tsinterop.Bench(ctx, tsinterop.BenchRequest{
		Presentations: presentations, IssuerJWK: tsJWK(psb + "/key-1"),
		Aud: aud, Nonce: nonce, Now: w.now.Unix(), Seconds: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("@sd-jwt/sd-jwt-vc 0.19.0 (node %s): %d verifications in %.2f s = %.0f presentations/s (one core, %d distinct presentations, 3 of 10 claims, key binding, no status)",
		nodeVersion(), res.Verified, res.Seconds, res.PerSecond, n)
}

func nodeVersion() string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
