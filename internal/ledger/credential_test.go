package ledger_test

import (
	"context"
	"strings"
	"testing"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

func socialInsuranceType() *tx.RegisterCredentialType {
	return &tx.RegisterCredentialType{
		ID: "social_insurance", VCT: "urn:imi:vct:social_insurance", NameZH: "社会保险", NameEN: "Social insurance",
		Claims: []tx.ClaimSpec{
			{Name: "insurance_number", NameZH: "社保号码", NameEN: "Insurance number", Sensitive: true},
			{Name: "pension_status", NameZH: "养老金状态", NameEN: "Pension status", Sensitive: true},
		},
		MaxValidityDays: 365,
	}
}

func TestRegisterCredentialType(t *testing.T) {
	d := newDistrict(t, memApp(t))
	ct := socialInsuranceType()
	d.want1(d.tx(d.tax.party, ct), ledger.CodeNotAuthorized)
	d.want1(d.tx(d.med.party, ct), ledger.CodeNotAuthorized) // issuer, but of another type
	d.ok(d.tx(d.hrss.party, ct))
	got, _, err := d.app.CredentialTypeByVCT(ct.VCT, 0)
	if err != nil || got.ID != ct.ID || got.Issuer != "hrss" || got.Version != 1 || len(got.Claims) != 2 {
		t.Fatalf("CredentialTypeByVCT = %+v, %v", got, err)
	}
	if s, ok := got.Claim("insurance_number"); !ok || !s.Sensitive {
		t.Errorf("insurance_number is not marked sensitive: %+v", s)
	}

	// A new version replaces the old and frees its vct.
	v2 := socialInsuranceType()
	v2.VCT = "urn:imi:vct:social_insurance:2"
	d.ok(d.tx(d.hrss.party, v2))
	if got, _, err := d.app.CredentialType(ct.ID, 0); err != nil || got.Version != 2 || got.VCT != v2.VCT {
		t.Fatalf("after replacement: %+v, %v", got, err)
	}
	if _, _, err := d.app.CredentialTypeByVCT(ct.VCT, 0); err == nil {
		t.Error("the old vct still resolves")
	}
	// The old version stays readable at its height.
	if got, _, err := d.app.CredentialType(ct.ID, d.height-1); err != nil || got.Version != 1 {
		t.Errorf("history lost: %+v, %v", got, err)
	}
	types, _, err := d.app.CredentialTypes(0)
	if err != nil || len(types) != 1 {
		t.Errorf("CredentialTypes = %d types, %v", len(types), err)
	}
}

func TestCredentialTypeRejects(t *testing.T) {
	mut := map[string]func(*tx.RegisterCredentialType){
		"reserved claim exp":   func(c *tx.RegisterCredentialType) { c.Claims[0].Name = "exp" },
		"reserved claim _sd":   func(c *tx.RegisterCredentialType) { c.Claims[0].Name = "_sd" },
		"claim with space":     func(c *tx.RegisterCredentialType) { c.Claims[0].Name = "insurance number" },
		"claim twice":          func(c *tx.RegisterCredentialType) { c.Claims[1].Name = c.Claims[0].Name },
		"no claims":            func(c *tx.RegisterCredentialType) { c.Claims = nil },
		"vct with space":       func(c *tx.RegisterCredentialType) { c.VCT = "urn:imi:vct:social insurance" },
		"vct http":             func(c *tx.RegisterCredentialType) { c.VCT = "http://example.com/vct" },
		"no display name":      func(c *tx.RegisterCredentialType) { c.Claims[0].NameZH = "" },
		"control in name":      func(c *tx.RegisterCredentialType) { c.NameEN = "Social\ninsurance" },
		"validity 0":           func(c *tx.RegisterCredentialType) { c.MaxValidityDays = 0 },
		"validity beyond life": func(c *tx.RegisterCredentialType) { c.MaxValidityDays = 100000 },
	}
	for name, m := range mut {
		t.Run(name, func(t *testing.T) {
			d := newDistrict(t, memApp(t))
			ct := socialInsuranceType()
			m(ct)
			d.want1(d.tx(d.hrss.party, ct), ledger.CodeInvalidField)
		})
	}
	t.Run("vct of another type", func(t *testing.T) {
		d := newDistrict(t, memApp(t))
		d.ok(d.tx(d.hrss.party, socialInsuranceType()))
		med := &tx.RegisterCredentialType{ID: "medical_insurance", VCT: "urn:imi:vct:social_insurance", NameZH: "医保", NameEN: "Medical insurance",
			Claims: []tx.ClaimSpec{{Name: "plan", NameZH: "险种", NameEN: "Plan"}}, MaxValidityDays: 365}
		d.want1(d.tx(d.med.party, med), ledger.CodeInvalidField)
	})
}

func TestStatusLifecycle(t *testing.T) {
	d := newDistrict(t, memApp(t))
	d.ok(d.tx(d.hrss.party, socialInsuranceType()))
	d.want1(d.tx(d.hrss.party, &tx.ReserveStatus{Type: "medical_insurance", List: 0, Indices: []uint32{1}}), ledger.CodeNotAuthorized)
	d.want1(d.tx(d.med.party, &tx.ReserveStatus{Type: "medical_insurance", List: 0, Indices: []uint32{1}}), ledger.CodeNotFound)
	d.ok(d.tx(d.hrss.party, &tx.ReserveStatus{Type: "social_insurance", List: 0, Indices: []uint32{912734, 5}}))
	reservedAt := d.height

	for name, c := range map[string]struct {
		body tx.Body
		want ledger.Code
	}{
		"reused index":         {&tx.ReserveStatus{Type: "social_insurance", List: 0, Indices: []uint32{5}}, ledger.CodeStatusIndexTaken},
		"repeated in batch":    {&tx.ReserveStatus{Type: "social_insurance", List: 0, Indices: []uint32{7, 7}}, ledger.CodeStatusIndexTaken},
		"index out of range":   {&tx.ReserveStatus{Type: "social_insurance", List: 0, Indices: []uint32{ledger.StatusListSize}}, ledger.CodeInvalidField},
		"list out of range":    {&tx.ReserveStatus{Type: "social_insurance", List: ledger.MaxStatusLists, Indices: []uint32{1}}, ledger.CodeInvalidField},
		"empty batch":          {&tx.ReserveStatus{Type: "social_insurance", List: 0}, ledger.CodeInvalidField},
		"batch too big":        {&tx.ReserveStatus{Type: "social_insurance", List: 0, Indices: make([]uint32, ledger.MaxReserveBatch+1)}, ledger.CodeInvalidField},
		"unsuspend valid":      {&tx.Unsuspend{StatusRef: tx.StatusRef{List: 0, Index: 5}}, ledger.CodeStatusFinal},
		"revoke unallocated":   {&tx.Revoke{StatusRef: tx.StatusRef{List: 0, Index: 6}}, ledger.CodeNotFound},
		"revoke in other list": {&tx.Revoke{StatusRef: tx.StatusRef{List: 1, Index: 5}}, ledger.CodeNotFound},
	} {
		t.Run(name, func(t *testing.T) { d.want1(d.tx(d.hrss.party, c.body), c.want) })
	}
	// Another issuer cannot touch hrss's entries: its own namespace is empty.
	d.want1(d.tx(d.med.party, &tx.Revoke{StatusRef: tx.StatusRef{List: 0, Index: 5}}), ledger.CodeNotFound)

	e, _, err := d.app.Status("hrss", 0, 912734, 0)
	if err != nil || e.Type != "social_insurance" || e.KeyVersion != 1 || e.Reserved.Height != reservedAt || e.Status != ledger.StatusValid {
		t.Fatalf("Status = %+v, %v", e, err)
	}

	d.ok(d.tx(d.hrss.party, &tx.Suspend{StatusRef: tx.StatusRef{List: 0, Index: 5}}))
	d.want1(d.tx(d.hrss.party, &tx.Suspend{StatusRef: tx.StatusRef{List: 0, Index: 5}}), ledger.CodeStatusFinal)
	d.ok(d.tx(d.hrss.party, &tx.Revoke{StatusRef: tx.StatusRef{List: 0, Index: 912734}}))
	revokedAt := d.height
	l, err := d.app.StatusListAt("hrss", 0, 0)
	if err != nil || l.Allocated != 2 || len(l.NotValid) != 2 || l.NotValid[5] != ledger.StatusSuspended || l.NotValid[912734] != ledger.StatusInvalid {
		t.Fatalf("StatusListAt = %+v, %v", l, err)
	}
	// Before the revocation's block, the entry was valid.
	if e, _, _ := d.app.Status("hrss", 0, 912734, revokedAt-1); e.Status != ledger.StatusValid {
		t.Errorf("status before revocation = %d", e.Status)
	}

	d.ok(d.tx(d.hrss.party, &tx.Unsuspend{StatusRef: tx.StatusRef{List: 0, Index: 5}}))
	for _, b := range []tx.Body{&tx.Unsuspend{StatusRef: tx.StatusRef{Index: 912734}}, &tx.Suspend{StatusRef: tx.StatusRef{Index: 912734}}, &tx.Revoke{StatusRef: tx.StatusRef{Index: 912734}}} {
		d.want1(d.tx(d.hrss.party, b), ledger.CodeStatusFinal)
	}
	l, _ = d.app.StatusListAt("hrss", 0, 0)
	if len(l.NotValid) != 1 || l.NotValid[912734] != ledger.StatusInvalid {
		t.Errorf("after unsuspend: %+v", l.NotValid)
	}
	if fill, err := d.app.StatusListFill("hrss"); err != nil || len(fill) != 1 || fill[0] != 2 {
		t.Errorf("StatusListFill = %v, %v", fill, err)
	}
}

func TestRotateAuthorityKey(t *testing.T) {
	d := newDistrict(t, memApp(t))
	d.ok(d.tx(d.hrss.party, socialInsuranceType()))
	first := d.height
	newKey := seedKey(t, "hrss second key")
	d.want1(d.tx(d.hrss.party, &tx.RotateAuthorityKey{NewKey: d.hrss.key.Public()}), ledger.CodeInvalidField)
	d.want1(d.tx(d.hrss.party, &tx.RotateAuthorityKey{NewKey: d.psb.key.Public()}), ledger.CodeDIDExists)
	d.ok(d.tx(d.hrss.party, &tx.RotateAuthorityKey{NewKey: newKey.Public()}))
	rotated := d.height

	// The old key no longer signs; the new one does, under the same DID.
	d.want1(d.tx(d.hrss.party, &tx.ReserveStatus{Type: "social_insurance", Indices: []uint32{1}}), ledger.CodeBadSignature)
	d.ok(d.txAs(d.hrss.did, newKey, &tx.ReserveStatus{Type: "social_insurance", Indices: []uint32{1}}))
	e, _, _ := d.app.Status("hrss", 0, 1, 0)
	if e.KeyVersion != 2 {
		t.Errorf("entry reserved after rotation has key version %d, want 2", e.KeyVersion)
	}
	a, removed, _, err := d.app.AuthorityByDID(d.hrss.did, 0)
	if err != nil || removed != nil || a.KeyVersion != 2 || !a.Key.Equal(newKey.Public()) {
		t.Fatalf("AuthorityByDID = %+v, %v, %v", a, removed, err)
	}
	old, ok := a.KeyAt(1)
	if !ok || !old.Key.Equal(d.hrss.key.Public()) || old.Until.Height != rotated || !old.From.Time.Equal(genesisTime) {
		t.Errorf("KeyAt(1) = %+v, %v (rotated at %d, type registered at %d)", old, ok, rotated, first)
	}
	if cur, ok := a.KeyAt(2); !ok || !cur.Until.Time.IsZero() || cur.From.Height != rotated {
		t.Errorf("KeyAt(2) = %+v, %v", cur, ok)
	}
	if _, ok := a.KeyAt(3); ok {
		t.Error("KeyAt(3) found a key that never existed")
	}
	res, err := d.app.Resolve(d.hrss.did, 0)
	if err != nil || !strings.HasSuffix(res.Document.VerificationMethod[0].ID, "#key-2") {
		t.Errorf("DID document after rotation: %+v, %v", res, err)
	}
}

func TestGenesisCredentialTypes(t *testing.T) {
	hrss := newAuthority(t, "hrss", 10, "issuer:social_insurance")
	g := genesisOf(hrss)
	g.CredentialTypes = []ledger.GenesisCredentialType{{Issuer: "hrss", Type: *socialInsuranceType()}}
	c := newChain(t, memApp(t), g)
	c.ok()
	if ct, _, err := c.app.CredentialType("social_insurance", 0); err != nil || ct.Issuer != "hrss" {
		t.Fatalf("genesis type: %+v, %v", ct, err)
	}

	for name, gt := range map[string]ledger.GenesisCredentialType{
		"issuer without the role": {Issuer: "hrss", Type: func() tx.RegisterCredentialType {
			c := *socialInsuranceType()
			c.ID = "medical_insurance"
			return c
		}()},
		"unknown issuer": {Issuer: "nobody", Type: *socialInsuranceType()},
		"bad claim": {Issuer: "hrss", Type: func() tx.RegisterCredentialType {
			c := *socialInsuranceType()
			c.Claims = []tx.ClaimSpec{{Name: "cnf", NameZH: "x", NameEN: "x"}}
			return c
		}()},
	} {
		t.Run(name, func(t *testing.T) {
			g := genesisOf(hrss)
			g.CredentialTypes = []ledger.GenesisCredentialType{gt}
			state, _ := tx.Marshal(g)
			_, err := memApp(t).InitChain(context.Background(), &abci.RequestInitChain{ChainId: testChainID, InitialHeight: 1, Time: genesisTime, AppStateBytes: state})
			if err == nil {
				t.Fatal("InitChain accepted the genesis")
			}
		})
	}
}
