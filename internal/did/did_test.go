package did

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/key"
)

func testKey(t *testing.T, b byte) key.Public {
	t.Helper()
	k, err := key.FromSeed([]byte(strings.Repeat(string(rune(b)), 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

func TestFromKeyGolden(t *testing.T) {
	// Pinned: changing the derivation would orphan every DID on the chain.
	got := FromKey(testKey(t, 'a')).String()
	const want = "did:imi:muzmbtd4b25j4lxnigrd7zx7kqm4kypm"
	if got != want {
		t.Errorf("FromKey = %s, want %s", got, want)
	}
	if FromKey(testKey(t, 'b')).String() == want {
		t.Error("different keys gave the same DID")
	}
}

func TestParse(t *testing.T) {
	good := FromKey(testKey(t, 'a')).String()
	if d, err := Parse(good); err != nil || d.String() != good {
		t.Fatalf("Parse(%q) = %v, %v", good, d, err)
	}
	bad := []string{
		"", "did:imi:", "did:web:example.com", "DID:IMI:" + good[8:],
		strings.ToUpper(good), good + "a", good[:len(good)-1], good + "#key-1",
		good + "/path", "did:imi:" + strings.Repeat("1", 32), " " + good,
	}
	for _, s := range bad {
		if _, err := Parse(s); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) err = %v, want ErrSyntax", s, err)
		}
	}
}

func TestDocument(t *testing.T) {
	k := testKey(t, 'a')
	d := FromKey(k)
	b, err := json.Marshal(NewDocument(d, k, 2, false))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["id"] != d.String() {
		t.Errorf("id = %v", m["id"])
	}
	vm := m["verificationMethod"].([]any)[0].(map[string]any)
	if vm["id"] != d.String()+"#key-2" || vm["controller"] != d.String() {
		t.Errorf("verificationMethod = %v", vm)
	}
	if jwk := vm["publicKeyJwk"].(map[string]any); jwk["crv"] != "Ed25519" || jwk["kty"] != "OKP" {
		t.Errorf("jwk = %v", jwk)
	}
	if got := m["authentication"].([]any)[0]; got != d.String()+"#key-2" {
		t.Errorf("authentication = %v", got)
	}
	gone := NewDocument(d, k, 2, true)
	if len(gone.VerificationMethod) != 0 || len(gone.Authentication) != 0 {
		t.Error("a deactivated DID still lists keys")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("did:imi:muzmbtd4b25j4lxnigrd7zx7kqm4kypm")
	f.Add("did:imi:")
	f.Add("did:web:example.com")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if d.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, d)
		}
	})
}
