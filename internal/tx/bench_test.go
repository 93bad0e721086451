package tx

import "testing"

func BenchmarkDecode(b *testing.B) {
	raw := sampleTxs(b)["register_resident"].Encode()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySig(b *testing.B) {
	x := sampleTxs(b)["register_resident"]
	pub := seedKey(b, 1).Public()
	for b.Loop() {
		if !x.VerifySig(pub) {
			b.Fatal("bad signature")
		}
	}
}
