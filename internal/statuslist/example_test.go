package statuslist_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/statuslist"
)

// An issuer revokes one credential and suspends another; a verifier checks
// the index a credential carries against the signed list.
func Example() {
	issuerKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	const uri = "https://psb.imi.example/status/1"
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	// Issuer side.
	l, _ := statuslist.New(2, 1024)
	l.Set(7, statuslist.Invalid)
	l.Set(8, statuslist.Suspended)
	tok, err := statuslist.SignToken(jws.Ed25519Signer(issuerKey), "psb-2026", uri,
		now, now.Add(24*time.Hour), time.Hour, l)
	if err != nil {
		panic(err)
	}

	// Verifier side, with the reference from the credential.
	ref := statuslist.Reference{Idx: 7, URI: uri}
	t, err := statuslist.ParseToken(tok, ref.URI, issuerKey.Public(), now.Add(time.Minute), 1<<20)
	if err != nil {
		panic(err)
	}
	for _, idx := range []uint64{6, ref.Idx, 8, 5000} {
		s, err := t.Status(idx)
		if err != nil {
			fmt.Printf("%d: undetermined (%v)\n", idx, err)
			continue
		}
		fmt.Printf("%d: %#02x\n", idx, s)
	}
	fmt.Println("cache for", t.TTL)
	// Output:
	// 6: 0x00
	// 7: 0x01
	// 8: 0x02
	// 5000: undetermined (index out of range: 5000 not in [0, 1024))
	// cache for 1h0m0s
}

// The 1-bit example of draft-ietf-oauth-status-list §4.1.
func ExampleDecode() {
	l, err := statuslist.Decode(1, "eNrbuRgAAhcBXQ", 16)
	if err != nil {
		panic(err)
	}
	for i := range l.Size() {
		fmt.Print(l.Get(i))
	}
	fmt.Println()
	// Output: 1001110111000101
}
