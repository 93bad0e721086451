package idnumber

import (
	"errors"
	"testing"

	"github.com/imi-city/imi/internal/key"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		// The worked example of GB 11643-1999 (Appendix A) ends in X.
		{"11010519491231002X", nil},
		{"11010519491231002x", nil},
		{"440524188001010014", nil}, // the standard's second example
		{"440604199003070014", nil},
		{"11010519491231002", ErrLength},
		{"1101051949123100211", ErrLength},
		{"11010519491231002A", ErrCharacters},
		{"1101051949123100X2", ErrCharacters},
		{"110105194912310021", ErrCheckDigit},
		{"440604199003070019", ErrCheckDigit},
		{"110105194902300028", ErrBirthDate}, // 30 February
		{"110105190002290025", ErrBirthDate}, // 1900 is not a leap year
		{"440604199013070012", ErrBirthDate},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if !errors.Is(err, tt.want) {
			t.Errorf("Parse(%q) = %v, want %v", tt.in, err, tt.want)
		}
	}
}

func TestEveryMistypedDigitIsCaught(t *testing.T) {
	const good = "440604199003070014"
	for i := 0; i < 18; i++ {
		for c := byte('0'); c <= '9'; c++ {
			if c == good[i] {
				continue
			}
			b := []byte(good)
			b[i] = c
			if _, err := Parse(string(b)); err == nil {
				t.Errorf("single-digit change at %d to %c accepted: %s", i, c, b)
			}
		}
	}
}

func TestUniquenessTag(t *testing.T) {
	k1, _ := key.GenerateHMAC()
	k2, _ := key.GenerateHMAC()
	a, _ := Parse("11010519491231002X")
	a2, _ := Parse("11010519491231002x")
	b, _ := Parse("440604199003070014")
	if UniquenessTag(k1, a) != UniquenessTag(k1, a2) {
		t.Error("same number, different tags")
	}
	if UniquenessTag(k1, a) == UniquenessTag(k1, b) {
		t.Error("different numbers, same tag")
	}
	if UniquenessTag(k1, a) == UniquenessTag(k2, a) {
		t.Error("tag does not depend on the key")
	}
}

func TestExample(t *testing.T) {
	n, err := Example("440604", 1950, 6, 1, 123)
	if err != nil {
		t.Fatal(err)
	}
	if y, m, d := n.BirthDate(); y != 1950 || m != 6 || d != 1 {
		t.Errorf("BirthDate = %d-%d-%d", y, m, d)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"11010519491231002X", "440604199003070014", "", "x", "00000000000000000X"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		if m, err := Parse(n.String()); err != nil || m != n {
			t.Fatalf("reparse of %q: %v", n, err)
		}
	})
}
