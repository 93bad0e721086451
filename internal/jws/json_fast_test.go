package jws

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDuplicateKeyBeyondLinearScan: past 16 members the parser switches from
// comparing names to a set; a duplicate must be caught on both sides.
func TestDuplicateKeyBeyondLinearScan(t *testing.T) {
	for _, n := range []int{2, 15, 16, 17, 40} {
		for _, dup := range []int{0, n / 2, n - 1} {
			var b strings.Builder
			b.WriteString("{")
			for i := range n {
				fmt.Fprintf(&b, "%q:%d,", fmt.Sprintf("k%02d", i), i)
			}
			fmt.Fprintf(&b, "%q:true}", fmt.Sprintf("k%02d", dup))
			if _, err := DecodeJSON([]byte(b.String()), MaxDepth); err == nil {
				t.Errorf("%d members, duplicate of member %d: accepted", n+1, dup)
			}
		}
	}
}

// TestStringFastPath checks the word-at-a-time string scan against
// encoding/json for a quote, backslash escape, control character or
// multi-byte rune at every position of strings around the word size.
func TestStringFastPath(t *testing.T) {
	specials := []string{`\"`, `\\`, `\n`, `\u00e9`, "\x01", "\x1f", "é", "汉", "\x7f", "\xff"}
	for n := 0; n <= 20; n++ {
		for pos := 0; pos <= n; pos++ {
			for _, sp := range specials {
				s := strings.Repeat("a", pos) + sp + strings.Repeat("b", n-pos)
				doc := []byte(`{"k":"` + s + `"}`)
				got, gotErr := DecodeJSON(doc, MaxDepth)
				var want any
				wantErr := json.Unmarshal(doc, &want)
				if wantErr == nil && !utf8.Valid(doc) {
					wantErr = fmt.Errorf("invalid UTF-8") // stricter than encoding/json, on purpose
				}
				if (gotErr == nil) != (wantErr == nil) {
					t.Fatalf("%q: error %v, encoding/json %v", doc, gotErr, wantErr)
				}
				if gotErr == nil && !reflect.DeepEqual(got, want) {
					t.Fatalf("%q: got %#v, want %#v", doc, got, want)
				}
			}
		}
	}
}
