package consent_test

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/pseudonym"
)

// seed returns a 32-byte seed filled with b.
func seed(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func mustKey(tb testing.TB, b byte) key.Private {
	tb.Helper()
	k, err := key.FromSeed(seed(b))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func mustKEM(tb testing.TB, b byte) *ecdh.PrivateKey {
	tb.Helper()
	k, err := consent.KEMKey(seed(b))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// party is a resident or guardian: a DID and the DID's key.
type party struct {
	did string
	key key.Private
}

func newParty(tb testing.TB, b byte) party {
	k := mustKey(tb, b)
	return party{did: did.FromKey(k.Public()).String(), key: k}
}

// testCtx is a context as a wallet builds it: the resident's pseudonym
// towards the service's authority, sealed to the medical insurance bureau.
func testCtx(tb testing.TB) consent.Context {
	tb.Helper()
	p, err := pseudonym.Derive(seed(0x50), "civil_affairs")
	if err != nil {
		tb.Fatal(err)
	}
	return consent.Context{
		ChainID:   "imi-demo-1",
		Pseudonym: pseudonym.FromKey(p.Public()).String(),
		Service:   "elderly_allowance",
		Authority: "hsb",
	}
}

func sealTo(tb testing.TB, kem *ecdh.PrivateKey, ctx consent.Context, s consent.Subject) []byte {
	tb.Helper()
	box, err := consent.Seal(kem.PublicKey().Bytes(), ctx, s)
	if err != nil {
		tb.Fatal(err)
	}
	return box
}

func TestSealOpenRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	kem := mustKEM(t, 0xa0)
	ward, guardian := newParty(t, 1), newParty(t, 2)
	for _, tc := range []struct {
		name  string
		s     consent.Subject
		gdKey key.Public
	}{
		{"resident alone", consent.NewSubject(ctx, ward.did, ward.key, "", key.Private{}), key.Public{}},
		{"guardian acts", consent.NewSubject(ctx, ward.did, ward.key, guardian.did, guardian.key), guardian.key.Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			box := sealTo(t, kem, ctx, tc.s)
			if len(box) != consent.MaxBox {
				t.Errorf("box is %d bytes, want MaxBox %d", len(box), consent.MaxBox)
			}
			got, err := consent.Open(kem, ctx, box)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.s) {
				t.Errorf("Open = %+v, want %+v", *got, tc.s)
			}
			if err := got.Check(ctx, ward.key.Public(), tc.gdKey); err != nil {
				t.Errorf("Check: %v", err)
			}
		})
	}
}

// TestSealIsRandomized: two boxes of the same subject differ (fresh
// ephemeral key), so equal boxes on the chain do not reveal an equal subject.
func TestSealIsRandomized(t *testing.T) {
	ctx, kem, r := testCtx(t), mustKEM(t, 0xa0), newParty(t, 1)
	s := consent.NewSubject(ctx, r.did, r.key, "", key.Private{})
	if bytes.Equal(sealTo(t, kem, ctx, s), sealTo(t, kem, ctx, s)) {
		t.Error("two seals of one subject are equal")
	}
}

func TestBoxLengthHidesSubject(t *testing.T) {
	ctx, kem := testCtx(t), mustKEM(t, 0xa0)
	a, b, g := newParty(t, 1), newParty(t, 3), newParty(t, 2)
	lengths := map[string]int{
		"resident alone":       len(sealTo(t, kem, ctx, consent.NewSubject(ctx, a.did, a.key, "", key.Private{}))),
		"another resident":     len(sealTo(t, kem, ctx, consent.NewSubject(ctx, b.did, b.key, "", key.Private{}))),
		"guardian acts":        len(sealTo(t, kem, ctx, consent.NewSubject(ctx, a.did, a.key, g.did, g.key))),
		"other guardian, ward": len(sealTo(t, kem, ctx, consent.NewSubject(ctx, g.did, g.key, b.did, b.key))),
	}
	for name, n := range lengths {
		if n != consent.MaxBox {
			t.Errorf("%s: box is %d bytes, want %d", name, n, consent.MaxBox)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	ctx, kem := testCtx(t), mustKEM(t, 0xa0)
	r, g := newParty(t, 1), newParty(t, 2)
	box := sealTo(t, kem, ctx, consent.NewSubject(ctx, r.did, r.key, g.did, g.key))

	wantBad := func(t *testing.T, k *ecdh.PrivateKey, c consent.Context, b []byte) {
		t.Helper()
		s, err := consent.Open(k, c, b)
		if !errors.Is(err, consent.ErrBadBox) {
			t.Errorf("Open = %v, %v; want ErrBadBox", s, err)
		}
	}

	t.Run("wrong key", func(t *testing.T) { wantBad(t, mustKEM(t, 0xa1), ctx, box) })
	t.Run("nil key", func(t *testing.T) { wantBad(t, nil, ctx, box) })
	t.Run("P-256 key", func(t *testing.T) {
		k, err := ecdh.P256().NewPrivateKey(seed(7))
		if err != nil {
			t.Fatal(err)
		}
		wantBad(t, k, ctx, box)
	})
	for _, tc := range []struct {
		field  string
		change func(*consent.Context)
	}{
		{"chain id", func(c *consent.Context) { c.ChainID = "imi-demo-2" }},
		{"pseudonym", func(c *consent.Context) {
			p, _ := pseudonym.Derive(seed(0x51), "civil_affairs")
			c.Pseudonym = pseudonym.FromKey(p.Public()).String()
		}},
		{"service", func(c *consent.Context) { c.Service = "disability_allowance" }},
		{"authority", func(c *consent.Context) { c.Authority = "hrss" }},
		{"field boundary", func(c *consent.Context) { c.ChainID, c.Pseudonym = c.ChainID+"\x00"+c.Pseudonym, "" }},
		{"empty", func(c *consent.Context) { *c = consent.Context{} }},
	} {
		t.Run("changed "+tc.field, func(t *testing.T) {
			c := ctx
			tc.change(&c)
			wantBad(t, kem, c, box)
		})
	}
	t.Run("flipped byte", func(t *testing.T) {
		for i := range box {
			b := bytes.Clone(box)
			b[i] ^= 0x01
			if _, err := consent.Open(kem, ctx, b); !errors.Is(err, consent.ErrBadBox) {
				t.Fatalf("byte %d flipped: Open error %v, want ErrBadBox", i, err)
			}
		}
	})
	for _, n := range []int{0, 1, 32, consent.MaxBox - 16, consent.MaxBox - 1} {
		t.Run(fmt.Sprintf("truncated to %d", n), func(t *testing.T) { wantBad(t, kem, ctx, box[:n]) })
	}
	t.Run("extended", func(t *testing.T) { wantBad(t, kem, ctx, append(bytes.Clone(box), 0)) })
}

// TestOpenDoesNotCheckSignatures documents the split: Open checks the shape,
// Check the signatures against keys from the ledger.
func TestOpenDoesNotCheckSignatures(t *testing.T) {
	ctx, kem := testCtx(t), mustKEM(t, 0xa0)
	r, other := newParty(t, 1), newParty(t, 9)
	s := consent.NewSubject(ctx, r.did, other.key, "", key.Private{}) // signed by the wrong key
	got, err := consent.Open(kem, ctx, sealTo(t, kem, ctx, s))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := got.Check(ctx, r.key.Public(), key.Public{}); !errors.Is(err, consent.ErrBadSubject) {
		t.Errorf("Check = %v, want ErrBadSubject", err)
	}
}

func TestSealRefuses(t *testing.T) {
	ctx, kem := testCtx(t), mustKEM(t, 0xa0)
	pub := kem.PublicKey().Bytes()
	r, g := newParty(t, 1), newParty(t, 2)
	ok := consent.NewSubject(ctx, r.did, r.key, "", key.Private{})
	for _, tc := range []struct {
		name string
		pub  []byte
		ctx  consent.Context
		s    consent.Subject
	}{
		{"no resident key", pub, ctx, consent.NewSubject(ctx, r.did, key.Private{}, "", key.Private{})},
		{"guardian DID without key", pub, ctx, consent.NewSubject(ctx, r.did, r.key, g.did, key.Private{})},
		{"guardian key without DID", pub, ctx, consent.NewSubject(ctx, r.did, r.key, "", g.key)},
		{"own guardian", pub, ctx, consent.NewSubject(ctx, r.did, r.key, r.did, r.key)},
		{"not a DID", pub, ctx, consent.NewSubject(ctx, "did:example:123", r.key, "", key.Private{})},
		{"guardian not a DID", pub, ctx, consent.NewSubject(ctx, r.did, r.key, "someone", g.key)},
		{"short key", pub[:31], ctx, ok},
		{"low-order key", make([]byte, 32), ctx, ok},
		{"empty context", pub, consent.Context{}, ok},
		{"NUL in context", pub, consent.Context{ChainID: "a\x00b", Pseudonym: "p", Service: "s", Authority: "a"}, ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if box, err := consent.Seal(tc.pub, tc.ctx, tc.s); err == nil {
				t.Errorf("Seal = %d bytes, want an error", len(box))
			}
		})
	}
}

func TestCheck(t *testing.T) {
	ctx := testCtx(t)
	r, g, x := newParty(t, 1), newParty(t, 2), newParty(t, 9)
	alone := consent.NewSubject(ctx, r.did, r.key, "", key.Private{})
	guarded := consent.NewSubject(ctx, r.did, r.key, g.did, g.key)
	noGuardianSig := guarded
	noGuardianSig.GuardianSig = nil
	swapped := guarded
	swapped.DIDSig, swapped.GuardianSig = guarded.GuardianSig, guarded.DIDSig
	otherCtx := ctx
	otherCtx.Authority = "hrss"
	elsewhere := consent.NewSubject(otherCtx, r.did, r.key, "", key.Private{})

	for _, tc := range []struct {
		name     string
		s        consent.Subject
		ctx      consent.Context
		res, gdn key.Public
		ok       bool
	}{
		{"resident alone", alone, ctx, r.key.Public(), key.Public{}, true},
		{"guardian acts", guarded, ctx, r.key.Public(), g.key.Public(), true},
		{"wrong resident key", alone, ctx, x.key.Public(), key.Public{}, false},
		{"zero resident key", alone, ctx, key.Public{}, key.Public{}, false},
		{"wrong guardian key", guarded, ctx, r.key.Public(), x.key.Public(), false},
		{"guardian key not given", guarded, ctx, r.key.Public(), key.Public{}, false},
		{"guardian missing sig", noGuardianSig, ctx, r.key.Public(), g.key.Public(), false},
		{"guardian expected, none signed", alone, ctx, r.key.Public(), g.key.Public(), false},
		{"signatures swapped", swapped, ctx, r.key.Public(), g.key.Public(), false},
		{"signed for another authority", elsewhere, ctx, r.key.Public(), key.Public{}, false},
		{"bad context", alone, consent.Context{}, r.key.Public(), key.Public{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Check(tc.ctx, tc.res, tc.gdn)
			if tc.ok && err != nil {
				t.Errorf("Check = %v, want nil", err)
			}
			if !tc.ok && !errors.Is(err, consent.ErrBadSubject) {
				t.Errorf("Check = %v, want ErrBadSubject", err)
			}
		})
	}
}

func TestSubjectSignBytes(t *testing.T) {
	ctx := consent.Context{ChainID: "c", Pseudonym: "psn:p", Service: "s", Authority: "a"}
	got := consent.SubjectSignBytes(ctx, "did:imi:x")
	want := "imi/v1/consent-subject\x00c\x00psn:p\x00s\x00a\x00did:imi:x"
	if string(got) != want {
		t.Errorf("SubjectSignBytes = %q, want %q", got, want)
	}
}

func TestKEMKey(t *testing.T) {
	a1, a2, b := mustKEM(t, 1), mustKEM(t, 1), mustKEM(t, 2)
	if !a1.Equal(a2) {
		t.Error("KEMKey is not deterministic")
	}
	if a1.Equal(b) || bytes.Equal(a1.PublicKey().Bytes(), b.PublicKey().Bytes()) {
		t.Error("two seeds give the same KEM key")
	}
	if bytes.Equal(a1.Bytes(), seed(1)) {
		t.Error("KEM key is the seed itself")
	}
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := consent.KEMKey(make([]byte, n)); err == nil {
			t.Errorf("KEMKey accepted a %d-byte seed", n)
		}
	}
	// Regression vector: HKDF-SHA256(ikm = 00..1f, salt = nil,
	// info = "imi/v1/authority-kem"), then X25519. A change here changes
	// every authority's published KEM key.
	ikm := make([]byte, 32)
	for i := range ikm {
		ikm[i] = byte(i)
	}
	k, err := consent.KEMKey(ikm)
	if err != nil {
		t.Fatal(err)
	}
	const wantPriv = "5642024da6e280c91f3dec0ea071b947730d11dd4d8f5ca5ae08c274a5d0911d"
	const wantPub = "0f4e5f6788dcc1a36e3b12cffdcc5c05a227b8e94ebc45591218120d718a963d"
	if got := hex.EncodeToString(k.Bytes()); got != wantPriv {
		t.Errorf("private = %s, want %s", got, wantPriv)
	}
	if got := hex.EncodeToString(k.PublicKey().Bytes()); got != wantPub {
		t.Errorf("public = %s, want %s", got, wantPub)
	}
}

// TestOpenErrorsHoldNoPlaintext: the detail of an Open error names what is
// wrong, never a DID.
func TestOpenErrorsHoldNoPlaintext(t *testing.T) {
	ctx, kem := testCtx(t), mustKEM(t, 0xa0)
	r := newParty(t, 1)
	box := sealTo(t, kem, ctx, consent.NewSubject(ctx, r.did, r.key, "", key.Private{}))
	box[len(box)-1] ^= 1
	_, err := consent.Open(kem, ctx, box)
	if err == nil || strings.Contains(err.Error(), r.did) {
		t.Errorf("Open error %v", err)
	}
}
