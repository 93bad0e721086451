package key

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrivateKeyDoesNotPrint(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	seed := fmt.Sprintf("%x", k.k.Seed())
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, seed) || strings.Contains(s, fmt.Sprintf("%v", []byte(k.k))) {
			t.Errorf("private key material printed: %s", s)
		}
	}
	h, _ := GenerateHMAC()
	if s := fmt.Sprintf("%v %+v", h, h); strings.Contains(s, fmt.Sprintf("%x", h.k)) {
		t.Errorf("HMAC key printed: %s", s)
	}
}

func TestFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	k, _ := Generate()
	path := filepath.Join(dir, "a.key")
	if err := k.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	back, err := ReadFile(path)
	if err != nil || !back.Public().Equal(k.Public()) {
		t.Fatalf("ReadFile = %v, %v", back, err)
	}
	if err := k.WriteFile(path); err == nil {
		t.Error("WriteFile overwrote an existing key")
	}
	h, _ := GenerateHMAC()
	hp := filepath.Join(dir, "h.key")
	if err := h.WriteFile(hp); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(hp); !errors.Is(err, ErrBadKey) {
		t.Errorf("an HMAC file read as a private key: %v", err)
	}
	if _, err := ReadHMACFile(path); !errors.Is(err, ErrBadKey) {
		t.Errorf("a private key read as an HMAC file: %v", err)
	}
	b, _ := os.ReadFile(path)
	other, _ := Generate()
	tampered := strings.Replace(string(b), k.Public().String(), other.Public().String(), 1)
	tp := filepath.Join(dir, "t.key")
	os.WriteFile(tp, []byte(tampered), 0o600)
	if _, err := ReadFile(tp); !errors.Is(err, ErrBadKey) {
		t.Errorf("a file whose public key does not match its seed was accepted: %v", err)
	}
}

func TestParsePublic(t *testing.T) {
	k, _ := Generate()
	p, err := ParsePublic(k.Public().String())
	if err != nil || !p.Equal(k.Public()) {
		t.Fatalf("round trip: %v", err)
	}
	for _, s := range []string{"", "ed25519-pub:", "ed25519-priv:" + k.Public().String()[12:], k.Public().String() + "A", k.Public().String() + "="} {
		if _, err := ParsePublic(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParsePublic(%q) = %v", s, err)
		}
	}
}

func TestSignVerify(t *testing.T) {
	k, _ := Generate()
	sig := k.Sign([]byte("msg"))
	if !k.Public().Verify([]byte("msg"), sig) || k.Public().Verify([]byte("msh"), sig) {
		t.Error("Verify")
	}
	if (Public{}).Verify([]byte("msg"), sig) {
		t.Error("the zero key verified a signature")
	}
	if RecoveryHash(k.Public()) == RecoveryHash(Public{}) {
		t.Error("RecoveryHash ignores the key")
	}
}
