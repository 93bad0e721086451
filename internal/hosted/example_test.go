package hosted_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log"

	"github.com/imi-city/imi/internal/hosted"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/wallet"
)

// A resident's hosted wallet from the counter to a saved change.
func Example() {
	kv, err := service.OpenStore("")
	if err != nil {
		log.Fatal(err)
	}
	defer kv.Close()
	lk, err := key.GenerateHMAC() // a node uses hosted.LoadLookupKey
	if err != nil {
		log.Fatal(err)
	}
	w := &hosted.Wallets{
		Store:     hosted.NewStore(kv),
		LookupKey: lk,
		Params:    wallet.Params{Time: 1, MemoryKiB: 8, Threads: 1}, // zero: wallet.DefaultParams
	}

	// At the counter.
	n, err := idnumber.Parse("11010519491231002X")
	if err != nil {
		log.Fatal(err)
	}
	pass := []byte("correct horse battery staple")
	c := &wallet.Contents{DID: "did:imi:resident:z6MkExample"}
	_, code, err := w.Create(n, c.DID, c, pass)
	if err != nil {
		log.Fatal(err)
	}

	// The first sign-in needs the code from the counter's slip.
	_, err = w.Unlock(n, pass, "")
	fmt.Println("without code:", errors.Is(err, hosted.ErrActivationNeeded))
	u, err := w.Unlock(n, pass, code)
	if err != nil {
		log.Fatal(err)
	}

	// The node keeps the blob; the browser's cookie carries cookieKey.
	cookieKey := make([]byte, hosted.SessionKeySize)
	rand.Read(cookieKey)
	blob, err := hosted.SealSession(cookieKey, u.Account.ID, u.Key)
	if err != nil {
		log.Fatal(err)
	}

	// An authority issues a credential to the resident's DID.
	if err := w.Deliver(c.DID, []byte("an SD-JWT VC")); err != nil {
		log.Fatal(err)
	}

	// A later request of the session collects it, with no passphrase.
	id, k, err := hosted.OpenSession(cookieKey, blob)
	if err != nil {
		log.Fatal(err)
	}
	a, c, err := w.Open(id, k)
	if err != nil {
		log.Fatal(err)
	}
	items, done, err := w.Collect(a, c)
	if err != nil {
		log.Fatal(err)
	}
	for _, it := range items {
		c.Credentials = append(c.Credentials, wallet.Credential{SDJWT: string(it)})
	}
	// On ErrConflict another request changed the account: Open again,
	// redo the change and Save again.
	if err := w.Save(a, c, k); err != nil {
		log.Fatal(err)
	}
	if err := done(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("collected:", len(items), "version:", a.Version)
	// Output:
	// without code: true
	// collected: 1 version: 3
}
