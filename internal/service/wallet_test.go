package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
	"github.com/imi-city/imi/internal/wallet"
)

func TestPseudonymSecret(t *testing.T) {
	c := &wallet.Contents{}
	first, created, err := service.PseudonymSecret(c)
	if err != nil || !created || len(first) != pseudonym.SecretSize {
		t.Fatalf("first PseudonymSecret = %d bytes, created %v, %v; want a new %d-byte secret", len(first), created, err, pseudonym.SecretSize)
	}
	if _, ok := c.Extra[service.PseudonymSecretField]; !ok {
		t.Fatalf("the secret is not kept in the wallet: %v", c.Extra)
	}
	again, created, err := service.PseudonymSecret(c)
	if err != nil || created || !bytes.Equal(again, first) {
		t.Errorf("second PseudonymSecret created %v (%v); want the same secret, not created", created, err)
	}

	// As saved and opened again.
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var reopened wallet.Contents
	if err := json.Unmarshal(b, &reopened); err != nil {
		t.Fatal(err)
	}
	if s, created, err := service.PseudonymSecret(&reopened); err != nil || created || !bytes.Equal(s, first) {
		t.Errorf("after a save PseudonymSecret created %v (%v); want the same secret", created, err)
	}

	for name, raw := range map[string]string{
		"not base64":  `"!!"`,
		"too short":   `"AAAA"`,
		"not a value": `{}`,
	} {
		t.Run("damaged: "+name, func(t *testing.T) {
			c := &wallet.Contents{Extra: map[string]json.RawMessage{service.PseudonymSecretField: json.RawMessage(raw)}}
			if s, created, err := service.PseudonymSecret(c); err == nil || s != nil || created {
				t.Errorf("PseudonymSecret = %x, %v, %v; want an error", s, created, err)
			}
			if string(c.Extra[service.PseudonymSecretField]) != raw {
				t.Error("a damaged secret was overwritten")
			}
		})
	}
}

func TestPseudonyms(t *testing.T) {
	secret, err := pseudonym.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	authorities := []string{psb, hrss, hsb, utility}
	ks, err := service.Pseudonyms(secret, authorities)
	if err != nil {
		t.Fatal(err)
	}
	again, err := service.Pseudonyms(secret, authorities)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pseudonym.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	others, err := service.Pseudonyms(other, authorities)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, a := range authorities {
		p := pseudonym.FromKey(ks[a].Public()).String()
		if b, dup := seen[p]; dup {
			t.Errorf("the pseudonyms towards %s and %s are the same", a, b)
		}
		seen[p] = a
		if !ks[a].Public().Equal(again[a].Public()) {
			t.Errorf("the pseudonym towards %s changed between derivations", a)
		}
		if ks[a].Public().Equal(others[a].Public()) {
			t.Errorf("two wallets have the same pseudonym towards %s", a)
		}
	}
	if _, err := service.Pseudonyms(secret[:16], authorities); err == nil {
		t.Error("a short secret was accepted")
	}
	if _, err := service.Pseudonyms(secret, []string{""}); err == nil {
		t.Error("an empty authority was accepted")
	}
}

// TestHeld: expired and unreadable credentials are left out of what a form
// is filled from; the rest keep their wallet index.
func TestHeld(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "ma")
	now := h.now()
	identity, social := r.wallet.Credentials[0], r.wallet.Credentials[1]
	expiring := func(c wallet.Credential, at time.Time) wallet.Credential { c.ExpiresAt = at; return c }
	garbled := identity
	garbled.SDJWT = "not an sd-jwt"
	c := &wallet.Contents{DID: r.wallet.DID, Credentials: []wallet.Credential{
		identity,
		expiring(social, now), // expires this very instant
		expiring(identity, now.Add(-24*time.Hour)), // expired yesterday
		garbled,                       // unreadable
		expiring(social, time.Time{}), // no expiry recorded
		expiring(identity, now.Add(time.Nanosecond)), // still valid
	}}
	held := service.Held(c, now)
	var got []int
	for _, x := range held {
		got = append(got, x.Index)
	}
	if want := []int{0, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("Held kept indices %v, want %v", got, want)
	}
	if x := held[0]; x.Type != credential.TypeResidentIdentity || x.Issuer != psb ||
		x.Claims["family_name"] != familyName || x.Claims["age_over_60"] != true || x.Claims["resident_id_number"] != r.number.String() {
		t.Errorf("held identity = %+v", x)
	}
	if x := held[1]; x.Type != credential.TypeSocialInsurance || x.Issuer != hrss || x.Claims["insurance_number"] != siNumber {
		t.Errorf("held social insurance = %+v", x)
	}
}

func TestSensitivity(t *testing.T) {
	h := newHarness(t)
	types, _, err := h.app.CredentialTypes(0)
	if err != nil {
		t.Fatal(err)
	}
	sensitive := service.Sensitivity(types)
	for _, tc := range []struct {
		c    tx.ClaimRef
		want bool
	}{
		{identityClaim("family_name"), false},
		{identityClaim("resident_id_number"), true},
		{socialClaim("contribution_years"), true},
		{identityClaim("no_such_claim"), true},
		{claim("no_such_type", "family_name"), true},
	} {
		if got := sensitive(tc.c); got != tc.want {
			t.Errorf("sensitive(%s) = %v, want %v", tc.c, got, tc.want)
		}
	}
}

// TestApproveOmitsOptional: an optional item the resident leaves out is
// neither consented to nor presented, and the desk receives the rest; a
// required one cannot be left out.
func TestApproveOmitsOptional(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "zhu")
	a := h.open(t, hrss, service.Pension)
	ch := standing()
	ch.Omit = []string{"contribution_years", "family_name"}
	sub := h.approve(t, r, a, ch)
	g := grantOf(t, sub)
	if slices.Contains(g.Claims, socialClaim("contribution_years")) || slices.Contains(g.Sensitive, socialClaim("contribution_years")) {
		t.Errorf("the omitted optional item is in the grant: %v", g.Claims)
	}
	if !slices.Contains(g.Claims, identityClaim("family_name")) {
		t.Errorf("a required item was left out of the grant: %v", g.Claims)
	}
	got, err := h.desk.Submit(context.Background(), a.ID, sub)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got.Values {
		if v.Name == "contribution_years" {
			t.Errorf("the omitted item was received: %+v", v)
		}
	}
	if len(got.Values) != 7 {
		t.Errorf("received %d values, want 7", len(got.Values))
	}
}

func TestApproveRefusals(t *testing.T) {
	h := newHarness(t)
	r := h.newResident(t, "yang", 1956)
	h.identity(t, r) // no social insurance credential
	a := h.open(t, hrss, service.Pension)
	svc := h.service(t, service.Pension)
	types, _, err := h.app.CredentialTypes(0)
	if err != nil {
		t.Fatal(err)
	}
	form := consent.Prefill(&svc.RegisterService, svc.Version, service.Held(r.wallet, h.now()), service.Sensitivity(types))
	_, err = service.Approve(r.wallet, r.secret, a, svc, form, h.kems(t), chainID, standing(), h.now())
	if err == nil || !strings.Contains(err.Error(), socialClaim("insurance_number").String()) {
		t.Errorf("Approve with a missing required item = %v; want it named", err)
	}

	full := h.pensioner(t, "yang 2")
	form = consent.Prefill(&svc.RegisterService, svc.Version, service.Held(full.wallet, h.now()), service.Sensitivity(types))
	kems := h.kems(t)
	delete(kems, psb)
	if _, err := service.Approve(full.wallet, full.secret, a, svc, form, kems, chainID, standing(), h.now()); err == nil ||
		!strings.Contains(err.Error(), psb) {
		t.Errorf("Approve without a source's KEM key = %v; want it named", err)
	}
}
