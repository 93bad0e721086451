package statuslist

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"testing"
)

type vector struct {
	Name     string          `json:"name"`
	Bits     int             `json:"bits"`
	Lst      string          `json:"lst"`
	Bytes    string          `json:"bytes"`
	Size     int             `json:"size"`
	Statuses map[string]byte `json:"statuses"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Source  string   `json:"source"`
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Source == "" || len(f.Vectors) == 0 {
		t.Fatal("testdata/vectors.json has no source or no vectors")
	}
	return f.Vectors
}

// TestDraftVectors decodes the draft's lst strings and checks every listed
// status and that every other status is Valid.
func TestDraftVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			l, err := Decode(v.Bits, v.Lst, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if l.Size() != v.Size {
				t.Errorf("Size() = %d, want %d", l.Size(), v.Size)
			}
			if v.Bytes != "" {
				if got := hex.EncodeToString(l.b); got != v.Bytes {
					t.Errorf("bytes = %s, want %s", got, v.Bytes)
				}
			}
			want := make(map[int]byte)
			for k, s := range v.Statuses {
				i, err := strconv.Atoi(k)
				if err != nil {
					t.Fatal(err)
				}
				want[i] = s
			}
			for i := range l.Size() {
				if got := l.Get(i); got != want[i] {
					t.Errorf("status[%d] = %#x, want %#x", i, got, want[i])
				}
			}

			// Rebuilding the list from the statuses gives the same
			// bytes; Go's DEFLATE output differs from the draft's
			// zlib, so the lst strings are compared decoded.
			r, err := New(v.Bits, v.Size)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range want {
				if err := r.Set(i, s); err != nil {
					t.Fatal(err)
				}
			}
			lst, err := r.Encode()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Decode(v.Bits, lst, v.Size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.b, l.b) {
				t.Error("re-encoded list differs from the draft's")
			}
		})
	}
}

func TestNewBits(t *testing.T) {
	for _, bits := range []int{-1, 0, 3, 5, 7, 16, 9} {
		if _, err := New(bits, 8); !errors.Is(err, ErrBits) {
			t.Errorf("New(%d, 8) error = %v, want ErrBits", bits, err)
		}
		if _, err := Decode(bits, "eNrbuRgAAhcBXQ", 16); !errors.Is(err, ErrBits) {
			t.Errorf("Decode(%d, ...) error = %v, want ErrBits", bits, err)
		}
	}
	for _, size := range []int{-1, 0, maxEntries + 1} {
		if _, err := New(1, size); err == nil {
			t.Errorf("New(1, %d) succeeded", size)
		}
	}
}

func TestSetGet(t *testing.T) {
	for _, bits := range []int{1, 2, 4, 8} {
		const size = 101 // not a multiple of any slots-per-byte
		l, err := New(bits, size)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(l.b), (size*bits+7)/8; got != want {
			t.Errorf("bits %d: %d bytes, want %d", bits, got, want)
		}
		max := byte(1<<bits - 1)
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(i*7) & max
			if err := l.Set(i, want[i]); err != nil {
				t.Fatal(err)
			}
		}
		// Overwrite a few to check Set clears old bits.
		for _, i := range []int{0, 50, 100} {
			want[i] = max - want[i]
			if err := l.Set(i, want[i]); err != nil {
				t.Fatal(err)
			}
		}
		for i := range want {
			if got := l.Get(i); got != want[i] {
				t.Errorf("bits %d: Get(%d) = %#x, want %#x", bits, i, got, want[i])
			}
		}
		if err := l.Set(size, 0); !errors.Is(err, ErrIndex) {
			t.Errorf("bits %d: Set(size) error = %v, want ErrIndex", bits, err)
		}
		if err := l.Set(-1, 0); !errors.Is(err, ErrIndex) {
			t.Errorf("bits %d: Set(-1) error = %v, want ErrIndex", bits, err)
		}
		if bits < 8 {
			if err := l.Set(0, max+1); !errors.Is(err, ErrValue) {
				t.Errorf("bits %d: Set(0, %d) error = %v, want ErrValue", bits, max+1, err)
			}
		}
	}
}

func TestGetOutOfRangePanics(t *testing.T) {
	l, _ := New(1, 8)
	for _, idx := range []int{-1, 8} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Get(%d) did not panic", idx)
				}
			}()
			l.Get(idx)
		}()
	}
}

// TestBitOrder pins the draft's §4.1 examples byte for byte.
func TestBitOrder(t *testing.T) {
	l, _ := New(1, 16)
	for i, s := range []byte{1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1} {
		l.Set(i, s)
	}
	if got := hex.EncodeToString(l.b); got != "b9a3" {
		t.Errorf("1-bit bytes = %s, want b9a3", got)
	}
	l, _ = New(2, 12)
	for i, s := range []byte{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3} {
		l.Set(i, s)
	}
	if got := hex.EncodeToString(l.b); got != "c944f9" {
		t.Errorf("2-bit bytes = %s, want c944f9", got)
	}
}

func zlibLst(t testing.TB, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	w, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	w.Write(b)
	w.Close()
	return base64.RawURLEncoding.EncodeToString(buf.Bytes())
}

func TestDecodeRejects(t *testing.T) {
	good := zlibLst(t, []byte{0xb9, 0xa3})
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	b64 := base64.RawURLEncoding.EncodeToString

	truncated := b64(raw[:len(raw)-1])
	badSum := bytes.Clone(raw)
	badSum[len(badSum)-1] ^= 1
	trailing := append(bytes.Clone(raw), 0)

	for _, tc := range []struct {
		name, lst string
		want      error
	}{
		{"empty string", "", ErrMalformed},
		{"padding", base64.URLEncoding.EncodeToString(raw), ErrMalformed},
		{"std alphabet", "eNrbuRgAAhcBXQ+/", ErrMalformed},
		{"whitespace", "eNrbuRgA AhcBXQ", ErrMalformed},
		{"not zlib", b64([]byte("hello world")), ErrMalformed},
		{"raw deflate", b64(raw[2 : len(raw)-4]), ErrMalformed},
		{"truncated", truncated, ErrMalformed},
		{"bad checksum", b64(badSum), ErrMalformed},
		{"trailing bytes", b64(trailing), ErrMalformed},
		{"empty list", zlibLst(t, nil), ErrMalformed},
		{"over bound", zlibLst(t, make([]byte, 3)), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(1, tc.lst, 16)
			if !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Decode(1, good, 16); err != nil {
		t.Errorf("control: %v", err)
	}
	if _, err := Decode(1, good, 0); err == nil {
		t.Error("maxSize 0 accepted")
	}
}

// TestZipBomb checks that a lst of under 100 KB that inflates to 64 MiB, 64
// times the bound, is rejected after reading just past the bound, not after inflating
// it all.
func TestZipBomb(t *testing.T) {
	var buf bytes.Buffer
	w, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 {
		w.Write(zeros)
	}
	w.Close()
	lst := base64.RawURLEncoding.EncodeToString(buf.Bytes())
	if len(lst) > 100e3 {
		t.Fatalf("bomb is %d bytes, expected it to be small", len(lst))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Decode(8, lst, 1<<20)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("error = %v, want ErrTooLarge", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("Decode allocated %d bytes for a 1 MiB bound", alloc)
	}
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, bits := range []int{1, 2, 4, 8} {
		size := 1 + r.IntN(5000)
		l, _ := New(bits, size)
		for range size / 3 {
			l.Set(r.IntN(size), byte(r.IntN(1<<bits)))
		}
		lst, err := l.Encode()
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(bits, lst, size)
		if err != nil {
			t.Fatal(err)
		}
		if d.Size() < size || d.Size()-size >= 8/bits {
			t.Errorf("bits %d: decoded size %d for %d", bits, d.Size(), size)
		}
		for i := range size {
			if d.Get(i) != l.Get(i) {
				t.Fatalf("bits %d: status[%d] = %d, want %d", bits, i, d.Get(i), l.Get(i))
			}
		}
	}
}

func benchList(b *testing.B) *List {
	const size = 1 << 20
	l, _ := New(2, size)
	r := rand.New(rand.NewPCG(3, 4))
	for range size / 100 {
		l.Set(r.IntN(size), byte(1+r.IntN(2)))
	}
	return l
}

func BenchmarkEncode(b *testing.B) {
	l := benchList(b)
	b.SetBytes(int64(len(l.b)))
	for b.Loop() {
		if _, err := l.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	l := benchList(b)
	lst, _ := l.Encode()
	b.ReportMetric(float64(len(lst)), "lst-bytes")
	b.SetBytes(int64(len(l.b)))
	for b.Loop() {
		if _, err := Decode(2, lst, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}
