package jws

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodeJSONMatchesEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{"a":[1,-0.5e3,{"b":null}],"c":"\u00e9\ud83d\ude00\n\/","d":true,"e":false,"f":[]}`,
		` [ "x" , 0 , 1E2 , 1e-2 ] `,
		`"\"\\\b\f\n\r\t"`,
		`{"東京":"港区"}`,
		`{}`,
	} {
		got, err := DecodeJSON([]byte(in), MaxDepth)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var want any
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", in, got, want)
		}
	}
	for _, in := range []string{
		`01`, `1.`, `.5`, `-`, `1e`, `+1`, `1e400`, `tru`, `nul`, `"a`, `"\x"`, "\"\t\"", `"\u12"`,
		`"\ud800"`, `"\udc00\ud800"`, `"\ud800\u0041"`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `[1 2]`,
		`{"a":1}}`, `[`, `{`, `NaN`, `Infinity`,
	} {
		if _, err := DecodeJSON([]byte(in), MaxDepth); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}

// FuzzDecodeJSON checks that whatever DecodeJSON accepts, encoding/json
// accepts too and reads the same way.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,{"b":"\u00e9"}]}`, `[1e5,-0,"\ud83d\ude00"]`, `{"a":1,"a":2}`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeJSON(b, MaxDepth)
		if err != nil {
			return
		}
		if err := CheckJSON(b, MaxDepth); err != nil {
			t.Fatalf("DecodeJSON accepted, CheckJSON did not: %v", err)
		}
		var want any
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("accepted %q, encoding/json says %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: got %#v, want %#v", b, got, want)
		}
	})
}
