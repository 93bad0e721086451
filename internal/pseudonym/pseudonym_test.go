package pseudonym

import (
	"bytes"
	"errors"
	"testing"
)

func TestDeriveIsStableAndPerAuthority(t *testing.T) {
	secret := bytes.Repeat([]byte{9}, SecretSize)
	a1, err := Derive(secret, "cc-hrss")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := Derive(secret, "cc-hrss")
	b, _ := Derive(secret, "cc-psb")
	other, _ := Derive(bytes.Repeat([]byte{8}, SecretSize), "cc-hrss")
	if !a1.Public().Equal(a2.Public()) {
		t.Error("the same secret and authority gave two keys")
	}
	if a1.Public().Equal(b.Public()) || a1.Public().Equal(other.Public()) {
		t.Error("two authorities, or two wallets, share a pseudonym")
	}
	// A pinned vector (HKDF-SHA256, salt "imi/v1/pseudonym", info the
	// authority id, then an Ed25519 key from that seed): a change here
	// renames every resident on the ledger and loses their logs.
	if got, want := FromKey(a1.Public()).String(), "psn:2BKGYsZLxDbdPpdn4Wd0QgUJJorhtZnIoJBalEOQyI0"; got != want {
		t.Errorf("pseudonym of the test secret towards cc-hrss = %s, want %s", got, want)
	}
}

func TestDeriveRefuses(t *testing.T) {
	if _, err := Derive(make([]byte, 31), "cc-hrss"); err == nil {
		t.Error("a short secret was accepted")
	}
	if _, err := Derive(make([]byte, SecretSize), ""); err == nil {
		t.Error("an empty authority was accepted")
	}
}

func TestParse(t *testing.T) {
	k, _ := Derive(bytes.Repeat([]byte{1}, SecretSize), "cc-hsb")
	id := FromKey(k.Public())
	back, err := Parse(id.String())
	if err != nil || !back.Key().Equal(k.Public()) || back.String() != id.String() {
		t.Fatalf("Parse(%s) = %v, %v", id, back, err)
	}
	for _, s := range []string{
		"", "psn:", "did:imi:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", id.String()[:len(id.String())-1],
		id.String() + "A", "PSN:" + id.String()[4:], id.String()[:10] + "+" + id.String()[11:],
		"psn:" + id.String()[4:len(id.String())-1] + "=",
	} {
		if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", s, err)
		}
	}
	if !Is(id.String()) || Is("did:imi:x") {
		t.Error("Is")
	}
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if len(a) != SecretSize || bytes.Equal(a, b) {
		t.Error("secrets are not fresh 32-byte values")
	}
}

func FuzzParse(f *testing.F) {
	k, _ := Derive(bytes.Repeat([]byte{1}, SecretSize), "cc-hsb")
	f.Add(FromKey(k.Public()).String())
	f.Add("psn:")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err == nil && p.String() != s {
			t.Errorf("Parse(%q) accepted a second spelling of %q", s, p)
		}
	})
}
