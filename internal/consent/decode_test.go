package consent

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/tx"
)

func fixture(tb testing.TB) (*ecdh.PrivateKey, Context, Subject) {
	tb.Helper()
	kem, err := KEMKey(bytes.Repeat([]byte{0xa0}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	ctx := Context{ChainID: "imi-demo-1", Pseudonym: "psn:x", Service: "elderly_allowance", Authority: "hsb"}
	r, _ := key.FromSeed(bytes.Repeat([]byte{1}, 32))
	g, _ := key.FromSeed(bytes.Repeat([]byte{2}, 32))
	s := NewSubject(ctx, did.FromKey(r.Public()).String(), r, did.FromKey(g.Public()).String(), g)
	return kem, ctx, s
}

// sealJSON seals arbitrary JSON, padded correctly, so the tests reach the
// decoder behind the AEAD.
func sealJSON(tb testing.TB, kem *ecdh.PrivateKey, ctx Context, js []byte) []byte {
	tb.Helper()
	pt, err := pad(js)
	if err != nil {
		tb.Fatal(err)
	}
	return sealPlain(tb, kem, ctx, pt)
}

func sealPlain(tb testing.TB, kem *ecdh.PrivateKey, ctx Context, pt []byte) []byte {
	tb.Helper()
	box, err := seal(kem.PublicKey().Bytes(), ctx, pt)
	if err != nil {
		tb.Fatal(err)
	}
	return box
}

func TestLargestSubjectFits(t *testing.T) {
	_, _, s := fixture(t)
	js, err := tx.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	if len(js) > bucket-lenPrefix {
		t.Fatalf("subject with guardian is %d bytes of JSON, bucket holds %d", len(js), bucket-lenPrefix)
	}
	t.Logf("largest subject: %d of %d bytes", len(js), bucket-lenPrefix)
}

func TestOpenStrict(t *testing.T) {
	kem, ctx, s := fixture(t)
	canon, err := tx.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.StdEncoding.EncodeToString(s.DIDSig)
	gsig := base64.StdEncoding.EncodeToString(s.GuardianSig)
	canonStr := string(canon)

	if _, err := Open(kem, ctx, sealJSON(t, kem, ctx, canon)); err != nil {
		t.Fatalf("canonical subject: %v", err)
	}
	for _, tc := range []struct {
		name string
		js   string
	}{
		{"whitespace", strings.Replace(canonStr, `,"did_sig"`, `, "did_sig"`, 1)},
		{"reordered", `{"did_sig":"` + sig + `","did":"` + s.DID + `","guardian":"` + s.Guardian + `","guardian_sig":"` + gsig + `"}`},
		{"duplicate did", strings.Replace(canonStr, `{`, `{"did":"`+s.Guardian+`",`, 1)},
		{"unknown field", strings.Replace(canonStr, `}`, `,"secret_field":1}`, 1)},
		{"key in another case", strings.Replace(canonStr, `"did"`, `"DID"`, 1)},
		{"escaped letter", strings.Replace(canonStr, `did:imi:`, `did:\u0069mi:`, 1)},
		{"url base64", strings.Replace(canonStr, sig, base64.URLEncoding.EncodeToString(s.DIDSig), 1)},
		{"trailing data", canonStr + " "},
		{"two objects", canonStr + `{}`},
		{"null guardian", `{"did":"` + s.DID + `","did_sig":"` + sig + `","guardian":null}`},
		{"short signature", strings.Replace(canonStr, sig, base64.StdEncoding.EncodeToString(s.DIDSig[:63]), 1)},
		{"not a DID", strings.Replace(canonStr, s.DID, "did:imi:short", 1)},
		{"empty", ``},
		{"array", `[]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(kem, ctx, sealJSON(t, kem, ctx, []byte(tc.js)))
			if !errors.Is(err, ErrBadBox) {
				t.Fatalf("Open = %v, want ErrBadBox", err)
			}
			if msg := err.Error(); strings.Contains(msg, "secret_field") || strings.Contains(msg, s.DID) || strings.Contains(msg, s.Guardian) {
				t.Errorf("error %q reveals plaintext", msg)
			}
		})
	}

	good, _ := pad(canon)
	for _, tc := range []struct {
		name string
		pt   func() []byte
	}{
		{"padding not zero", func() []byte { p := bytes.Clone(good); p[bucket-1] = 1; return p }},
		{"length too short", func() []byte {
			p := bytes.Clone(good)
			binary.BigEndian.PutUint16(p, uint16(len(canon)-1))
			return p
		}},
		{"length too long", func() []byte {
			p := bytes.Clone(good)
			binary.BigEndian.PutUint16(p, uint16(len(canon)+1))
			return p
		}},
		{"length beyond bucket", func() []byte { p := bytes.Clone(good); binary.BigEndian.PutUint16(p, 0xffff); return p }},
		{"unpadded", func() []byte { return good[:lenPrefix+len(canon)] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(kem, ctx, sealPlain(t, kem, ctx, tc.pt())); !errors.Is(err, ErrBadBox) {
				t.Errorf("Open = %v, want ErrBadBox", err)
			}
		})
	}
}

// FuzzOpenPlaintext seals what the fuzzer gives as the subject's JSON and
// opens it: Open must never panic, and whatever it accepts must be the one
// canonical encoding of a well-formed subject.
func FuzzOpenPlaintext(f *testing.F) {
	kem, ctx, s := fixture(f)
	canon, _ := tx.Marshal(&s)
	f.Add(canon)
	alone := s
	alone.Guardian, alone.GuardianSig = "", nil
	canonAlone, _ := tx.Marshal(&alone)
	f.Add(canonAlone)
	f.Add([]byte(`{"did":"","did_sig":null}`))
	f.Add([]byte(`{}`))
	pub := kem.PublicKey().Bytes()
	f.Fuzz(func(t *testing.T, js []byte) {
		pt, err := pad(js)
		if err != nil {
			return
		}
		box, err := seal(pub, ctx, pt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Open(kem, ctx, box)
		if err != nil {
			if !errors.Is(err, ErrBadBox) {
				t.Fatalf("Open error %v is not ErrBadBox", err)
			}
			return
		}
		again, err := tx.Marshal(got)
		if err != nil || !bytes.Equal(again, js) {
			t.Fatalf("accepted %q, which re-encodes as %q", js, again)
		}
		if err := got.check(); err != nil {
			t.Fatalf("accepted a malformed subject: %v", err)
		}
	})
}
