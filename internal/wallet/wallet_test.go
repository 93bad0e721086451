package wallet

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/v1.wallet")

// testParams keep the KDF cheap so tests can run it hundreds of times.
var testParams = Params{Time: 1, MemoryKiB: 64, Threads: 1}

const canary = "CANARY-张三-110101199003077777"

var passphrase = []byte("correct horse battery staple")

func sample() *Contents {
	at := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	return &Contents{
		DID:         "did:imi:resident:z6MkTest",
		Key:         ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)).Seed(),
		RecoveryKey: bytes.Repeat([]byte{9}, 32),
		Credentials: []Credential{{
			ID:        "cred-1",
			SDJWT:     "eyJhbGciOiJFZERTQSJ9.e30.sig~" + canary + "~",
			Type:      "resident_identity",
			VCT:       "https://imi.example/vct/resident_identity",
			Issuer:    "did:imi:authority:psb",
			IssuerID:  "psb",
			IssuedAt:  at,
			ExpiresAt: at.AddDate(10, 0, 0),
			StatusURI: "https://psb.imi.example/status/1",
			StatusIdx: 42,
			Added:     at.Add(time.Minute),
		}},
		Extra: map[string]json.RawMessage{"consents": json.RawMessage(`[]`)},
	}
}

// counter is a deterministic stand-in for crypto/rand, for golden files.
type counter byte

func (c *counter) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(*c)
		*c++
	}
	return len(p), nil
}

func mustSeal(t testing.TB, c *Contents) []byte {
	t.Helper()
	b, err := Seal(c, passphrase, testParams, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	want := sample()
	file := mustSeal(t, want)
	got, err := Open(file, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Open(Seal(c)) =\n%+v\nwant\n%+v", *got, *want)
	}
	if !bytes.Equal(got.Key, want.Key) || got.Credentials[0].SDJWT != want.Credentials[0].SDJWT {
		t.Error("key or credential differ")
	}

	empty := &Contents{DID: "did:imi:x"}
	got, err = Open(mustSeal(t, empty), passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, empty) {
		t.Errorf("empty contents = %+v", got)
	}
}

func TestFreshSaltAndNonce(t *testing.T) {
	a, b := mustSeal(t, sample()), mustSeal(t, sample())
	if bytes.Equal(a[:headerSize], b[:headerSize]) {
		t.Error("two seals share a header: salt and nonce are not fresh")
	}
}

// TestGolden opens a file written by an earlier build, and checks that Seal
// still writes exactly those bytes, so the format cannot drift unnoticed.
func TestGolden(t *testing.T) {
	c := counter(0)
	file, err := Seal(sample(), passphrase, testParams, &c)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("testdata/v1.wallet", file, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile("testdata/v1.wallet")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, golden) {
		t.Error("Seal output differs from testdata/v1.wallet (run with -update only for a deliberate format change)")
	}
	got, err := Open(golden, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sample()) {
		t.Errorf("golden contents = %+v", got)
	}
}

func TestWrongPassphrase(t *testing.T) {
	file := mustSeal(t, sample())
	for _, p := range []string{"", "correct horse battery stapl", "correct horse battery staplE", "correct horse battery staple "} {
		if _, err := Open(file, []byte(p)); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("Open(%q) error = %v, want ErrWrongPassphrase", p, err)
		}
	}
}

// TestEveryByteFlip alters each byte of a file three ways and expects every
// result to be rejected as corrupt or as a wrong passphrase.
func TestEveryByteFlip(t *testing.T) {
	file := mustSeal(t, sample())
	for i := range file {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			f := bytes.Clone(file)
			f[i] ^= mask
			_, err := Open(f, passphrase)
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("byte %d ^ %#x: error = %v", i, mask, err)
			}
			// Past the header the check still matches, so the
			// failure must be the AEAD's.
			if i >= headerSize && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: error = %v, want ErrCorrupt", i, mask, err)
			}
		}
	}
}

func TestTruncated(t *testing.T) {
	file := mustSeal(t, sample())
	for n := range len(file) {
		if _, err := Open(file[:n], passphrase); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%d of %d bytes: error = %v, want ErrCorrupt", n, len(file), err)
		}
	}
	if _, err := Open(append(bytes.Clone(file), 0), passphrase); !errors.Is(err, ErrCorrupt) {
		t.Errorf("appended byte: error = %v, want ErrCorrupt", err)
	}
}

// rewriteHeader changes the parameters and salt of file and, knowing the
// passphrase, recomputes the check value, as an attacker who had the
// passphrase could. The AEAD must still refuse it.
func rewriteHeader(t *testing.T, file []byte, p Params, salt []byte) []byte {
	t.Helper()
	f := bytes.Clone(file)
	h := f[len(magic):headerSize]
	binary.BigEndian.PutUint32(h[0:4], p.Time)
	binary.BigEndian.PutUint32(h[4:8], p.MemoryKiB)
	h[8] = p.Threads
	copy(h[9:9+saltSize], salt)
	_, check, err := derive(passphrase, salt, p)
	if err != nil {
		t.Fatal(err)
	}
	copy(h[9+saltSize:], check)
	return f
}

func TestHeaderChangeRejected(t *testing.T) {
	file := mustSeal(t, sample())
	salt := file[len(magic)+9 : len(magic)+9+saltSize]
	otherSalt := bytes.Repeat([]byte{0xAA}, saltSize)
	for _, tc := range []struct {
		name string
		p    Params
		salt []byte
	}{
		{"time", Params{Time: 2, MemoryKiB: 64, Threads: 1}, salt},
		{"memory", Params{Time: 1, MemoryKiB: 128, Threads: 1}, salt},
		{"threads", Params{Time: 1, MemoryKiB: 64, Threads: 2}, salt},
		{"salt", testParams, otherSalt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := rewriteHeader(t, file, tc.p, tc.salt)
			if _, err := Open(f, passphrase); !errors.Is(err, ErrCorrupt) {
				t.Errorf("error = %v, want ErrCorrupt", err)
			}
			// Without recomputing the check, it is a mismatch.
			g := bytes.Clone(f)
			copy(g[len(magic)+9+saltSize:], file[len(magic)+9+saltSize:headerSize-nonceSize])
			if _, err := Open(g, passphrase); !errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("stale check: error = %v, want ErrWrongPassphrase", err)
			}
		})
	}
	// The nonce is not an input to the check; the AEAD catches it.
	f := bytes.Clone(file)
	f[headerSize-1] ^= 1
	if _, err := Open(f, passphrase); !errors.Is(err, ErrCorrupt) {
		t.Errorf("nonce changed: error = %v, want ErrCorrupt", err)
	}
}

// TestAbsurdParams checks that a crafted header cannot make Open allocate
// gigabytes or run for minutes: it is rejected before the KDF runs.
func TestAbsurdParams(t *testing.T) {
	file := mustSeal(t, sample())
	for _, p := range []Params{
		{Time: 1, MemoryKiB: 1<<20 + 1, Threads: 1},
		{Time: 1, MemoryKiB: 0xFFFFFFFF, Threads: 1},
		{Time: 17, MemoryKiB: 64, Threads: 1},
		{Time: 0xFFFFFFFF, MemoryKiB: 64, Threads: 1},
		{Time: 0, MemoryKiB: 64, Threads: 1},
		{Time: 1, MemoryKiB: 64, Threads: 0},
		{Time: 1, MemoryKiB: 1 << 10, Threads: 17},
		{Time: 1, MemoryKiB: 7, Threads: 1},
	} {
		f := bytes.Clone(file)
		h := f[len(magic):]
		binary.BigEndian.PutUint32(h[0:4], p.Time)
		binary.BigEndian.PutUint32(h[4:8], p.MemoryKiB)
		h[8] = p.Threads
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Open(f, passphrase)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "argon2id") {
			t.Errorf("%+v: error = %v, want ErrCorrupt naming argon2id", p, err)
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > 1<<20 {
			t.Errorf("%+v: allocated %d bytes before rejecting", p, a)
		}
		if _, err := Seal(sample(), passphrase, p, nil); err == nil {
			t.Errorf("Seal accepted %+v", p)
		}
	}
}

func TestNotAWallet(t *testing.T) {
	for _, f := range [][]byte{nil, []byte(magic), bytes.Repeat([]byte("x"), 200), append([]byte("imi-wallet/v2"), make([]byte, 200)...)} {
		if _, err := Open(f, passphrase); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open(%.20q) error = %v, want ErrCorrupt", f, err)
		}
	}
}

func TestCanaryNotInFile(t *testing.T) {
	c := sample()
	file := mustSeal(t, c)
	for _, s := range [][]byte{[]byte(canary), []byte("CANARY"), []byte(c.DID), []byte("resident_identity"), c.Key, c.RecoveryKey, passphrase} {
		if bytes.Contains(file, s) {
			t.Errorf("file contains %q in the clear", s)
		}
	}
}

func TestPassphraseRules(t *testing.T) {
	for _, tc := range []struct {
		pass string
		ok   bool
	}{
		{"", false},
		{"1234567", false},
		{"12345678", true},
		{"密码密码密码密", false}, // 7 characters, 21 bytes
		{"密码密码密码密码", true},
		{"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7", false},
	} {
		_, err := Seal(sample(), []byte(tc.pass), testParams, nil)
		if tc.ok && err != nil {
			t.Errorf("Seal(%q) error = %v", tc.pass, err)
		}
		if !tc.ok && !errors.Is(err, ErrPassphrase) {
			t.Errorf("Seal(%q) error = %v, want ErrPassphrase", tc.pass, err)
		}
	}
}

func TestRandomFailure(t *testing.T) {
	if _, err := Seal(sample(), passphrase, testParams, strings.NewReader("short")); err == nil {
		t.Error("Seal succeeded with a random source that ran dry")
	}
}

func TestPlaintextRules(t *testing.T) {
	for _, plain := range []string{
		`{"DID":"x","Bogus":1}`,
		`{"DID":"x"} {}`,
		`{"DID":"x"`,
		`[]`,
		`{"Key":"not base64!"}`,
	} {
		c := counter(0)
		file, err := seal([]byte(plain), passphrase, testParams, &c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(file, passphrase); !errors.Is(err, ErrCorrupt) {
			t.Errorf("plaintext %s: error = %v, want ErrCorrupt", plain, err)
		}
	}
}

func TestStringRedacts(t *testing.T) {
	c := sample()
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v", *c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, canary) || strings.Contains(s, "7, 7, 7") || strings.Contains(s, "[7 7 7") {
			t.Errorf("printed contents leak: %s", s)
		}
	}
	c.Wipe()
	if !bytes.Equal(c.Key, make([]byte, len(c.Key))) || !bytes.Equal(c.RecoveryKey, make([]byte, len(c.RecoveryKey))) {
		t.Error("Wipe left key bytes")
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wallet.imi")
	// An existing file with looser permissions is replaced by a 0600 one.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, sample(), passphrase, testParams); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("mode = %v, want 0600", m)
	}
	got, err := Load(path, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sample()) {
		t.Errorf("Load = %+v", got)
	}
	if _, err := Load(path, []byte("wrong passphrase")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Load wrong passphrase: %v", err)
	}
	onlyFile(t, dir, "wallet.imi")

	// A relative path in the working directory.
	t.Chdir(dir)
	if err := Save("rel.imi", sample(), passphrase, testParams); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("rel.imi", passphrase); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing"), passphrase); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, maxFileSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big, passphrase); !errors.Is(err, ErrCorrupt) {
		t.Errorf("oversized file: error = %v, want ErrCorrupt", err)
	}
}

func onlyFile(t *testing.T, dir, name string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != name {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only %s (temporary file left behind?)", names, name)
	}
}

func TestSaveFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wallet.imi")
	if err := Save(path, sample(), passphrase, testParams); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path)

	// A write that fails half way, as on a full disk.
	failing := func(f *os.File, b []byte) (int, error) {
		n, _ := f.Write(b[:len(b)/2])
		return n, errors.New("no space left on device")
	}
	newer := &Contents{DID: "did:imi:other"}
	file, err := Seal(newer, passphrase, testParams, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(path, file, failing); err == nil {
		t.Fatal("writeAtomic succeeded with a failing write")
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
		t.Error("failed save changed the wallet file")
	}
	onlyFile(t, dir, "wallet.imi")

	// A directory that cannot be written to (meaningless as root, which
	// ignores permissions).
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		if err := Save(path, newer, passphrase, testParams); err == nil {
			t.Error("Save succeeded in a read-only directory")
		}
		if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
			t.Error("failed save changed the wallet file")
		}
	}

	// A missing directory.
	if err := Save(filepath.Join(dir, "nope", "w.imi"), newer, passphrase, testParams); err == nil {
		t.Error("Save succeeded into a missing directory")
	}
}

// fuzzLimits keep each fuzz run cheap whatever parameters a mutated header
// names.
var fuzzLimits = limits{maxTime: 2, maxMemoryKiB: 256, maxThreads: 2}

func FuzzOpen(f *testing.F) {
	golden, err := os.ReadFile("testdata/v1.wallet")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:headerSize])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, file []byte) {
		c, err := open(file, passphrase, fuzzLimits)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		// Whatever opens must seal and open again to the same contents.
		again, err := Seal(c, passphrase, testParams, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Open(again, passphrase)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c, d) {
			t.Errorf("reopened contents differ")
		}
	})
}
