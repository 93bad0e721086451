package consent_test

import (
	"errors"
	"testing"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/key"
)

// FuzzOpen feeds Open arbitrary boxes: it must never panic, must fail only
// with ErrBadBox, and anything it opens must be a well-formed subject.
func FuzzOpen(f *testing.F) {
	ctx, kem := testCtx(f), mustKEM(f, 0xa0)
	r, g := newParty(f, 1), newParty(f, 2)
	f.Add(sealTo(f, kem, ctx, consent.NewSubject(ctx, r.did, r.key, "", key.Private{})))
	f.Add(sealTo(f, kem, ctx, consent.NewSubject(ctx, r.did, r.key, g.did, g.key)))
	f.Add([]byte{})
	f.Add(make([]byte, consent.MaxBox))
	f.Fuzz(func(t *testing.T, box []byte) {
		s, err := consent.Open(kem, ctx, box)
		if err != nil {
			if !errors.Is(err, consent.ErrBadBox) {
				t.Fatalf("Open error %v is not ErrBadBox", err)
			}
			return
		}
		// Only a genuine box opens; it must survive a re-seal.
		if _, err := consent.Seal(kem.PublicKey().Bytes(), ctx, *s); err != nil {
			t.Fatalf("opened a subject Seal refuses: %v", err)
		}
	})
}
