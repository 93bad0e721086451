package hosted

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/wallet"
)

// benchWallets is a hosted-wallet store at the production Argon2id cost.
func benchWallets(b *testing.B) (*Wallets, *Unlocked) {
	b.Helper()
	kv, err := service.OpenStore("")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { kv.Close() })
	lk, err := key.GenerateHMAC()
	if err != nil {
		b.Fatal(err)
	}
	w := &Wallets{Store: NewStore(kv), LookupKey: lk, Params: wallet.DefaultParams}
	n, err := idnumber.Example("110105", 1990, 3, 7, 1)
	if err != nil {
		b.Fatal(err)
	}
	_, code, err := w.Create(n, did, contents(did), pass)
	if err != nil {
		b.Fatal(err)
	}
	u, err := w.Unlock(n, pass, code)
	if err != nil {
		b.Fatal(err)
	}
	return w, u
}

// BenchmarkSignIn is a resident's sign-in: one Argon2id run at
// wallet.DefaultParams, then the contents layer.
func BenchmarkSignIn(b *testing.B) {
	w, _ := benchWallets(b)
	n, _ := idnumber.Example("110105", 1990, 3, 7, 1)
	b.ReportAllocs()
	for b.Loop() {
		u, err := w.Unlock(n, pass, "")
		if err != nil {
			b.Fatal(err)
		}
		u.Contents.Wipe()
	}
}

// BenchmarkCLIWalletOpen is the baseline: opening a CLI wallet file of the
// same contents at the same cost.
func BenchmarkCLIWalletOpen(b *testing.B) {
	file, err := wallet.Seal(contents(did), pass, wallet.DefaultParams, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := wallet.Open(bytes.Clone(file), pass)
		if err != nil {
			b.Fatal(err)
		}
		c.Wipe()
	}
}

// BenchmarkSessionRequest is what every signed-in page pays to reach the
// wallet: open the session blob with the cookie's key, read the account,
// open the contents.
func BenchmarkSessionRequest(b *testing.B) {
	w, u := benchWallets(b)
	ck := bytes.Repeat([]byte{9}, SessionKeySize)
	blob, err := SealSession(ck, u.Account.ID, u.Key)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		id, k, err := OpenSession(ck, blob)
		if err != nil {
			b.Fatal(err)
		}
		_, c, err := w.Open(id, k)
		if err != nil {
			b.Fatal(err)
		}
		c.Wipe()
	}
}
