package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/sdjwt"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

func claim(typ, name string) tx.ClaimRef { return tx.ClaimRef{Type: typ, Claim: name} }

func identityClaim(name string) tx.ClaimRef { return claim(credential.TypeResidentIdentity, name) }

func socialClaim(name string) tx.ClaimRef { return claim(credential.TypeSocialInsurance, name) }

// TestApplicationByPresentation is the whole journey: the bureau opens a
// pension application, the resident's wallet fills the form from two
// credentials and approves a standing consent, and the desk receives the
// verified values, with the consent and the access on the ledger under the
// pseudonym the wallet derives.
func TestApplicationByPresentation(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "wang")

	a := h.open(t, hrss, service.Pension)
	if a.Status != service.StatusOpen || a.Service != service.Pension || a.Version != 1 || a.Authority != hrss ||
		a.Audience != h.dids[hrss] || a.Nonce == "" || a.ID == a.Nonce || !a.Expires.Equal(a.Created.Add(service.ApplicationLife)) {
		t.Fatalf("opened application = %+v", a)
	}

	sub := h.approve(t, r, a, standing())
	if len(sub.Presentations) != 2 || !reflect.DeepEqual(sub.SelfDeclared, map[string]string{"bank_account": bankAccount}) {
		t.Fatalf("submission has %d presentations and typed %v; want 2 and the bank account", len(sub.Presentations), sub.SelfDeclared)
	}
	got, err := h.desk.Submit(context.Background(), a.ID, sub)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}

	psn := r.psn(t, hrss)
	want := []service.FieldValue{
		{Name: "family_name", Claim: identityClaim("family_name"), Value: familyName, Source: psb, Verified: true},
		{Name: "given_name", Claim: identityClaim("given_name"), Value: givenName, Source: psb, Verified: true},
		{Name: "id_number", Claim: identityClaim("resident_id_number"), Value: r.number.String(), Source: psb, Verified: true},
		{Name: "age_over_60", Claim: identityClaim("age_over_60"), Value: true, Source: psb, Verified: true},
		{Name: "address", Claim: identityClaim("registered_address"), Value: address, Source: psb, Verified: true},
		{Name: "insurance_number", Claim: socialClaim("insurance_number"), Value: siNumber, Source: hrss, Verified: true},
		{Name: "contribution_years", Claim: socialClaim("contribution_years"), Value: float64(32), Source: hrss, Verified: true},
		{Name: "bank_account", Value: bankAccount},
	}
	stored, err := h.desk.Get(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	for what, app := range map[string]*service.Application{"returned": got, "stored": stored} {
		if !reflect.DeepEqual(app.Values, want) {
			t.Errorf("%s values:\n got %+v\nwant %+v", what, app.Values, want)
		}
		if app.ID != a.ID || app.Status != service.StatusReceived || app.Subject != psn || app.Guardian ||
			app.Received == nil || app.Height == 0 || len(app.AccessID) != 16 {
			t.Errorf("%s application = %+v", what, app)
		}
	}

	c, _, err := h.app.Consent(psn, service.Pension, 0)
	if err != nil {
		t.Fatalf("the consent is not on the ledger under %s: %v", psn, err)
	}
	wantClaims := []tx.ClaimRef{
		identityClaim("age_over_60"), identityClaim("family_name"), identityClaim("given_name"),
		identityClaim("registered_address"), identityClaim("resident_id_number"),
		socialClaim("contribution_years"), socialClaim("insurance_number"),
	}
	if c.ID != got.Consent || c.Status != ledger.ConsentActive || c.Mode != tx.ModeStanding || c.Authority != hrss ||
		c.ServiceVersion != 1 || c.ByGuardian != "" || !slices.Equal(c.Claims, wantClaims) ||
		!slices.Equal(c.Sensitive, []tx.ClaimRef{identityClaim("resident_id_number"), socialClaim("contribution_years"), socialClaim("insurance_number")}) ||
		!slices.Equal(c.Sources, []string{hrss, psb}) || !c.Until.Equal(c.Granted.Time.Add(365*24*time.Hour)) {
		t.Errorf("consent = %+v", c)
	}

	rec, _, err := h.app.AccessRecord(psn, got.AccessID, 0)
	if err != nil {
		t.Fatalf("the access record is not on the ledger: %v", err)
	}
	if rec.Outcome != tx.OutcomeAllowed || rec.Reason != "" || rec.Channel != tx.ChannelPresentation || rec.Reader != hrss ||
		rec.Source != "" || rec.Recorder != hrss || rec.Service != service.Pension || rec.Consent != c.ID ||
		!slices.Equal(rec.Claims, wantClaims) || rec.At.Height != got.Height {
		t.Errorf("access record = %+v", rec)
	}
	if log, _, _ := h.app.AccessLog(psn, 0); len(log) != 1 {
		t.Errorf("access log has %d records, want 1", len(log))
	}

	// The chain knows the resident only by a pseudonym, which differs from
	// the one towards the bureau the identity came from.
	if psn == r.psn(t, psb) {
		t.Error("the pseudonyms towards two authorities are the same")
	}
	for what, v := range map[string]any{"consent": c, "access record": rec} {
		if b, _ := json.Marshal(v); strings.Contains(string(b), r.wallet.DID) || strings.Contains(string(b), familyName) {
			t.Errorf("the %s on the ledger names the resident: %s", what, b)
		}
	}

	rcv, err := h.desk.Received(hrss)
	if err != nil {
		t.Fatal(err)
	}
	if len(rcv) != 1 || rcv[0].ID != a.ID || !reflect.DeepEqual(rcv[0].Values, want) {
		t.Errorf("Received(%s) = %+v", hrss, rcv)
	}
	if rcv, err := h.desk.Received(psb); err != nil || len(rcv) != 0 {
		t.Errorf("Received(%s) = %+v, %v; want none", psb, rcv, err)
	}
	if _, err := h.desk.Received(utility); !errors.Is(err, service.ErrNotHere) {
		t.Errorf("Received(%s) err = %v, want ErrNotHere", utility, err)
	}
}

func TestOpenRefusals(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name, authority, service string
		want                     error  // errors.Is
		words                    string // or the error's words
	}{
		{"authority this node does not act for", utility, service.UtilityAccount, service.ErrNotHere, ""},
		{"another authority's service", hrss, service.HouseholdCert, nil, "the service " + service.HouseholdCert + " belongs to " + psb},
		{"unknown service", hrss, "no_such_service", nil, `no service "no_such_service"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := h.desk.Open(tc.authority, tc.service)
			switch {
			case a != nil || err == nil:
				t.Fatalf("Open = %+v, %v; want a refusal", a, err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("err = %v, want %v", err, tc.want)
			case tc.want == nil && err.Error() != tc.words:
				t.Errorf("err = %q, want %q", err, tc.words)
			}
			if all, err := h.store.List(""); err != nil || len(all) != 0 {
				t.Errorf("the store holds %d entries after a refused Open (%v)", len(all), err)
			}
		})
	}
}

// TestSubmitRefusals: a submission that does not match its application, or
// whose grant, boxes or presentations do not check, is refused and leaves
// nothing on the ledger or in the store (the last case is refused by the
// ledger's CheckTx), and the application stays open for a good submission.
func TestSubmitRefusals(t *testing.T) {
	h := newHarness(t)
	identityOnly := []string{"age_over_60", "family_name", "given_name", "registered_address", "resident_id_number"}

	for _, tc := range []struct {
		name string
		edit func(t *testing.T, r *resident, a *service.Application, sub *service.Submission)
		// en is the rejection's words; "" means a ledger deny reason,
		// given in detail, in the ledger's words.
		en string
		// detail is the rejection's detail, if the test pins it.
		detail string
	}{
		{"malformed grant", func(t *testing.T, r *resident, _ *service.Application, sub *service.Submission) {
			sub.Grant = []byte(`{}`)
		}, "the consent is malformed", ""},
		{"grant for another service", func(t *testing.T, r *resident, _ *service.Application, sub *service.Submission) {
			regrant(t, sub, r.psn(t, hrss), r.psnKey(t, hrss), func(g *tx.GrantConsent) { g.Service = service.MedicalEnrol })
		}, "the consent is not for this application", "service " + service.Pension + " version 1"},
		{"grant for another version", func(t *testing.T, r *resident, _ *service.Application, sub *service.Submission) {
			regrant(t, sub, r.psn(t, hrss), r.psnKey(t, hrss), func(g *tx.GrantConsent) { g.ServiceVersion = 2 })
		}, "the consent is not for this application", "service " + service.Pension + " version 1"},
		{"grant signed by the DID", func(t *testing.T, r *resident, _ *service.Application, sub *service.Submission) {
			regrant(t, sub, r.wallet.DID, r.key, func(*tx.GrantConsent) {})
		}, "the consent must be signed under your pseudonym", ""},
		{"box sealed to another authority", func(t *testing.T, r *resident, _ *service.Application, sub *service.Submission) {
			regrant(t, sub, r.psn(t, hrss), r.psnKey(t, hrss), func(g *tx.GrantConsent) {
				i := slices.IndexFunc(g.Subjects, func(s tx.SealedSubject) bool { return s.Authority == hrss })
				j := slices.IndexFunc(g.Subjects, func(s tx.SealedSubject) bool { return s.Authority == psb })
				g.Subjects[i].Box = g.Subjects[j].Box
			})
		}, "", ledger.DenySubjectUnknown},
		{"box sealed for another pseudonym", func(t *testing.T, r *resident, _ *service.Application, sub *service.Submission) {
			ctx := consent.Context{ChainID: chainID, Pseudonym: r.psn(t, psb), Service: service.Pension, Authority: hrss}
			box, err := consent.Seal(h.authority(t, hrss).KEMKey, ctx, consent.NewSubject(ctx, r.wallet.DID, r.key, "", zeroKey))
			if err != nil {
				t.Fatal(err)
			}
			regrant(t, sub, r.psn(t, hrss), r.psnKey(t, hrss), func(g *tx.GrantConsent) {
				i := slices.IndexFunc(g.Subjects, func(s tx.SealedSubject) bool { return s.Authority == hrss })
				g.Subjects[i].Box = box
			})
		}, "", ledger.DenySubjectUnknown},
		{"no box for the service's authority", func(t *testing.T, r *resident, _ *service.Application, sub *service.Submission) {
			regrant(t, sub, r.psn(t, hrss), r.psnKey(t, hrss), func(g *tx.GrantConsent) {
				g.Subjects = slices.DeleteFunc(g.Subjects, func(s tx.SealedSubject) bool { return s.Authority == hrss })
			})
		}, "", ledger.DenySubjectUnknown},
		{"presentations for another application", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			other := h.open(t, hrss, service.Pension)
			sub.Presentations = h.approve(t, r, other, standing()).Presentations
		}, "a credential could not be accepted: the presentation was made for another request", "presentation 0: invalid " + sdjwt.ReasonNonceMismatch},
		{"presentation for another authority", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			sub.Presentations[0] = h.present(t, r, 0, h.dids[hsb], a.Nonce, identityOnly...)
		}, "a credential could not be accepted: the presentation was made for another service", "presentation 0: invalid " + sdjwt.ReasonAudMismatch},
		{"not a presentation", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			sub.Presentations[1] = "not-an-sd-jwt"
		}, "a credential could not be accepted: the presentation is not well-formed", "presentation 1: invalid " + sdjwt.ReasonMalformed},
		{"credentials bound to another resident's key", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			// Mallory holds this resident's credentials and key, and seals
			// her own DID into the grant: the presentations verify, but
			// their cnf key is not the sealed DID's.
			m := h.newResident(t, "mallory-"+r.name, 1950)
			ctx := consent.Context{ChainID: chainID, Pseudonym: r.psn(t, hrss), Service: service.Pension, Authority: hrss}
			box, err := consent.Seal(h.authority(t, hrss).KEMKey, ctx, consent.NewSubject(ctx, m.wallet.DID, m.key, "", zeroKey))
			if err != nil {
				t.Fatal(err)
			}
			regrant(t, sub, r.psn(t, hrss), r.psnKey(t, hrss), func(g *tx.GrantConsent) {
				i := slices.IndexFunc(g.Subjects, func(s tx.SealedSubject) bool { return s.Authority == hrss })
				g.Subjects[i].Box = box
			})
		}, "a credential was issued to another key than yours; ask its issuer to issue it again to your current key", "presentation 0"},
		{"presentation discloses a claim not consented", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			sub.Presentations[0] = h.present(t, r, 0, a.Audience, a.Nonce, append(identityOnly, "sex")...)
		}, "a credential disclosed more than you consented to", identityClaim("sex").String()},
		{"optional claim presented but left out of the grant", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			regrant(t, sub, r.psn(t, hrss), r.psnKey(t, hrss), func(g *tx.GrantConsent) {
				g.Claims = slices.DeleteFunc(g.Claims, func(c tx.ClaimRef) bool { return c == socialClaim("contribution_years") })
				g.Sensitive = slices.DeleteFunc(g.Sensitive, func(c tx.ClaimRef) bool { return c == socialClaim("contribution_years") })
			})
		}, "a credential disclosed more than you consented to", socialClaim("contribution_years").String()},
		{"consented claim not presented", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			sub.Presentations = sub.Presentations[:1]
		}, "a consented item was not presented", socialClaim("insurance_number").String()},
		{"consented claim typed in instead", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			sub.Presentations = sub.Presentations[:1]
			sub.SelfDeclared["insurance_number"] = siNumber
		}, "an item you consented to share verified was typed in instead", "insurance_number"},
		{"consented claim typed in besides its presentation", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			sub.SelfDeclared["family_name"] = "李"
		}, "an item you consented to share verified was typed in instead", "family_name"},
		{"too many typed-in fields", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
				sub.SelfDeclared["x"+n] = n
			}
		}, "too many typed-in fields", ""},
		{"typed-in field not on the form", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			sub.SelfDeclared["shoe_size"] = "42"
		}, "a typed-in field is not on the form", "shoe_size"},
		{"typed-in value too long", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			sub.SelfDeclared["bank_account"] = strings.Repeat("6", 257)
		}, "a typed-in value is too long", "bank_account"},
		{"consent mode the service does not offer", func(t *testing.T, r *resident, a *service.Application, sub *service.Submission) {
			regrant(t, sub, r.psn(t, hrss), r.psnKey(t, hrss), func(g *tx.GrantConsent) { g.Mode, g.Days = "forever", 0 })
		}, ledger.CodeInvalidField.Message(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.pensioner(t, tc.name)
			a := h.open(t, hrss, service.Pension)
			sub := h.approve(t, r, a, standing())
			tc.edit(t, r, a, sub)
			got, err := h.desk.Submit(context.Background(), a.ID, sub)
			if got != nil {
				t.Errorf("Submit returned %+v with its refusal", got)
			}
			if tc.en == "" {
				wantDenyRejection(t, err, tc.detail)
			} else {
				wantRejection(t, err, tc.en, tc.detail)
			}
			h.nothingStored(t, a, r.psn(t, hrss))

			// The application stays open, and the resident can still
			// apply with what the wallet makes.
			got, err = h.desk.Submit(context.Background(), a.ID, h.approve(t, r, a, standing()))
			if err != nil || got.Status != service.StatusReceived {
				t.Errorf("Submit after the refusal = %+v, %v", got, err)
			}
		})
	}
}

// TestSubmitRevokedCredential: a credential its issuer revoked on the ledger
// is refused although its signature still verifies.
func TestSubmitRevokedCredential(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "zhao")
	h.as(t, hrss, &tx.Revoke{StatusRef: r.status[1]})
	a := h.open(t, hrss, service.Pension)
	_, err := h.desk.Submit(context.Background(), a.ID, h.approve(t, r, a, standing()))
	wantRejection(t, err, "a credential could not be accepted: the issuer has revoked this credential", "presentation 1: revoked ")
	h.nothingStored(t, a, r.psn(t, hrss))
}

// TestSubmitAfterGrantCommitted: a submission sent again after its grant
// reached the ledger (but, say, its access record did not) is taken from the
// record on, not refused as a replay of its own grant.
func TestSubmitAfterGrantCommitted(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "qian")
	a := h.open(t, hrss, service.Pension)
	sub := h.approve(t, r, a, standing())
	h.commit(t, sub.Grant)
	got, err := h.desk.Submit(context.Background(), a.ID, sub)
	if err != nil || got.Status != service.StatusReceived {
		t.Fatalf("Submit after the grant committed = %+v, %v", got, err)
	}
	log, _, err := h.app.AccessLog(r.psn(t, hrss), 0)
	if err != nil || len(log) != 1 || log[0].Outcome != tx.OutcomeAllowed {
		t.Errorf("access log = %+v, %v; want one allowed record", log, err)
	}
}

// TestSubmitOnce: an application takes one submission, however many arrive.
func TestSubmitOnce(t *testing.T) {
	h := newHarness(t)

	t.Run("one after the other", func(t *testing.T) {
		r := h.pensioner(t, "sun")
		a := h.open(t, hrss, service.Pension)
		sub := h.approve(t, r, a, standing())
		if _, err := h.desk.Submit(context.Background(), a.ID, sub); err != nil {
			t.Fatal(err)
		}
		for _, again := range []*service.Submission{sub, h.approve(t, r, a, standing())} {
			if got, err := h.desk.Submit(context.Background(), a.ID, again); !errors.Is(err, service.ErrClosed) || got != nil {
				t.Errorf("second Submit = %+v, %v; want ErrClosed", got, err)
			}
		}
		if err := h.desk.Decline(a.ID); !errors.Is(err, service.ErrClosed) {
			t.Errorf("Decline of a received application = %v, want ErrClosed", err)
		}
		if log, _, _ := h.app.AccessLog(r.psn(t, hrss), 0); len(log) != 1 {
			t.Errorf("access log has %d records, want 1", len(log))
		}
	})

	t.Run("at the same time", func(t *testing.T) {
		r := h.pensioner(t, "zhou")
		a := h.open(t, hrss, service.Pension)
		sub := h.approve(t, r, a, standing())
		const n = 4
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				_, errs[i] = h.desk.Submit(context.Background(), a.ID, sub)
			})
		}
		close(start)
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, service.ErrClosed):
				t.Errorf("a concurrent Submit failed with %v, want ErrClosed", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d of %d concurrent submissions succeeded, want exactly 1", ok, n)
		}
		if log, _, _ := h.app.AccessLog(r.psn(t, hrss), 0); len(log) != 1 {
			t.Errorf("access log has %d records, want 1", len(log))
		}
		rcv, _ := h.desk.Received(hrss)
		if i := slices.IndexFunc(rcv, func(x service.Application) bool { return x.ID == a.ID }); i < 0 {
			t.Errorf("the application is not among those received")
		}
	})
}

// TestExpiredApplication: past its deadline an application is gone, and a
// late submission leaves nothing behind.
func TestExpiredApplication(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "qian")
	a := h.open(t, hrss, service.Pension)
	sub := h.approve(t, r, a, standing())

	h.skew.Store(int64(service.ApplicationLife - time.Second))
	if _, err := h.desk.Get(a.ID); err != nil {
		t.Fatalf("a second before its deadline Get = %v", err)
	}
	h.skew.Store(int64(service.ApplicationLife))
	if got, err := h.desk.Submit(context.Background(), a.ID, sub); !errors.Is(err, service.ErrNoApplication) || got != nil {
		t.Errorf("Submit after the deadline = %+v, %v; want ErrNoApplication", got, err)
	}
	h.skew.Store(0)
	if _, err := h.desk.Get(a.ID); !errors.Is(err, service.ErrNoApplication) {
		t.Errorf("Get of an expired application = %v, want ErrNoApplication", err)
	}
	psn := r.psn(t, hrss)
	if _, _, err := h.app.Consent(psn, service.Pension, 0); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("consent after a late submission: %v, want none", err)
	}
	if all, _ := h.store.List(""); len(all) != 0 {
		t.Errorf("the store still holds %d entries", len(all))
	}
}

func TestDecline(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "wu")
	a := h.open(t, hrss, service.Pension)
	sub := h.approve(t, r, a, standing())
	if err := h.desk.Decline(a.ID); err != nil {
		t.Fatalf("Decline = %v", err)
	}
	if got, err := h.desk.Submit(context.Background(), a.ID, sub); !errors.Is(err, service.ErrNoApplication) || got != nil {
		t.Errorf("Submit after Decline = %+v, %v; want ErrNoApplication", got, err)
	}
	for what, err := range map[string]error{"Get": second(h.desk.Get(a.ID)), "Decline": h.desk.Decline(a.ID)} {
		if !errors.Is(err, service.ErrNoApplication) {
			t.Errorf("%s of a declined application = %v, want ErrNoApplication", what, err)
		}
	}
	if all, _ := h.store.List(""); len(all) != 0 {
		t.Errorf("a declined application left %d entries in the store", len(all))
	}
	if n := h.app.NextSeq(r.psn(t, hrss), 0); n != 0 {
		t.Errorf("the pseudonym has %d transactions after a decline", n)
	}
}

func second[T any](_ T, err error) error { return err }

// TestGuardianConsent: a ward whose delegation needs a guardian's consent is
// refused alone and received with the guardian, and the ledger marks the
// consent as the guardian's.
func TestGuardianConsent(t *testing.T) {
	h := newHarness(t)
	ward := h.newResident(t, "ward", 2020)
	h.identity(t, ward)
	guardian := h.newResident(t, "guardian", 1988)
	h.delegate(t, guardian, ward, []string{service.MedicalEnrol})
	psn := ward.psn(t, hsb)

	a := h.open(t, hsb, service.MedicalEnrol)
	t.Run("ward alone", func(t *testing.T) {
		_, err := h.desk.Submit(context.Background(), a.ID, h.approve(t, ward, a, medical(nil)))
		wantDenyRejection(t, err, ledger.DenyNotGuardian)
		h.nothingStored(t, a, psn)
	})
	t.Run("with the guardian", func(t *testing.T) {
		got, err := h.desk.Submit(context.Background(), a.ID, h.approve(t, ward, a, medical(guardian)))
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		if !got.Guardian || got.Subject != psn || got.Status != service.StatusReceived {
			t.Errorf("application = %+v", got)
		}
		c, _, err := h.app.Consent(psn, service.MedicalEnrol, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := guardian.psn(t, hsb); c.ByGuardian != want || c.ID != got.Consent {
			t.Errorf("consent by guardian %q (id %s), want %q (id %s)", c.ByGuardian, c.ID, want, got.Consent)
		}
		rec, _, err := h.app.AccessRecord(psn, got.AccessID, 0)
		if err != nil || rec.ByGuardian != c.ByGuardian || rec.Outcome != tx.OutcomeAllowed {
			t.Errorf("access record = %+v, %v", rec, err)
		}
	})
}

// TestGuardianRefusals: a guardian acts only under a delegation in force that
// covers the service.
func TestGuardianRefusals(t *testing.T) {
	h := newHarness(t)
	for i, tc := range []struct {
		name string
		// setup records what the registrar did for ward; the guardian who
		// acts is acting.
		setup func(t *testing.T, ward, acting *resident)
	}{
		{"no delegation", func(t *testing.T, ward, acting *resident) {}},
		{"delegation ended", func(t *testing.T, ward, acting *resident) {
			h.delegate(t, acting, ward, []string{"*"})
			dels, _, err := h.app.Delegations(ward.wallet.DID, 0)
			if err != nil || len(dels) != 1 {
				t.Fatalf("delegations = %+v, %v", dels, err)
			}
			h.as(t, psb, &tx.EndDelegation{Ward: ward.wallet.DID, ID: dels[0].ID})
		}},
		{"scope does not cover the service", func(t *testing.T, ward, acting *resident) {
			h.delegate(t, acting, ward, []string{service.Pension})
		}},
		{"delegation to another guardian", func(t *testing.T, ward, acting *resident) {
			other := h.newResident(t, "other guardian "+ward.name, 1980)
			h.delegate(t, other, ward, []string{"*"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ward := h.newResident(t, "ward "+string(rune('a'+i)), 2019)
			h.identity(t, ward)
			acting := h.newResident(t, "guardian "+string(rune('a'+i)), 1979)
			tc.setup(t, ward, acting)
			a := h.open(t, hsb, service.MedicalEnrol)
			_, err := h.desk.Submit(context.Background(), a.ID, h.approve(t, ward, a, medical(acting)))
			wantDenyRejection(t, err, ledger.DenyNotGuardian)
			h.nothingStored(t, a, ward.psn(t, hsb))
		})
	}
	t.Run("guardian not registered", func(t *testing.T) {
		ward := h.newResident(t, "ward z", 2019)
		h.identity(t, ward)
		acting := h.newResident(t, "guardian z", 1979)
		h.delegate(t, acting, ward, []string{"*"})
		// The wallet of someone the registrar never saw.
		stranger := *acting
		stranger.wallet, stranger.key = unregistered(t, "stranger")
		a := h.open(t, hsb, service.MedicalEnrol)
		_, err := h.desk.Submit(context.Background(), a.ID, h.approve(t, ward, a, medical(&stranger)))
		wantDenyRejection(t, err, ledger.DenyNotGuardian)
		h.nothingStored(t, a, ward.psn(t, hsb))
	})
}

// TestExpiredApplicationsAreSwept: open applications nobody answered are
// removed after their deadline by a later Open, without a reader asking for
// them; received and still-open ones stay.
func TestExpiredApplicationsAreSwept(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "chen")
	received := h.applyPension(t, r)
	var stale []*service.Application
	for i := 0; i < 3; i++ {
		stale = append(stale, h.open(t, hrss, service.Pension))
	}
	if err := h.desk.Decline(stale[2].ID); err != nil {
		t.Fatal(err)
	}
	count := func(prefix string) int {
		vs, err := h.store.List(prefix)
		if err != nil {
			t.Fatal(err)
		}
		return len(vs)
	}
	if got := count("appopen/"); got != 2 {
		t.Fatalf("%d open applications indexed, want 2", got)
	}
	h.skew.Store(int64(service.ApplicationLife + 2*time.Minute))
	defer h.skew.Store(0)
	fresh := h.open(t, hrss, service.Pension)
	if got := count("appopen/"); got != 1 {
		t.Errorf("%d open applications indexed after the sweep, want 1 (the fresh one)", got)
	}
	if got := count("app/"); got != 2 {
		t.Errorf("%d applications stored after the sweep, want 2 (received and fresh)", got)
	}
	for _, id := range []string{received.ID, fresh.ID} {
		if _, err := h.desk.Get(id); err != nil {
			t.Errorf("application %s is gone: %v", id, err)
		}
	}
}
