package statuslist

import (
	"errors"
	"testing"
)

func FuzzDecode(f *testing.F) {
	f.Add(1, "eNrbuRgAAhcBXQ")
	f.Add(2, "eNo76fITAAPfAgc")
	f.Fuzz(func(t *testing.T, bits int, lst string) {
		const max = 1 << 16
		l, err := Decode(bits, lst, max)
		if err != nil {
			if !errors.Is(err, ErrBits) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if l.Size() <= 0 || (l.Size()*bits+7)/8 > (max*bits+7)/8 {
			t.Fatalf("size %d for bits %d", l.Size(), bits)
		}
		// What decodes must encode and decode to the same statuses.
		enc, err := l.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(bits, enc, max)
		if err != nil {
			t.Fatal(err)
		}
		if back.Size() != l.Size() {
			t.Fatalf("size %d after round trip, want %d", back.Size(), l.Size())
		}
		for i := range l.Size() {
			if back.Get(i) != l.Get(i) {
				t.Fatalf("status[%d] changed in round trip", i)
			}
		}
	})
}

func FuzzParseToken(f *testing.F) {
	f.Add(signTest(f, testList(f)))
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := ParseToken(token, testURI, testPub, now, 1<<16)
		if err != nil {
			if !errors.Is(err, ErrToken) {
				t.Fatalf("error does not wrap ErrToken: %v", err)
			}
			return
		}
		if tok.Subject != testURI || !now.Before(tok.ExpiresAt) || tok.List == nil {
			t.Fatalf("accepted token %+v", tok)
		}
		if _, err := tok.Status(uint64(tok.List.Size())); err == nil {
			t.Fatal("Status past the end succeeded")
		}
	})
}
