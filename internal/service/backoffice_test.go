package service_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// keepRecord stores what the bureau's register holds of r's identity.
func (h *harness) keepRecord(t testing.TB, r *resident) {
	t.Helper()
	if err := h.desk.PutRecord(psb, r.wallet.DID, credential.TypeResidentIdentity,
		map[string]any{"family_name": familyName, "given_name": givenName, "registered_address": address}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) blocks() int {
	h.chain.mu.Lock()
	defer h.chain.mu.Unlock()
	return h.chain.submitted
}

// offered counts the transactions offered to the chain, refused ones too.
func (h *harness) offered() int {
	h.chain.mu.Lock()
	defer h.chain.mu.Unlock()
	return h.chain.offered
}

func (h *harness) logLen(t testing.TB, subject string) int {
	t.Helper()
	log, _, err := h.app.AccessLog(subject, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(log)
}

// TestBackOfficeRead: under a standing consent the social insurance bureau
// reads a pensioner's name from the public security bureau's register; the
// package is signed by the source's ledger key and names the access record,
// which committed before the package was made.
func TestBackOfficeRead(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "chen")
	a := h.applyPension(t, r)
	h.keepRecord(t, r)
	psn := r.psn(t, hrss)

	id := newRequestID(t)
	req := &service.ReadRequest{ID: id, Subject: psn, Service: service.Pension,
		Claims: []tx.ClaimRef{identityClaim("family_name"), identityClaim("given_name")}}
	pkg, err := h.desk.Read(context.Background(), hrss, psb, req)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}

	rec, _, err := h.app.AccessRecord(psn, id, 0)
	if err != nil {
		t.Fatalf("the read is not on the ledger: %v", err)
	}
	if rec.Outcome != tx.OutcomeAllowed || rec.Channel != tx.ChannelBackOffice || rec.Reader != hrss || rec.Source != psb ||
		rec.Recorder != psb || rec.Consent != a.Consent || !slices.Equal(rec.Claims, req.Claims) {
		t.Errorf("access record = %+v", rec)
	}

	source := h.authority(t, psb)
	j, claims, err := jws.ParseClaims(pkg, jws.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Verify(source.Key.Ed25519()); err != nil {
		t.Errorf("the package does not verify with %s's ledger key: %v", psb, err)
	}
	if err := j.Verify(h.authority(t, hrss).Key.Ed25519()); err == nil {
		t.Error("the package verifies with the reader's key")
	}
	if j.Header.Typ != service.PackageType || j.Header.Kid != credential.KeyID(source, 1) {
		t.Errorf("header = %+v", j.Header)
	}
	want := map[string]any{
		"iss": h.dids[psb], "aud": h.dids[hrss], "iat": float64(rec.At.Time.Unix()),
		"request": base64.RawURLEncoding.EncodeToString(id), "subject": psn, "service": service.Pension,
		"consent": a.Consent, "height": float64(rec.At.Height),
		"claims": map[string]any{"resident_identity.family_name": familyName, "resident_identity.given_name": givenName},
	}
	if !reflect.DeepEqual(claims, want) {
		t.Errorf("package claims:\n got %v\nwant %v", claims, want)
	}

	t.Run("OpenRelease", func(t *testing.T) {
		reader := h.authority(t, hrss)
		rel, err := service.OpenRelease(pkg, source, reader)
		if err != nil {
			t.Fatal(err)
		}
		if rel.Request != want["request"] || rel.Subject != psn || rel.Consent != a.Consent || rel.Claims["resident_identity.family_name"] != familyName {
			t.Errorf("OpenRelease = %+v", rel)
		}
		// Addressed to another reader, or claimed by another source.
		if _, err := service.OpenRelease(pkg, source, source); err == nil {
			t.Error("a package to hrss opened for psb")
		}
		if _, err := service.OpenRelease(pkg, reader, reader); err == nil {
			t.Error("a package signed by psb opened as hrss's")
		}
		// A changed byte in the payload.
		parts := strings.Split(pkg, ".")
		body, _ := base64.RawURLEncoding.DecodeString(parts[1])
		body = []byte(strings.Replace(string(body), familyName, familyName+"X", 1))
		forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(body) + "." + parts[2]
		if _, err := service.OpenRelease(forged, source, reader); err == nil || !strings.Contains(err.Error(), "signature") {
			t.Errorf("a changed package: %v, want a signature failure", err)
		}
	})

	t.Run("same request id again", func(t *testing.T) {
		before := h.logLen(t, psn)
		again, err := h.desk.Read(context.Background(), hrss, psb, req)
		if err != nil {
			t.Fatal(err)
		}
		if n := h.logLen(t, psn); n != before {
			t.Errorf("a repeated request added %d records", n-before)
		}
		_, c, err := jws.ParseClaims(again, jws.EdDSA)
		if err != nil || c["request"] != want["request"] || c["height"] != want["height"] {
			t.Errorf("the repeated request's package names %v at %v, want %v at %v (%v)", c["request"], c["height"], want["request"], want["height"], err)
		}
	})
}

// TestBackOfficeDenials: a read the consent does not allow is refused with
// its reason, and the refusal stands in the resident's access log.
func TestBackOfficeDenials(t *testing.T) {
	h := newHarness(t)

	allowed := h.pensioner(t, "huang")
	h.applyPension(t, allowed)
	h.keepRecord(t, allowed)

	// A one-time consent, granted straight to the ledger and not yet used.
	once := h.pensioner(t, "lin")
	h.keepRecord(t, once)
	oa := h.open(t, hrss, service.Pension)
	h.commit(t, h.approve(t, once, oa, service.Choice{Mode: tx.ModeOneTime, Typed: map[string]string{"bank_account": bankAccount}}).Grant)

	revoked := h.pensioner(t, "he")
	h.applyPension(t, revoked)
	h.keepRecord(t, revoked)
	raw, err := service.Revoke(revoked.secret, hrss, service.Pension, chainID, h.app.NextSeq(revoked.psn(t, hrss), 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.commit(t, raw)

	stranger, err := key.Generate()
	if err != nil {
		t.Fatal(err)
	}
	name := []tx.ClaimRef{identityClaim("family_name")}

	for _, tc := range []struct {
		name    string
		reader  string
		subject string
		claims  []tx.ClaimRef
		why     string
	}{
		{"no consent", hrss, pseudonym.FromKey(stranger.Public()).String(), name, ledger.DenyNoConsent},
		{"consent revoked", hrss, revoked.psn(t, hrss), name, ledger.DenyRevoked},
		{"claim outside the consent", hrss, allowed.psn(t, hrss), []tx.ClaimRef{identityClaim("ethnicity")}, ledger.DenyClaimNotAllowed},
		{"source does not issue the claim", hrss, allowed.psn(t, hrss), []tx.ClaimRef{socialClaim("insurance_number")}, ledger.DenySourceNotParty},
		{"one-time consent", hrss, once.psn(t, hrss), name, ledger.DenyNotStanding},
		{"consent given to another reader", hsb, allowed.psn(t, hrss), name, ledger.DenyWrongReader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.logLen(t, tc.subject)
			id := newRequestID(t)
			req := &service.ReadRequest{ID: id, Subject: tc.subject, Service: service.Pension, Claims: tc.claims}
			pkg, err := h.desk.Read(context.Background(), tc.reader, psb, req)
			var denied *service.Denied
			if !errors.As(err, &denied) || pkg != "" {
				t.Fatalf("Read = %q, %v; want *Denied %s", pkg, err, tc.why)
			}
			if denied.Reason != tc.why || denied.Record == nil || denied.Record.Reason != tc.why || !bytes.Equal(denied.Record.ID, id) {
				t.Errorf("denied %q with record %+v, want %q", denied.Reason, denied.Record, tc.why)
			}
			if en, _ := ledger.DenyReasonText(tc.why); err.Error() != "access denied: "+en {
				t.Errorf("error = %q", err)
			}
			log, _, err := h.app.AccessLog(tc.subject, 0)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(log, func(a ledger.Access) bool { return bytes.Equal(a.ID, id) })
			if i < 0 {
				t.Fatalf("the denial is not in the resident's access log: %+v", log)
			}
			if rec := log[i]; rec.Outcome != tx.OutcomeDenied || rec.Reason != tc.why || rec.Reader != tc.reader || rec.Source != psb ||
				rec.Channel != tx.ChannelBackOffice || !slices.Equal(rec.Claims, tc.claims) {
				t.Errorf("access record = %+v", rec)
			}
			if len(log) != before+1 {
				t.Errorf("the access log grew by %d, want 1", len(log)-before)
			}

			// The same request again leaves the log as it is.
			if _, err := h.desk.Read(context.Background(), tc.reader, psb, req); !errors.As(err, &denied) || denied.Reason != tc.why {
				t.Errorf("repeated Read = %v, want the same denial", err)
			}
			if n := h.logLen(t, tc.subject); n != before+1 {
				t.Errorf("after a repeated request the access log grew by %d, want 1", n-before)
			}
		})
	}

	// The one-time consent was only looked at, never used.
	if c, _, err := h.app.Consent(once.psn(t, hrss), service.Pension, 0); err != nil || c.Status != ledger.ConsentActive {
		t.Errorf("one-time consent after a denied read = %+v, %v; want active", c, err)
	}
}

// TestBackOfficeNotAvailable: what the register does not hold is not
// released, and as nothing was read nothing is recorded.
func TestBackOfficeNotAvailable(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "gao")
	h.applyPension(t, r)
	psn := r.psn(t, hrss)
	name := []tx.ClaimRef{identityClaim("family_name")}

	for _, tc := range []struct {
		name   string
		record map[string]any // nil: the register holds nothing of r
	}{
		{"no record of the resident", nil},
		{"record without the claim", map[string]any{"given_name": givenName}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.record != nil {
				if err := h.desk.PutRecord(psb, r.wallet.DID, credential.TypeResidentIdentity, tc.record); err != nil {
					t.Fatal(err)
				}
			}
			before, blocks := h.logLen(t, psn), h.blocks()
			id := newRequestID(t)
			pkg, err := h.desk.Read(context.Background(), hrss, psb, &service.ReadRequest{ID: id, Subject: psn, Service: service.Pension, Claims: name})
			if !errors.Is(err, service.ErrNotAvailable) || pkg != "" {
				t.Fatalf("Read = %q, %v; want ErrNotAvailable", pkg, err)
			}
			if n := h.logLen(t, psn); n != before || h.blocks() != blocks {
				t.Errorf("an unavailable read left %d records and %d transactions", n-before, h.blocks()-blocks)
			}
			if _, _, err := h.app.AccessRecord(psn, id, 0); !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("AccessRecord of an unavailable read = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestBackOfficeRequestRefusals: a malformed request is refused before the
// ledger is asked, and leaves no record. In particular nothing the ledger
// would refuse in a record_access transaction is offered to it: one such
// record would sink every other record batched with it.
func TestBackOfficeRequestRefusals(t *testing.T) {
	h := newHarness(t)
	r := h.pensioner(t, "luo")
	h.applyPension(t, r)
	h.keepRecord(t, r)
	psn := r.psn(t, hrss)
	good := func() service.ReadRequest {
		return service.ReadRequest{ID: newRequestID(t), Subject: psn, Service: service.Pension, Claims: []tx.ClaimRef{identityClaim("family_name")}}
	}
	for _, tc := range []struct {
		name           string
		reader, source string
		edit           func(*service.ReadRequest)
		want           error // errors.Is, when set
	}{
		{"source this node does not act for", hrss, utility, func(*service.ReadRequest) {}, service.ErrNotHere},
		{"short request id", hrss, psb, func(q *service.ReadRequest) { q.ID = q.ID[:15] }, nil},
		{"subject named by DID", hrss, psb, func(q *service.ReadRequest) { q.Subject = r.wallet.DID }, nil},
		{"no claims", hrss, psb, func(q *service.ReadRequest) { q.Claims = nil }, nil},
		{"claims out of order", hrss, psb, func(q *service.ReadRequest) {
			q.Claims = []tx.ClaimRef{identityClaim("given_name"), identityClaim("family_name")}
		}, nil},
		{"claim asked twice", hrss, psb, func(q *service.ReadRequest) {
			q.Claims = []tx.ClaimRef{identityClaim("family_name"), identityClaim("family_name")}
		}, nil},
		{"claim of an unknown type", hrss, psb, func(q *service.ReadRequest) { q.Claims = []tx.ClaimRef{claim("no_such_type", "x")} }, nil},
		{"unknown claim of a known type", hrss, psb, func(q *service.ReadRequest) { q.Claims = []tx.ClaimRef{identityClaim("shoe_size")} }, nil},
		{"unknown service", hrss, psb, func(q *service.ReadRequest) { q.Service = "no_such_service" }, nil},
		{"reader is the source", psb, psb, func(*service.ReadRequest) {}, nil},
		{"reader is no authority", "cc-nobody", psb, func(*service.ReadRequest) {}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := good()
			tc.edit(&q)
			before, offered := h.logLen(t, psn), h.offered()
			pkg, err := h.desk.Read(context.Background(), tc.reader, tc.source, &q)
			var denied *service.Denied
			switch {
			case err == nil || pkg != "":
				t.Fatalf("Read = %q, %v; want a refusal", pkg, err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("err = %v, want %v", err, tc.want)
			case errors.As(err, &denied):
				t.Errorf("a malformed request was judged: %v", err)
			}
			if h.logLen(t, psn) != before || h.offered() != offered {
				t.Error("a malformed request reached the ledger")
			}
		})
	}
}

// TestBackOfficeReadOfAWard: a consent a guardian gave is read under while
// the guardian's delegation stands, and refused once it has ended.
func TestBackOfficeReadOfAWard(t *testing.T) {
	h := newHarness(t)
	ward := h.newResident(t, "ward", 2020)
	h.identity(t, ward)
	h.keepRecord(t, ward)
	guardian := h.newResident(t, "guardian", 1988)
	h.delegate(t, guardian, ward, []string{"*"})
	a := h.open(t, hsb, service.MedicalEnrol)
	if _, err := h.desk.Submit(context.Background(), a.ID, h.approve(t, ward, a, medical(guardian))); err != nil {
		t.Fatal(err)
	}
	psn := ward.psn(t, hsb)
	read := func() (string, error) {
		return h.desk.Read(context.Background(), hsb, psb, &service.ReadRequest{ID: newRequestID(t), Subject: psn,
			Service: service.MedicalEnrol, Claims: []tx.ClaimRef{identityClaim("family_name")}})
	}
	if _, err := read(); err != nil {
		t.Fatalf("Read under the guardian's consent: %v", err)
	}

	dels, _, err := h.app.Delegations(ward.wallet.DID, 0)
	if err != nil || len(dels) != 1 {
		t.Fatalf("delegations = %+v, %v", dels, err)
	}
	h.as(t, psb, &tx.EndDelegation{Ward: ward.wallet.DID, ID: dels[0].ID})
	_, err = read()
	var denied *service.Denied
	if !errors.As(err, &denied) || denied.Reason != ledger.DenyNotGuardian || denied.Record.Outcome != tx.OutcomeDenied {
		t.Errorf("Read after the delegation ended = %v, want *Denied %s", err, ledger.DenyNotGuardian)
	}
}

func TestPutRecordRefusals(t *testing.T) {
	h := newHarness(t)
	r := h.newResident(t, "xu", 1970)
	stranger, _ := unregistered(t, "stranger")
	for _, tc := range []struct {
		name, authority, resident, typ string
		claims                         map[string]any
	}{
		{"authority this node does not act for", utility, r.wallet.DID, credential.TypeUtilityAccount, map[string]any{"account_number": "1"}},
		{"type of another issuer", hrss, r.wallet.DID, credential.TypeResidentIdentity, map[string]any{"family_name": familyName}},
		{"unregistered resident", psb, stranger.DID, credential.TypeResidentIdentity, map[string]any{"family_name": familyName}},
		{"claim the type does not have", psb, r.wallet.DID, credential.TypeResidentIdentity, map[string]any{"shoe_size": 42}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.desk.PutRecord(tc.authority, tc.resident, tc.typ, tc.claims); err == nil {
				t.Fatal("PutRecord accepted it")
			}
			if all, _ := h.store.List(""); len(all) != 0 {
				t.Errorf("a refused record left %d entries in the store", len(all))
			}
		})
	}
}
