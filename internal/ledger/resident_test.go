package ledger_test

import (
	"errors"
	"testing"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

func TestRotateKey(t *testing.T) {
	d := withAlice(t)
	k2 := seedKey(t, "alice key 2")
	k3 := seedKey(t, "alice key 3")

	refusals := []struct {
		name string
		k    key.Private
		to   key.Public
		want ledger.Code
	}{
		{"to the same key", d.alice.key, d.alice.key.Public(), ledger.CodeInvalidField},
		{"to the zero key", d.alice.key, key.Public{}, ledger.CodeInvalidField},
		{"to the recovery key", d.alice.key, d.alice.recovery.Public(), ledger.CodeInvalidField},
		{"signed by the new key", k2, k2.Public(), ledger.CodeBadSignature},
		{"signed by the recovery key", d.alice.recovery, k2.Public(), ledger.CodeBadSignature},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			d.want1(d.txAs(d.alice.did, tt.k, &tx.RotateKey{NewKey: tt.to}), tt.want)
			if r := d.resident(d.alice.did); r.KeyVersion != 1 {
				t.Errorf("key version %d after a refusal", r.KeyVersion)
			}
		})
	}

	d.ok(d.tx(d.alice.party, &tx.RotateKey{NewKey: k2.Public()}))
	rotated := d.height
	r := d.resident(d.alice.did)
	if !r.Key.Equal(k2.Public()) || r.KeyVersion != 2 || r.Updated.Height != rotated || r.Created.Height != 1 {
		t.Errorf("record after rotation = %+v", r)
	}
	if r.RecoveryHash != key.RecoveryHash(d.alice.recovery.Public()) {
		t.Error("rotation changed the recovery commitment")
	}
	res, err := d.app.Resolve(d.alice.did, 0)
	if err != nil {
		t.Fatal(err)
	}
	if vm := res.Document.VerificationMethod[0]; vm.ID != d.alice.did+"#key-2" || vm.PublicKeyJwk.X != jwkX(k2.Public()) {
		t.Errorf("verification method after rotation = %+v", vm)
	}
	if res.Document.ID != d.alice.did {
		t.Error("rotation changed the DID")
	}

	// The old key no longer speaks for alice; the new one does.
	d.want1(d.tx(d.alice.party, &tx.RotateKey{NewKey: k3.Public()}), ledger.CodeBadSignature)
	d.want1(d.tx(d.alice.party, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonResidentRequest}), ledger.CodeBadSignature)
	d.ok(d.txAs(d.alice.did, k2, &tx.RotateKey{NewKey: k3.Public()}))
	// Rotating back to an earlier key is allowed: only the current key is
	// compared.
	d.ok(d.txAs(d.alice.did, k3, &tx.RotateKey{NewKey: d.alice.key.Public()}))
	if r := d.resident(d.alice.did); r.KeyVersion != 4 || !r.Key.Equal(d.alice.key.Public()) {
		t.Errorf("after rotating back: %+v", r)
	}
}

func TestRecover(t *testing.T) {
	d := withAlice(t)
	lost := d.alice.key
	newKey := seedKey(t, "alice after recovery")
	rec2 := seedKey(t, "alice recovery 2")
	rec3 := seedKey(t, "alice recovery 3")
	good := &tx.Recover{RecoveryKey: d.alice.recovery.Public(), NewKey: newKey.Public(), NewRecoveryHash: key.RecoveryHash(rec2.Public())}

	refusals := []struct {
		name string
		k    key.Private
		body *tx.Recover
		want ledger.Code
	}{
		{"wrong recovery key", rec2, &tx.Recover{RecoveryKey: rec2.Public(), NewKey: newKey.Public(), NewRecoveryHash: key.RecoveryHash(rec3.Public())}, ledger.CodeRecoveryMismatch},
		{"the lost key as recovery key", lost, &tx.Recover{RecoveryKey: lost.Public(), NewKey: newKey.Public(), NewRecoveryHash: key.RecoveryHash(rec3.Public())}, ledger.CodeRecoveryMismatch},
		{"right recovery key named, signed by the lost key", lost, good, ledger.CodeBadSignature},
		{"right recovery key named, signed by the new key", newKey, good, ledger.CodeBadSignature},
		{"new key is the lost key", d.alice.recovery, &tx.Recover{RecoveryKey: d.alice.recovery.Public(), NewKey: lost.Public(), NewRecoveryHash: key.RecoveryHash(rec2.Public())}, ledger.CodeInvalidField},
		{"new key is the recovery key", d.alice.recovery, &tx.Recover{RecoveryKey: d.alice.recovery.Public(), NewKey: d.alice.recovery.Public(), NewRecoveryHash: key.RecoveryHash(rec2.Public())}, ledger.CodeInvalidField},
		{"zero new key", d.alice.recovery, &tx.Recover{RecoveryKey: d.alice.recovery.Public(), NewRecoveryHash: key.RecoveryHash(rec2.Public())}, ledger.CodeInvalidField},
		{"recovery key reused as its own successor", d.alice.recovery, &tx.Recover{RecoveryKey: d.alice.recovery.Public(), NewKey: newKey.Public(), NewRecoveryHash: key.RecoveryHash(d.alice.recovery.Public())}, ledger.CodeInvalidField},
		{"successor recovery key is the new key", d.alice.recovery, &tx.Recover{RecoveryKey: d.alice.recovery.Public(), NewKey: newKey.Public(), NewRecoveryHash: key.RecoveryHash(newKey.Public())}, ledger.CodeInvalidField},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			d.want1(d.txAs(d.alice.did, tt.k, tt.body), tt.want)
			if r := d.resident(d.alice.did); !r.Key.Equal(lost.Public()) {
				t.Error("a refused recovery changed the key")
			}
		})
	}

	d.ok(d.txAs(d.alice.did, d.alice.recovery, good))
	r := d.resident(d.alice.did)
	if !r.Key.Equal(newKey.Public()) || r.KeyVersion != 2 || r.RecoveryHash != key.RecoveryHash(rec2.Public()) {
		t.Errorf("record after recovery = %+v", r)
	}
	if r.Attestation.At.Height != 1 {
		t.Error("recovery changed the registrar's attestation")
	}
	if got := d.currentKey(d.alice.did, 0); got != jwkX(newKey.Public()) {
		t.Errorf("resolved key %s, want the new key", got)
	}

	// The used recovery key cannot be used twice, even for another new key.
	again := &tx.Recover{RecoveryKey: d.alice.recovery.Public(), NewKey: rec3.Public(), NewRecoveryHash: key.RecoveryHash(lost.Public())}
	d.want1(d.txAs(d.alice.did, d.alice.recovery, again), ledger.CodeRecoveryMismatch)
	// The lost key is dead.
	d.want1(d.txAs(d.alice.did, lost, &tx.RotateKey{NewKey: rec3.Public()}), ledger.CodeBadSignature)
	// The successor recovery key works, once.
	next := &tx.Recover{RecoveryKey: rec2.Public(), NewKey: seedKey(t, "alice third key").Public(), NewRecoveryHash: key.RecoveryHash(rec3.Public())}
	d.ok(d.txAs(d.alice.did, rec2, next))
	if r := d.resident(d.alice.did); r.KeyVersion != 3 || r.RecoveryHash != key.RecoveryHash(rec3.Public()) {
		t.Errorf("after the second recovery: %+v", r)
	}
}

func TestSelfDeactivation(t *testing.T) {
	d := withAlice(t)
	for _, reason := range []string{ledger.ReasonDeceased, ledger.ReasonMovedAway, "", "bored"} {
		d.want1(d.tx(d.alice.party, &tx.Deactivate{DID: d.alice.did, Reason: reason}), ledger.CodeInvalidField)
	}
	// A resident cannot deactivate someone else.
	d.ok(d.tx(d.psb.party, d.bob.register()))
	d.want1(d.tx(d.alice.party, &tx.Deactivate{DID: d.bob.did, Reason: ledger.ReasonResidentRequest}), ledger.CodeUnknownSigner)

	d.ok(d.tx(d.alice.party, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonResidentRequest}))
	at := d.now
	res, err := d.app.Resolve(d.alice.did, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Metadata.Deactivated || res.Metadata.DeactivationReason != ledger.ReasonResidentRequest || !res.Metadata.Updated.Equal(at) {
		t.Errorf("metadata = %+v", res.Metadata)
	}
	if doc := res.Document; doc.ID != d.alice.did || len(doc.VerificationMethod) != 0 || len(doc.Authentication) != 0 || len(doc.AssertionMethod) != 0 {
		t.Errorf("a deactivated DID document still has keys: %+v", doc)
	}

	k2 := seedKey(t, "alice key 2")
	later := []struct {
		name string
		raw  func() []byte
	}{
		{"rotate", func() []byte { return d.tx(d.alice.party, &tx.RotateKey{NewKey: k2.Public()}) }},
		{"recover", func() []byte {
			return d.txAs(d.alice.did, d.alice.recovery, &tx.Recover{RecoveryKey: d.alice.recovery.Public(), NewKey: k2.Public(), NewRecoveryHash: key.RecoveryHash(seedKey(t, "r").Public())})
		}},
		{"deactivate again", func() []byte {
			return d.tx(d.alice.party, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonResidentRequest})
		}},
		{"registrar deactivates", func() []byte {
			return d.tx(d.psb.party, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonDeceased})
		}},
		{"registrar reproofs", func() []byte {
			return d.tx(d.psb.party, &tx.Reproof{DID: d.alice.did, UniquenessTag: d.alice.tag, NewKey: k2.Public(), NewRecoveryHash: key.RecoveryHash(seedKey(t, "r").Public()), Assurance: "high"})
		}},
	}
	for _, tt := range later {
		t.Run(tt.name, func(t *testing.T) {
			d.want1(tt.raw(), ledger.CodeDeactivated)
		})
	}
	// The person stays registered: the tag is not released.
	again := newResident(t, "alice", 1)
	again.party = newParty(t, "alice's new phone")
	d.want1(d.tx(d.psb.party, again.register()), ledger.CodeAlreadyRegistered)
}

func TestRegistrarDeactivation(t *testing.T) {
	tests := []struct {
		name   string
		signer func(d *district) *party
		did    func(d *district) string
		reason string
		want   ledger.Code
	}{
		{"deceased", psbSigner, aliceDID, ledger.ReasonDeceased, ledger.OK},
		{"moved away", psbSigner, aliceDID, ledger.ReasonMovedAway, ledger.OK},
		{"registration error", psbSigner, aliceDID, ledger.ReasonRegistrationError, ledger.OK},
		{"on the resident's behalf", psbSigner, aliceDID, ledger.ReasonResidentRequest, ledger.OK},
		{"unknown reason", psbSigner, aliceDID, "emigrated", ledger.CodeInvalidField},
		{"no reason", psbSigner, aliceDID, "", ledger.CodeInvalidField},
		{"not a registrar", func(d *district) *party { return d.hrss.party }, aliceDID, ledger.ReasonDeceased, ledger.CodeNotAuthorized},
		{"unregistered DID", psbSigner, func(d *district) string { return d.bob.did }, ledger.ReasonDeceased, ledger.CodeNotFound},
		{"an authority's DID", psbSigner, func(d *district) string { return d.tax.did }, ledger.ReasonDeceased, ledger.CodeNotFound},
		{"another resident signs", func(d *district) *party { return d.bob.party }, aliceDID, ledger.ReasonDeceased, ledger.CodeUnknownSigner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := withAlice(t)
			d.want1(d.tx(tt.signer(d), &tx.Deactivate{DID: tt.did(d), Reason: tt.reason}), tt.want)
			r := d.resident(d.alice.did)
			if tt.want != ledger.OK {
				if r.Deactivated {
					t.Error("deactivated by a refused transaction")
				}
				return
			}
			if !r.Deactivated || r.DeactivationReason != tt.reason || r.Updated.Height != d.height {
				t.Errorf("record = %+v", r)
			}
			res, err := d.app.Resolve(d.alice.did, 0)
			if err != nil || !res.Metadata.Deactivated || len(res.Document.VerificationMethod) != 0 {
				t.Errorf("Resolve = %+v, %v", res, err)
			}
			// Alice's own key no longer works.
			d.want1(d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()}), ledger.CodeDeactivated)
		})
	}
}

func psbSigner(d *district) *party { return d.psb.party }
func aliceDID(d *district) string  { return d.alice.did }

func TestReproof(t *testing.T) {
	d := withAlice(t)
	lost := d.alice.key
	newKey := seedKey(t, "alice reproofed")
	newRec := seedKey(t, "alice reproof recovery")
	// A second registrar, added by governance, re-proofs alice.
	reproof := func(tag tx.Hash32, k key.Public, assurance string) *tx.Reproof {
		return &tx.Reproof{DID: d.alice.did, UniquenessTag: tag, NewKey: k, NewRecoveryHash: key.RecoveryHash(newRec.Public()), Assurance: assurance}
	}
	refusals := []struct {
		name string
		p    *party
		body *tx.Reproof
		want ledger.Code
	}{
		{"someone else's ID number", d.psb.party, reproof(d.bob.tag, newKey.Public(), "high"), ledger.CodeUniquenessMismatch},
		{"binds the lost key again", d.psb.party, reproof(d.alice.tag, lost.Public(), "high"), ledger.CodeInvalidField},
		{"zero key", d.psb.party, reproof(d.alice.tag, key.Public{}, "high"), ledger.CodeInvalidField},
		{"new key is the new recovery key", d.psb.party, reproof(d.alice.tag, newRec.Public(), "high"), ledger.CodeInvalidField},
		{"bad assurance", d.psb.party, reproof(d.alice.tag, newKey.Public(), "medium"), ledger.CodeInvalidField},
		{"not a registrar", d.med.party, reproof(d.alice.tag, newKey.Public(), "high"), ledger.CodeNotAuthorized},
		{"the resident", d.alice.party, reproof(d.alice.tag, newKey.Public(), "high"), ledger.CodeUnknownSigner},
		{"unregistered DID", d.psb.party, &tx.Reproof{DID: d.bob.did, UniquenessTag: d.bob.tag, NewKey: newKey.Public(), NewRecoveryHash: key.RecoveryHash(newRec.Public()), Assurance: "high"}, ledger.CodeNotFound},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			d.want1(d.tx(tt.p, tt.body), tt.want)
		})
	}

	// The reproof and a rotation signed by the lost key land in the same
	// block, in that order: the lost key stops working at once.
	stolen := d.tx(d.alice.party, &tx.RotateKey{NewKey: seedKey(t, "thief").Public()})
	d.want([][]byte{d.tx(d.psb.party, reproof(d.alice.tag, newKey.Public(), "substantial")), stolen},
		ledger.OK, ledger.CodeBadSignature)
	r := d.resident(d.alice.did)
	if !r.Key.Equal(newKey.Public()) || r.KeyVersion != 2 || r.RecoveryHash != key.RecoveryHash(newRec.Public()) {
		t.Errorf("record after reproof = %+v", r)
	}
	if r.Attestation.Assurance != "substantial" || r.Attestation.At.Height != d.height || r.Attestation.Registrar != d.psb.did {
		t.Errorf("attestation after reproof = %+v", r.Attestation)
	}
	if r.Created.Height != 1 || r.UniquenessTag != d.alice.tag {
		t.Errorf("reproof changed identity facts: %+v", r)
	}
	// The old recovery key went with the old binding.
	d.want1(d.txAs(d.alice.did, d.alice.recovery, &tx.Recover{RecoveryKey: d.alice.recovery.Public(), NewKey: seedKey(t, "x").Public(), NewRecoveryHash: key.RecoveryHash(seedKey(t, "y").Public())}),
		ledger.CodeRecoveryMismatch)
	// The new key works.
	d.ok(d.txAs(d.alice.did, newKey, &tx.RotateKey{NewKey: seedKey(t, "alice later").Public()}))
}

func TestReproofReactivation(t *testing.T) {
	tests := []struct {
		reason string
		want   ledger.Code
	}{
		{ledger.ReasonMovedAway, ledger.OK},
		{ledger.ReasonDeceased, ledger.CodeDeactivated},
		{ledger.ReasonRegistrationError, ledger.CodeDeactivated},
		{ledger.ReasonResidentRequest, ledger.CodeDeactivated},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			d := withAlice(t)
			d.ok(d.tx(d.psb.party, &tx.Deactivate{DID: d.alice.did, Reason: tt.reason}))
			newKey := seedKey(t, "alice back home")
			body := &tx.Reproof{DID: d.alice.did, UniquenessTag: d.alice.tag, NewKey: newKey.Public(),
				NewRecoveryHash: key.RecoveryHash(seedKey(t, "alice back home recovery").Public()), Assurance: "high"}
			d.want1(d.tx(d.psb.party, body), tt.want)
			r := d.resident(d.alice.did)
			if tt.want != ledger.OK {
				if !r.Deactivated || r.DeactivationReason != tt.reason {
					t.Errorf("record = %+v, want still deactivated (%s)", r, tt.reason)
				}
				return
			}
			if r.Deactivated || r.DeactivationReason != "" || !r.Key.Equal(newKey.Public()) {
				t.Errorf("record after re-activation = %+v", r)
			}
			res, err := d.app.Resolve(d.alice.did, 0)
			if err != nil || res.Metadata.Deactivated || len(res.Document.VerificationMethod) != 1 ||
				res.Document.VerificationMethod[0].ID != d.alice.did+"#key-2" {
				t.Errorf("Resolve after re-activation = %+v, %v", res, err)
			}
			d.ok(d.txAs(d.alice.did, newKey, &tx.RotateKey{NewKey: seedKey(t, "alice k3").Public()}))
		})
	}
}

func TestResolveHistory(t *testing.T) {
	d := newDistrict(t, memApp(t))
	if _, err := d.app.Resolve(d.alice.did, 0); !errors.Is(err, ledger.ErrNoVersions) {
		t.Errorf("Resolve before the first block = %v, want ErrNoVersions", err)
	}
	// Registered at height 1, an empty block 2, rotated at 3, deactivated at 4.
	k2 := seedKey(t, "alice key 2")
	d.ok(d.tx(d.psb.party, d.alice.register()))
	d.block()
	d.ok(d.tx(d.alice.party, &tx.RotateKey{NewKey: k2.Public()}))
	d.ok(d.tx(d.alice.party.withKey(k2), &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonResidentRequest}))

	for h, want := range map[int64]string{1: jwkX(d.alice.key.Public()), 2: jwkX(d.alice.key.Public()), 3: jwkX(k2.Public())} {
		if got := d.currentKey(d.alice.did, h); got != want {
			t.Errorf("key at height %d = %s, want %s", h, got, want)
		}
		res, _ := d.app.Resolve(d.alice.did, h)
		if res.ResolutionMetadata.Height != h || res.Metadata.Deactivated {
			t.Errorf("height %d: %+v %+v", h, res.ResolutionMetadata, res.Metadata)
		}
	}
	if res, err := d.app.Resolve(d.alice.did, 0); err != nil || !res.Metadata.Deactivated || res.ResolutionMetadata.Height != 4 {
		t.Errorf("latest = %+v, %v", res, err)
	}
	if r, h, err := d.app.ResidentRecord(d.alice.did, 2); err != nil || h != 2 || r.KeyVersion != 1 {
		t.Errorf("ResidentRecord at 2 = %+v, %d, %v", r, h, err)
	}
	if _, err := d.app.Resolve(d.alice.did, 5); !errors.Is(err, ledger.ErrBadHeight) {
		t.Errorf("Resolve above the last height = %v, want ErrBadHeight", err)
	}
	if _, err := d.app.Resolve(d.bob.did, 0); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Resolve(unregistered) = %v, want ErrNotFound", err)
	}
	if _, _, err := d.app.ResidentRecord(d.psb.did, 0); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("ResidentRecord(authority) = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "did:imi:", "did:web:example.com", d.alice.did + "#key-1", "DID:IMI:" + d.alice.did[8:]} {
		if _, err := d.app.Resolve(bad, 0); !errors.Is(err, did.ErrSyntax) {
			t.Errorf("Resolve(%q) = %v, want did.ErrSyntax", bad, err)
		}
	}
}

// withKey is p signing with another key (after a rotation).
func (p *party) withKey(k key.Private) *party { return &party{name: p.name, key: k, did: p.did} }

func TestResidentByTag(t *testing.T) {
	d := withAlice(t) // height 1
	newKey := seedKey(t, "alice reproofed")
	d.ok(d.tx(d.psb.party, &tx.Reproof{DID: d.alice.did, UniquenessTag: d.alice.tag, NewKey: newKey.Public(),
		NewRecoveryHash: key.RecoveryHash(seedKey(t, "alice reproof recovery").Public()), Assurance: "high"})) // 2
	d.ok(d.tx(d.psb.party, d.bob.register())) // 3
	stranger := newResident(t, "stranger", 3)

	for _, tt := range []struct {
		name    string
		tag     tx.Hash32
		h       int64
		wantDID string
		wantKey key.Public
		wantErr error
	}{
		{"after registration", d.alice.tag, 1, d.alice.did, d.alice.key.Public(), nil},
		{"follows the re-proof", d.alice.tag, 2, d.alice.did, newKey.Public(), nil},
		{"latest", d.alice.tag, 0, d.alice.did, newKey.Public(), nil},
		{"another resident's tag", d.bob.tag, 0, d.bob.did, d.bob.key.Public(), nil},
		{"before that resident registered", d.bob.tag, 2, "", key.Public{}, ledger.ErrNotFound},
		{"a tag no one holds", stranger.tag, 0, "", key.Public{}, ledger.ErrNotFound},
		{"zero tag", tx.Hash32{}, 0, "", key.Public{}, ledger.ErrNotFound},
		{"above the last height", d.alice.tag, 4, "", key.Public{}, ledger.ErrBadHeight},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, h, err := d.app.ResidentByTag(tt.tag, tt.h)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || r != nil {
					t.Errorf("ResidentByTag = %+v, %v; want %v", r, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResidentByTag: %v", err)
			}
			wantH := tt.h
			if wantH == 0 {
				wantH = 3 // the latest
			}
			if h != wantH {
				t.Errorf("height = %d, want %d", h, wantH)
			}
			if r.DID != tt.wantDID || !r.Key.Equal(tt.wantKey) || r.UniquenessTag != tt.tag {
				t.Errorf("ResidentByTag = DID %s, key %x, tag %x; want DID %s, key %x, its own tag",
					r.DID, r.Key.Bytes(), r.UniquenessTag, tt.wantDID, tt.wantKey.Bytes())
			}
		})
	}
}
