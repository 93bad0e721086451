package sdjwt_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/sdjwt"
)

func Example() {
	issuer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	holder := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	holderJWK, _ := jws.PublicJWK(holder.Public())

	// The registrar issues; use crypto/rand.Reader outside examples.
	cred, err := sdjwt.Issue(jws.Ed25519Signer(issuer), sdjwt.Issuance{
		Header: jws.Header{Kid: "registrar-1"},
		Claims: map[string]any{
			"iss": "did:imi:registrar", "iat": now.Unix(), "exp": now.AddDate(1, 0, 0).Unix(),
			"vct": "urn:imi:resident:1", "cnf": map[string]any{"jwk": holderJWK},
		},
		Disclosable: map[string]any{"given_name": "Mei", "family_name": "Chen", "birthdate": "1990-04-01"},
		MinDecoys:   2,
	}, mrand.NewChaCha8([32]byte{}))
	if err != nil {
		panic(err)
	}

	// The resident shows only the birthdate, bound to this verifier's nonce.
	p, err := sdjwt.Present(cred, []string{"birthdate"})
	if err != nil {
		panic(err)
	}
	p, err = sdjwt.AddKeyBinding(p, jws.Ed25519Signer(holder), "https://clinic.example", "n-42", now)
	if err != nil {
		panic(err)
	}

	res, err := sdjwt.Verify(p, sdjwt.VerifyOptions{
		IssuerKey: func(h jws.Header, _ map[string]any) (crypto.PublicKey, error) {
			if h.Kid != "registrar-1" {
				return nil, fmt.Errorf("unknown key %q", h.Kid)
			}
			return issuer.Public(), nil
		},
		RequireKeyBinding: true,
		Audience:          "https://clinic.example",
		Nonce:             "n-42",
		Now:               now.Add(time.Minute),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Disclosed, res.Claims["birthdate"], res.Claims["given_name"])

	// Replayed to another verifier, it is refused as a whole.
	_, err = sdjwt.Verify(p, sdjwt.VerifyOptions{
		IssuerKey:         func(jws.Header, map[string]any) (crypto.PublicKey, error) { return issuer.Public(), nil },
		RequireKeyBinding: true,
		Audience:          "https://shop.example",
		Nonce:             "n-42",
		Now:               now,
	})
	fmt.Println(err)
	// Output:
	// [birthdate] 1990-04-01 <nil>
	// sdjwt: aud_mismatch: aud "https://clinic.example", want "https://shop.example"
}
