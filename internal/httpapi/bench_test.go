package httpapi

import (
	"fmt"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/credential"
)

type acceptAll struct{}

func (acceptAll) Use(string, time.Time) bool { return true }

// BenchmarkVerifyAgainstLedger verifies presentations (3 of 3 claims hidden
// behind 3+ decoys, key binding, status) against the real ledger state, as
// the verify endpoint does but without HTTP: issuer, key history, type and
// status entry are read from the committed iavl tree each time.
func BenchmarkVerifyAgainstLedger(b *testing.B) {
	f := newCredFixture(b)
	iss, holder := f.issue(b)
	f.chain.mu.Lock()
	f.chain.hold = true // freeze block time so presentations stay fresh
	f.chain.mu.Unlock()
	now := f.chain.Status().LatestTime
	pool := make([]string, 64)
	for i := range pool {
		pool[i] = f.present(b, iss, holder, fmt.Sprintf("bench-nonce-%08d", i), "pension_status", "contribution_years", "insurance_number")
	}
	verify := func(i int) {
		r := credential.Verify(f.api.cred.ledger, pool[i%len(pool)], credential.Policy{
			Audience: "urn:imi:service:pension", Nonce: fmt.Sprintf("bench-nonce-%08d", i%len(pool)), Now: now, Nonces: acceptAll{},
		})
		if r.Outcome != credential.Valid {
			b.Fatalf("outcome %s %s %s", r.Outcome, r.Reason, r.Detail)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			verify(i)
			i++
		}
	})
}
