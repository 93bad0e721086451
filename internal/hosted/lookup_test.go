package hosted

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadLookupKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "hosted-lookup.key")
	n := number(t, 1)

	// Nodes starting at once must agree on one key.
	const starters = 8
	lookups := make([][]byte, starters)
	var wg sync.WaitGroup
	for i := range starters {
		wg.Go(func() {
			k, err := LoadLookupKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			lookups[i] = Lookup(k, n)
		})
	}
	wg.Wait()
	for i, l := range lookups {
		if !bytes.Equal(l, lookups[0]) {
			t.Errorf("starter %d got another key", i)
		}
	}
	k, err := LoadLookupKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Lookup(k, n), lookups[0]) {
		t.Error("loading again gave another key")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %v, want 0600", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "keys", "*.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadLookupKey(path); err == nil {
		t.Error("LoadLookupKey() of a damaged file succeeded; it must not replace it")
	}
}

func TestLookup(t *testing.T) {
	f := newFixture(t)
	a, b := number(t, 1), number(t, 2)
	tests := []struct {
		name string
		x, y []byte
		same bool
	}{
		{"same number", Lookup(f.w.LookupKey, a), Lookup(f.w.LookupKey, a), true},
		{"other number", Lookup(f.w.LookupKey, a), Lookup(f.w.LookupKey, b), false},
		{"other key", Lookup(f.w.LookupKey, a), Lookup(newFixture(t).w.LookupKey, a), false},
	}
	for _, tt := range tests {
		if got := bytes.Equal(tt.x, tt.y); got != tt.same {
			t.Errorf("%s: equal = %v, want %v", tt.name, got, tt.same)
		}
	}
}

func TestNormCode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ABCDE-FGHJK", "ABCDEFGHJK"},
		{"abcde fghjk", "ABCDEFGHJK"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := normCode(tt.in); got != tt.want {
			t.Errorf("normCode(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
