package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// Example registers a resident and resolves the DID, driving the App the way
// CometBFT does: InitChain, then FinalizeBlock and Commit for each block.
func Example() {
	ctx := context.Background()
	app, err := ledger.OpenMemory(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()

	// The district's founding authority, a registrar that also runs a
	// validator. (Fixed seeds keep the output stable; use key.Generate.)
	psbKey := exampleKey(1)
	psbDID := did.FromKey(psbKey.Public()).String()
	genesis := ledger.Genesis{DistrictZH: "禅城区", DistrictEN: "Chancheng District", Authorities: []tx.AuthoritySpec{{
		ID: "psb", NameZH: "禅城公安分局", NameEN: "Chancheng Public Security Bureau", Key: psbKey.Public(),
		Roles: []string{ledger.RoleRegistrar}, ValidatorKey: exampleKey(2).Public().Bytes(), Power: 10,
	}}}
	state, err := tx.Marshal(genesis)
	if err != nil {
		log.Fatal(err)
	}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := app.InitChain(ctx, &abci.RequestInitChain{ChainId: "imi-example-1", InitialHeight: 1, Time: start, AppStateBytes: state}); err != nil {
		log.Fatal(err)
	}

	// At the service centre: the resident's wallet holds a signing key and
	// an offline recovery key; the registrar checks the ID card and sends
	// only a keyed hash of the number.
	residentKey, recoveryKey := exampleKey(3), exampleKey(4)
	uniqueness, err := key.GenerateHMAC() // held by the registrars, never on the chain
	if err != nil {
		log.Fatal(err)
	}
	number, err := idnumber.Example("440604", 1990, 3, 7, 123)
	if err != nil {
		log.Fatal(err)
	}
	body := &tx.RegisterResident{
		DID:           did.FromKey(residentKey.Public()).String(),
		Key:           residentKey.Public(),
		RecoveryHash:  key.RecoveryHash(recoveryKey.Public()),
		UniquenessTag: idnumber.UniquenessTag(uniqueness, number),
		Assurance:     "high",
	}
	reg, err := tx.New("imi-example-1", psbDID, 0, 0, body)
	if err != nil {
		log.Fatal(err)
	}
	reg.Sign(psbKey)

	block, err := app.FinalizeBlock(ctx, &abci.RequestFinalizeBlock{Height: 1, Time: start.Add(5 * time.Second), Txs: [][]byte{reg.Encode()}})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := app.Commit(ctx, &abci.RequestCommit{}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("registration:", ledger.Code(block.TxResults[0].Code).Name())

	res, err := app.Resolve(body.DID, 0)
	if err != nil {
		log.Fatal(err)
	}
	vm := res.Document.VerificationMethod[0]
	fmt.Println("DID:", res.Document.ID)
	fmt.Println("key:", vm.ID, vm.PublicKeyJwk.Crv, vm.PublicKeyJwk.X)
	a := res.Metadata.Attestation
	fmt.Println("proofed by the registrar:", a.Registrar == psbDID, a.Assurance, a.Time.Format(time.RFC3339), "height", a.Height)

	// A light client checks the record against the app hash of the block.
	proof, err := app.ProveDID(body.DID, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("proof verifies:", proof.Verify(block.AppHash) == nil)

	// Output:
	// registration: ok
	// DID: did:imi:vu4ced6luapnn5qzmdg2j3i4jj6jb5mn
	// key: did:imi:vu4ced6luapnn5qzmdg2j3i4jj6jb5mn#key-1 Ed25519 7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9E
	// proofed by the registrar: true high 2030-01-01T00:00:05Z height 1
	// proof verifies: true
}

func exampleKey(b byte) key.Private {
	k, err := key.FromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		log.Fatal(err)
	}
	return k
}
