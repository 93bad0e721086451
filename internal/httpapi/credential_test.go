package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/sdjwt"
	"github.com/imi-city/imi/internal/statuslist"
	"github.com/imi-city/imi/internal/tsinterop"
	"github.com/imi-city/imi/internal/tx"
)

// credFixture is a node with a registrar and the social insurance bureau,
// which publishes its type at genesis and whose key the node holds.
type credFixture struct {
	*fixture
	hrss    key.Private
	hrssDID string
	hrssSeq uint64
	// holder is a registered resident.
	holder    key.Private
	holderDID string
}

func newCredFixture(t testing.TB) *credFixture {
	t.Helper()
	reg, _ := key.Generate()
	hrss, _ := key.Generate()
	g := ledger.Genesis{DistrictZH: "禅城区", DistrictEN: "Chancheng", Authorities: []tx.AuthoritySpec{
		{ID: "cc-psb", NameZH: "公安", NameEN: "PSB", Key: reg.Public(), Roles: []string{"registrar"}, ValidatorKey: bytes.Repeat([]byte{7}, 32), Power: 10},
		{ID: "cc-hrss", NameZH: "人社", NameEN: "HRSS", Key: hrss.Public(), Roles: []string{"issuer:social_insurance"}, Endpoint: "https://hrss.example"},
	}}
	for _, gt := range credential.DemoTypes("cc-psb", "cc-hrss", "cc-hsb", "cc-utility") {
		if gt.Issuer == "cc-hrss" {
			g.CredentialTypes = append(g.CredentialTypes, gt)
		}
	}
	f := &credFixture{fixture: newFixtureWith(t, reg, g, map[string]key.Private{"cc-hrss": hrss}), hrss: hrss, hrssDID: did.FromKey(hrss.Public()).String()}
	f.chain.mu.Lock()
	f.chain.step = 10 * time.Millisecond // keep block time close to the test's pace
	f.chain.mu.Unlock()
	raw, d := f.registration(t, 1)
	if resp, body := do(t, "POST", f.srv.URL+"/v1/txs", raw); resp.StatusCode != http.StatusOK {
		t.Fatalf("registration: %d %s", resp.StatusCode, body)
	}
	f.holderDID = d
	return f
}

// submitHRSS signs body as the bureau and waits for its block.
func (f *credFixture) submitHRSS(t testing.TB, body tx.Body) (*http.Response, []byte) {
	t.Helper()
	x, err := tx.New(chainID, f.hrssDID, 0, f.hrssSeq, body)
	if err != nil {
		t.Fatal(err)
	}
	x.Sign(f.hrss)
	resp, b := do(t, "POST", f.srv.URL+"/v1/txs", x.Encode())
	if resp.StatusCode == http.StatusOK {
		f.hrssSeq++
	}
	return resp, b
}

// issue issues a social insurance credential to a fresh resident key.
func (f *credFixture) issue(t testing.TB) (*credential.Issued, key.Private) {
	t.Helper()
	holder, _ := key.Generate()
	var au ledger.Authority
	if _, b := do(t, "GET", f.srv.URL+"/v1/authorities/cc-hrss", nil); json.Unmarshal(b, &au) != nil {
		t.Fatalf("authority: %s", b)
	}
	var ct ledger.CredentialType
	if _, b := do(t, "GET", f.srv.URL+"/v1/credential-types/social_insurance", nil); json.Unmarshal(b, &ct) != nil {
		t.Fatalf("type: %s", b)
	}
	is := &credential.Issuer{
		Authority: &au, Key: f.hrss, Type: &ct, Rand: rand.Reader,
		Now: func() time.Time { return f.chain.Status().LatestTime },
		Fill: func(context.Context) ([]uint64, error) {
			var r StatusFillResponse
			_, b := do(t, "GET", f.srv.URL+"/v1/status-lists/cc-hrss", nil)
			return r.Fill, json.Unmarshal(b, &r)
		},
		Reserve: func(_ context.Context, list, idx uint32) error {
			resp, b := f.submitHRSS(t, &tx.ReserveStatus{Type: ct.ID, List: list, Indices: []uint32{idx}})
			if resp.StatusCode != http.StatusOK {
				if strings.Contains(string(b), "status_index_taken") {
					return credential.ErrIndexTaken
				}
				return fmt.Errorf("reserve: %d %s", resp.StatusCode, b)
			}
			return nil
		},
	}
	iss, err := is.Issue(context.Background(), credential.Subject{DID: f.holderDID, Key: holder.Public()},
		map[string]any{"insurance_number": "440604199003070014", "pension_status": "contributing", "contribution_years": 12}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return iss, holder
}

func (f *credFixture) present(t testing.TB, iss *credential.Issued, holder key.Private, nonce string, claims ...string) string {
	t.Helper()
	p, err := sdjwt.Present(iss.SDJWT, claims)
	if err != nil {
		t.Fatal(err)
	}
	p, err = sdjwt.AddKeyBinding(p, credential.Signer(holder), "urn:imi:service:pension", nonce, f.chain.Status().LatestTime)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *credFixture) verify(t *testing.T, presentation, nonce string) credential.Result {
	t.Helper()
	body, _ := json.Marshal(VerifyRequest{Presentation: presentation, Audience: "urn:imi:service:pension", Nonce: nonce})
	resp, b := do(t, "POST", f.srv.URL+"/v1/presentations/verify", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("verify: %d %s", resp.StatusCode, b)
	}
	var r credential.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPresentationLifecycle: issue, verify, replay, revoke, and the status
// token says the same as the verify endpoint.
func TestPresentationLifecycle(t *testing.T) {
	f := newCredFixture(t)
	iss, holder := f.issue(t)
	if iss.StatusURI != "https://hrss.example/v1/status-lists/cc-hrss/0" {
		t.Errorf("status uri = %s", iss.StatusURI)
	}

	r := f.verify(t, f.present(t, iss, holder, "nonce-0000000001", "pension_status"), "nonce-0000000001")
	if r.Outcome != credential.Valid || len(r.Claims) == 0 || r.Claims["pension_status"] != "contributing" || r.Claims["insurance_number"] != nil {
		t.Fatalf("verify = %+v", r)
	}
	if !equalStrings(r.Disclosed, []string{"pension_status"}) || r.Issuer != "cc-hrss" || r.Type != "social_insurance" {
		t.Errorf("verify = %+v", r)
	}

	// The same presentation again is a replay.
	again := f.verify(t, f.present(t, iss, holder, "nonce-0000000001", "pension_status"), "nonce-0000000001")
	if again.Outcome != credential.Invalid || again.Reason != credential.ReasonNonceReplayed || again.Claims != nil {
		t.Errorf("replay = %+v", again)
	}

	// The token is re-made only when the list changes.
	_, tok0 := do(t, "GET", f.srv.URL+"/v1/status-lists/cc-hrss/0", nil)
	time.Sleep(30 * time.Millisecond) // a few blocks
	if _, tok1 := do(t, "GET", f.srv.URL+"/v1/status-lists/cc-hrss/0", nil); !bytes.Equal(tok0, tok1) {
		t.Error("an unchanged list was signed again")
	}

	// Revoke; the next verification after that block says revoked.
	if resp, b := f.submitHRSS(t, &tx.Revoke{StatusRef: tx.StatusRef{List: 0, Index: iss.StatusIdx}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, b)
	}
	r = f.verify(t, f.present(t, iss, holder, "nonce-0000000002", "pension_status"), "nonce-0000000002")
	if r.Outcome != credential.Revoked || r.Claims != nil || r.MessageZH == "" {
		t.Fatalf("after revocation = %+v", r)
	}

	resp, tok := do(t, "GET", f.srv.URL+"/v1/status-lists/cc-hrss/0", nil)
	if bytes.Equal(tok, tok0) {
		t.Error("the token did not change with the list")
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/statuslist+jwt" {
		t.Fatalf("status token: %d %s", resp.StatusCode, tok)
	}
	st, err := statuslist.ParseToken(string(tok), iss.StatusURI, f.hrss.Public().Ed25519(), f.chain.Status().LatestTime, ledger.StatusListSize)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := st.Status(uint64(iss.StatusIdx)); err != nil || v != statuslist.Invalid {
		t.Errorf("token status = %d, %v; want revoked", v, err)
	}
	// The independent implementation reads the served token the same way
	// and, given it, rejects the revoked credential's status.
	hrssJWK := tsinterop.JWK(f.hrss.Public().Ed25519())
	ts, err := tsinterop.Status(context.Background(), tsinterop.StatusRequest{Token: string(tok), IssuerJWK: hrssJWK, Idx: int(iss.StatusIdx), Now: f.chain.Status().LatestTime.Unix()})
	if err != nil || !ts.OK || ts.Status != int(statuslist.Invalid) || ts.Bits != 2 {
		t.Errorf("TypeScript reading the node's token: %+v, %v", ts, err)
	}
	tv, err := tsinterop.Verify(context.Background(), tsinterop.VerifyRequest{
		SDJWT: f.present(t, iss, holder, "nonce-0000000003", "pension_status"), IssuerJWK: hrssJWK, RequireKeyBinding: true,
		Aud: "urn:imi:service:pension", Nonce: "nonce-0000000003", StatusListToken: string(tok), Now: f.chain.Status().LatestTime.Unix(),
	})
	if err != nil || !tv.OK || tv.Status == nil || *tv.Status != int(statuslist.Invalid) || tv.Claims["pension_status"] != "contributing" {
		t.Errorf("TypeScript verifying against the node's token: %+v, %v", tv, err)
	}

	var e ledger.StatusEntry
	if _, b := do(t, "GET", fmt.Sprintf("%s/v1/status-lists/cc-hrss/0/%d", f.srv.URL, iss.StatusIdx), nil); json.Unmarshal(b, &e) != nil || e.Status != ledger.StatusInvalid {
		t.Errorf("entry = %+v", e)
	}
}

func TestVerifyEndpointRejects(t *testing.T) {
	f := newCredFixture(t)
	url := f.srv.URL + "/v1/presentations/verify"
	for name, c := range map[string]struct {
		body   []byte
		status int
		reason string
	}{
		"not json":        {[]byte("{"), 400, "bad_body"},
		"unknown field":   {[]byte(`{"presentation":"x~","aud":"a","nonce":"0123456789abcdef","require_key_binding":false}`), 400, "bad_body"},
		"no nonce":        {[]byte(`{"presentation":"x~","aud":"a"}`), 400, "bad_body"},
		"short nonce":     {[]byte(`{"presentation":"x~","aud":"a","nonce":"1"}`), 400, "bad_body"},
		"too large":       {append(append([]byte(`{"presentation":"`), bytes.Repeat([]byte("~"), maxPresentationBody)...), `","aud":"a","nonce":"0123456789abcdef"}`...), 413, "too_large"},
		"no presentation": {[]byte(`{"aud":"a","nonce":"0123456789abcdef"}`), 400, "bad_body"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, b := do(t, "POST", url, c.body)
			wantProblem(t, resp, b, c.status, c.reason)
		})
	}
	// A presentation too large for the verifier but inside the body limit
	// is a verdict, not a transport error.
	big, _ := json.Marshal(VerifyRequest{Presentation: strings.Repeat("~", 200<<10), Audience: "a", Nonce: "0123456789abcdef"})
	resp, b := do(t, "POST", url, big)
	var r credential.Result
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &r) != nil || r.Outcome != credential.Invalid || r.Reason != sdjwt.ReasonTooLarge {
		t.Errorf("oversized presentation: %d %s", resp.StatusCode, b)
	}
	// Only a node holding the issuer's key signs its status list; one
	// that does not sends the caller to the issuer's endpoint, if it has one.
	resp, b = do(t, "GET", f.srv.URL+"/v1/status-lists/cc-psb/0", nil)
	wantProblem(t, resp, b, http.StatusNotFound, "not_signed_here")
	f.api.cred.keys = nil
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(f.srv.URL + "/v1/status-lists/cc-hrss/0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "https://hrss.example/v1/status-lists/cc-hrss/0" {
		t.Errorf("no key here: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, b = do(t, "GET", f.srv.URL+"/v1/status-lists/cc-hrss/99999", nil)
	wantProblem(t, resp, b, http.StatusNotFound, "not_found")
}

func TestCredentialTypesEndpoint(t *testing.T) {
	f := newCredFixture(t)
	var r CredentialTypesResponse
	if _, b := do(t, "GET", f.srv.URL+"/v1/credential-types", nil); json.Unmarshal(b, &r) != nil || len(r.Types) != 1 || r.Types[0].ID != "social_insurance" {
		t.Fatalf("types = %+v", r)
	}
	resp, b := do(t, "GET", f.srv.URL+"/v1/credential-types/nope", nil)
	wantProblem(t, resp, b, http.StatusNotFound, "not_found")
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
