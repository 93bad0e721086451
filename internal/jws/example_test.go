package jws_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"github.com/imi-city/imi/internal/jws"
)

func Example() {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	tok, err := jws.Sign(jws.Ed25519Signer(key), jws.Header{Typ: "JWT", Kid: "k1"}, []byte(`{"sub":"alice"}`))
	if err != nil {
		panic(err)
	}
	j, err := jws.Parse(tok, jws.EdDSA)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(j.RawHeader))
	fmt.Println(j.Verify(key.Public()), string(j.Payload))

	if _, err := jws.Parse(tok, jws.ES256); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"alg":"EdDSA","typ":"JWT","kid":"k1"}
	// <nil> {"sub":"alice"}
	// jws: algorithm not allowed: "EdDSA"
}
