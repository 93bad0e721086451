package ledger_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

func TestRegisterResident(t *testing.T) {
	d := newDistrict(t, memApp(t))
	raw := d.tx(d.psb.party, d.alice.register())
	res := d.ok(raw)
	if len(res.ValidatorUpdates) != 0 {
		t.Errorf("registration changed validators: %v", res.ValidatorUpdates)
	}
	h, at := d.height, d.now

	got, err := d.app.Resolve(d.alice.did, 0)
	if err != nil {
		t.Fatal(err)
	}
	doc := got.Document
	kid := d.alice.did + "#key-1"
	if doc.ID != d.alice.did || len(doc.VerificationMethod) != 1 {
		t.Fatalf("document = %+v", doc)
	}
	vm := doc.VerificationMethod[0]
	if vm.ID != kid || vm.Controller != d.alice.did || vm.Type != "JsonWebKey2020" ||
		vm.PublicKeyJwk.Crv != "Ed25519" || vm.PublicKeyJwk.X != jwkX(d.alice.key.Public()) {
		t.Errorf("verification method = %+v", vm)
	}
	if len(doc.Authentication) != 1 || doc.Authentication[0] != kid || len(doc.AssertionMethod) != 1 || doc.AssertionMethod[0] != kid {
		t.Errorf("authentication %v, assertionMethod %v, want [%s]", doc.Authentication, doc.AssertionMethod, kid)
	}
	m := got.Metadata
	if m.Kind != "resident" || m.Deactivated || !m.Created.Equal(at) || !m.Updated.Equal(at) {
		t.Errorf("metadata = %+v", m)
	}
	want := did.Attestation{Registrar: d.psb.did, Assurance: "high", Time: at, Height: h}
	if m.Attestation == nil || *m.Attestation != want {
		t.Errorf("attestation = %+v, want %+v", m.Attestation, want)
	}
	if got.ResolutionMetadata.Height != h {
		t.Errorf("resolved at height %d, want %d", got.ResolutionMetadata.Height, h)
	}

	r := d.resident(d.alice.did)
	if !r.Key.Equal(d.alice.key.Public()) || r.KeyVersion != 1 || r.UniquenessTag != d.alice.tag ||
		r.RecoveryHash != key.RecoveryHash(d.alice.recovery.Public()) ||
		r.Attestation.Registrar != d.psb.did || r.Attestation.At.Height != h || !r.Attestation.At.Time.Equal(at) {
		t.Errorf("record = %+v", r)
	}

	meta, _, err := d.app.Meta(0)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Residents != 1 || meta.ChainID != testChainID || meta.DistrictEN != "Chancheng District" {
		t.Errorf("meta = %+v", meta)
	}

	tr, err := d.app.TxResult(tx.Hash(raw))
	if err != nil {
		t.Fatal(err)
	}
	if *tr != (ledger.TxResult{Height: h, Index: 0, Code: ledger.OK, Type: string(tx.TypeRegisterResident), Signer: d.psb.did}) {
		t.Errorf("TxResult = %+v", tr)
	}
	if n := d.app.NextSeq(d.psb.did, 0); n != 1 {
		t.Errorf("registrar's next sequence = %d, want 1", n)
	}
}

func TestRegisterRefusals(t *testing.T) {
	// Each case starts from a district where alice is registered and builds
	// one registration in the next block.
	tests := []struct {
		name string
		make func(d *district) []byte
		want ledger.Code
	}{
		{"accepted", func(d *district) []byte { return d.tx(d.psb.party, d.bob.register()) }, ledger.OK},
		{"substantial assurance", func(d *district) []byte {
			b := d.bob.register()
			b.Assurance = "substantial"
			return d.tx(d.psb.party, b)
		}, ledger.OK},
		{"same person with a new key", func(d *district) []byte {
			b := d.bob.register()
			b.UniquenessTag = d.alice.tag
			return d.tx(d.psb.party, b)
		}, ledger.CodeAlreadyRegistered},
		{"same key again", func(d *district) []byte {
			b := d.alice.register()
			b.UniquenessTag = d.bob.tag
			return d.tx(d.psb.party, b)
		}, ledger.CodeDIDExists},
		{"an authority's key", func(d *district) []byte {
			b := d.bob.register()
			b.Key, b.DID = d.tax.key.Public(), d.tax.did
			return d.tx(d.psb.party, b)
		}, ledger.CodeDIDExists},
		{"authority without the registrar role", func(d *district) []byte { return d.tx(d.hrss.party, d.bob.register()) }, ledger.CodeNotAuthorized},
		{"service provider", func(d *district) []byte { return d.tx(d.tax.party, d.bob.register()) }, ledger.CodeNotAuthorized},
		{"unknown signer", func(d *district) []byte {
			return d.tx(newParty(t, "impostor"), d.bob.register())
		}, ledger.CodeUnknownSigner},
		{"resident as registrar", func(d *district) []byte { return d.tx(d.alice.party, d.bob.register()) }, ledger.CodeUnknownSigner},
		{"registrar's DID signed with another key", func(d *district) []byte {
			return d.txAs(d.psb.did, d.hrss.key, d.bob.register())
		}, ledger.CodeBadSignature},
		{"DID not derived from the key", func(d *district) []byte {
			b := d.bob.register()
			b.DID = newParty(t, "someone else").did
			return d.tx(d.psb.party, b)
		}, ledger.CodeInvalidField},
		{"zero key", func(d *district) []byte {
			b := d.bob.register()
			b.Key = key.Public{}
			b.DID = did.FromKey(key.Public{}).String()
			return d.tx(d.psb.party, b)
		}, ledger.CodeInvalidField},
		{"recovery key is the signing key", func(d *district) []byte {
			b := d.bob.register()
			b.RecoveryHash = key.RecoveryHash(d.bob.key.Public())
			return d.tx(d.psb.party, b)
		}, ledger.CodeInvalidField},
		{"assurance low", func(d *district) []byte {
			b := d.bob.register()
			b.Assurance = "low"
			return d.tx(d.psb.party, b)
		}, ledger.CodeInvalidField},
		{"assurance empty", func(d *district) []byte {
			b := d.bob.register()
			b.Assurance = ""
			return d.tx(d.psb.party, b)
		}, ledger.CodeInvalidField},
		{"assurance in another case", func(d *district) []byte {
			b := d.bob.register()
			b.Assurance = "High"
			return d.tx(d.psb.party, b)
		}, ledger.CodeInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := withAlice(t)
			before := d.hashes[d.height]
			raw := tt.make(d)
			if got := d.check(raw); got != tt.want {
				t.Errorf("CheckTx = %s, want %s", got.Name(), tt.want.Name())
			}
			d.want1(raw, tt.want)
			// A refusal changes no state: the app hash stays, and the
			// outcome is kept beside the tree (and in CometBFT's
			// LastResultsHash).
			if changed := string(d.hashes[d.height]) != string(before); changed != (tt.want == ledger.OK) {
				t.Errorf("app hash changed = %v for outcome %s", changed, tt.want.Name())
			}
			if r, err := d.app.TxResult(tx.Hash(raw)); err != nil || r.Code != tt.want {
				t.Errorf("TxResult = %+v, %v; want code %s", r, err, tt.want.Name())
			}
			meta, _, _ := d.app.Meta(0)
			wantResidents := uint64(1)
			if tt.want == ledger.OK {
				wantResidents = 2
				if _, err := d.app.Resolve(d.bob.did, 0); err != nil {
					t.Errorf("Resolve(bob) = %v", err)
				}
			} else {
				if _, err := d.app.Resolve(d.bob.did, 0); !errors.Is(err, ledger.ErrNotFound) {
					t.Errorf("Resolve(bob) after a refusal = %v, want ErrNotFound", err)
				}
				// The refusal is recorded under the transaction's hash.
				tr, err := d.app.TxResult(tx.Hash(raw))
				if err != nil || tr.Code != tt.want || tr.Log == "" {
					t.Errorf("TxResult = %+v, %v; want code %s with a log", tr, err, tt.want.Name())
				}
			}
			if meta.Residents != wantResidents {
				t.Errorf("Meta.Residents = %d, want %d", meta.Residents, wantResidents)
			}
			// alice is untouched whatever happened.
			if r := d.resident(d.alice.did); !r.Key.Equal(d.alice.key.Public()) || r.UniquenessTag != d.alice.tag {
				t.Errorf("alice's record changed: %+v", r)
			}
		})
	}
}

// TestRefusalKeepsSequence: a refused transaction does not consume its
// sequence number, so the signer's next transaction reuses it.
func TestRefusalKeepsSequence(t *testing.T) {
	d := withAlice(t)
	bad := d.bob.register()
	bad.Assurance = "low"
	d.want1(d.tx(d.psb.party, bad), ledger.CodeInvalidField)
	if n := d.app.NextSeq(d.psb.did, 0); n != 1 {
		t.Fatalf("NextSeq after a refusal = %d, want 1", n)
	}
	d.ok(build(t, testChainID, d.psb.did, 0, 1, d.bob.register(), d.psb.key))
}

func TestInitChain(t *testing.T) {
	psb := newAuthority(t, "psb", 10, ledger.RoleRegistrar)
	hrss := newAuthority(t, "hrss", 7, "issuer:social_insurance")
	observer := newAuthority(t, "observer", 0, ledger.RoleServiceProvider)

	t.Run("validators and authorities", func(t *testing.T) {
		c := newChain(t, memApp(t), genesisOf(psb, hrss, observer))
		if len(c.initVals) != 2 {
			t.Fatalf("InitChain validators = %v, want psb and hrss", c.initVals)
		}
		for i, a := range []*authority{psb, hrss} {
			v := c.initVals[i]
			if string(v.PubKey.GetEd25519()) != string(a.validator.Public().Bytes()) || v.Power != a.spec.Power {
				t.Errorf("validator %d = %v, want %s power %d", i, v, a.id, a.spec.Power)
			}
		}
		c.block()
		auths, h, err := c.app.Authorities(0)
		if err != nil || h != 1 {
			t.Fatal(h, err)
		}
		var ids []string
		for _, a := range auths {
			ids = append(ids, a.ID)
			if !a.Added.Time.Equal(genesisTime) || a.Added.Height != 1 {
				t.Errorf("%s added at %+v, want genesis", a.ID, a.Added)
			}
		}
		if want := []string{"hrss", "observer", "psb"}; !slices.Equal(ids, want) {
			t.Errorf("authorities = %v, want %v (id order)", ids, want)
		}
		res, err := c.app.Resolve(psb.did, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Metadata.Kind != "authority" || len(res.Document.Service) != 1 ||
			res.Document.Service[0].ServiceEndpoint != psb.spec.Endpoint ||
			res.Document.VerificationMethod[0].PublicKeyJwk.X != jwkX(psb.key.Public()) ||
			len(res.Document.AlsoKnownAs) != 1 || res.Document.AlsoKnownAs[0] != "urn:imi:authority:psb" {
			t.Errorf("authority resolution = %+v %+v", res.Document, res.Metadata)
		}
		if c.app.ChainID() != testChainID {
			t.Errorf("ChainID = %q", c.app.ChainID())
		}
	})

	state := func(g ledger.Genesis) []byte {
		b, err := tx.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dup := *hrss
	dup.spec.ID = "hrss-two"
	badRoles := *hrss
	badRoles.spec.Roles = []string{"registrar", "issuer:social_insurance"} // unsorted
	other := newAuthority(t, "other", 10)
	tests := []struct {
		name  string
		state []byte
		vals  []abci.ValidatorUpdate
	}{
		{"no authorities", state(ledger.Genesis{DistrictEN: "x"}), nil},
		{"not JSON", []byte("{"), nil},
		{"unknown field", []byte(`{"district_zh":"","district_en":"","authorities":[],"extra":1}`), nil},
		{"same authority twice", state(genesisOf(psb, psb)), nil},
		{"same key under two ids", state(genesisOf(psb, hrss, &dup)), nil},
		{"unsorted roles", state(genesisOf(psb, &badRoles)), nil},
		{"validators differ from the authorities", state(genesisOf(psb)),
			[]abci.ValidatorUpdate{abci.UpdateValidator(other.validator.Public().Bytes(), 10, "ed25519")}},
		{"validator power differs", state(genesisOf(psb)),
			[]abci.ValidatorUpdate{abci.UpdateValidator(psb.validator.Public().Bytes(), 11, "ed25519")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := memApp(t).InitChain(context.Background(), &abci.RequestInitChain{
				Time: genesisTime, ChainId: testChainID, InitialHeight: 1, AppStateBytes: tt.state, Validators: tt.vals,
			})
			if err == nil {
				t.Error("InitChain accepted a bad genesis")
			}
		})
	}
}
