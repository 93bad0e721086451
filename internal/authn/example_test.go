package authn_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/imi-city/imi/internal/authn"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
)

func Example_request() {
	tax, _ := key.FromSeed(bytes.Repeat([]byte{1}, 32))
	now := time.Unix(1_700_000_000, 0)

	// The authority's client signs the request and its exact body.
	body := []byte(`{"purpose":"water-bill"}`)
	out, _ := http.NewRequest(http.MethodPost, "https://node.example/v1/consents", bytes.NewReader(body))
	if err := authn.SignRequest(out, body, "tax", tax, now); err != nil {
		panic(err)
	}

	// The node looks the authority's key up on the ledger.
	v := &authn.Verifier{
		Keys: func(id string) (key.Public, error) {
			if id != "tax" {
				return key.Public{}, errors.New("no such authority")
			}
			return tax.Public(), nil
		},
		Now: func() time.Time { return now.Add(5 * time.Second) },
	}
	in := httptest.NewRequest(out.Method, "/v1/consents", bytes.NewReader(body))
	in.Header = out.Header
	fmt.Println(v.Verify(in, body))

	_, err := v.Verify(in, body)
	fmt.Println(errors.Is(err, authn.ErrReplay), err)
	// Output:
	// tax <nil>
	// true request was already received: a signed request is accepted once; sign it again to repeat it
}

func ExampleSessions() {
	wallet, _ := key.FromSeed(bytes.Repeat([]byte{7}, 32))
	resident := did.FromKey(wallet.Public()).String()
	s := &authn.Sessions{
		// The node resolves DIDs on the ledger; here there is one.
		Resolve: func(subject string) (key.Public, error) {
			if subject != resident {
				return key.Public{}, errors.New("unknown DID")
			}
			return wallet.Public(), nil
		},
	}

	c, _ := s.Challenge("did:imi:node")                            // the node sends c to the wallet
	proof := authn.WalletProof(c, resident, wallet)                // the wallet signs it
	token, principals, err := s.SignIn(c.ID, []authn.Proof{proof}) // the node checks it
	fmt.Println(principals[0] == resident, err)

	p, err := s.Principals(token) // each later request carries the token
	fmt.Println(p[0] == resident, err)

	s.End(token)
	_, err = s.Principals(token)
	fmt.Println(err)
	// Output:
	// true <nil>
	// true <nil>
	// no such session: it is unknown, ended or expired; sign in again
}
