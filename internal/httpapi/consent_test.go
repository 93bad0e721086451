package httpapi

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imi-city/imi/internal/authn"
	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// The demo district's authorities.
const (
	authPSB     = "cc-psb"
	authHRSS    = "cc-hrss"
	authHSB     = "cc-hsb"
	authUtility = "cc-utility"
)

// consentFixture is a node of the demo district that acts for the public
// security bureau only: its desk opens the bureau's applications and answers
// back-office reads from it. All four demo authorities are on the ledger with
// their credential types, services and KEM keys, so the consent layer is the
// real one; blocks come from the fixture's fake chain, which the desk submits
// its access records to and waits on like any client.
type consentFixture struct {
	*fixture
	// srv serves the API with the desk; fixture.srv serves one without.
	srv  *httptest.Server
	keys map[string]key.Private
}

func newConsentFixture(t *testing.T) *consentFixture {
	t.Helper()
	ids := []string{authPSB, authHRSS, authHSB, authUtility}
	roles := [][]string{
		{"issuer:household_registration", "issuer:resident_identity", ledger.RoleRegistrar, ledger.RoleServiceProvider},
		{"issuer:social_insurance", ledger.RoleServiceProvider},
		{"issuer:medical_insurance", ledger.RoleServiceProvider},
		{"issuer:utility_account", ledger.RoleServiceProvider},
	}
	g := ledger.Genesis{DistrictZH: "禅城区", DistrictEN: "Chancheng",
		CredentialTypes: credential.DemoTypes(authPSB, authHRSS, authHSB, authUtility),
		Services:        service.Demo(authPSB, authHRSS, authHSB, authUtility)}
	keys := map[string]key.Private{}
	for i, id := range ids {
		k, err := key.FromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		if err != nil {
			t.Fatal(err)
		}
		kem, err := consent.KEMKey(k.Seed())
		if err != nil {
			t.Fatal(err)
		}
		spec := tx.AuthoritySpec{ID: id, NameZH: "机构" + id, NameEN: "Authority " + id, Key: k.Public(), Roles: roles[i]}
		if i == 0 {
			spec.ValidatorKey, spec.Power = bytes.Repeat([]byte{7}, 32), 10
		}
		g.Authorities = append(g.Authorities, spec)
		g.KEMKeys = append(g.KEMKeys, ledger.GenesisKEMKey{Authority: id, Key: kem.PublicKey().Bytes()})
		keys[id] = k
	}
	f := &consentFixture{fixture: newFixtureWith(t, keys[authPSB], g, nil), keys: keys}
	f.chain.mu.Lock()
	// Block time is the node's clock for signed requests: keep it close to
	// the test's pace so a request signed now is not stale by the time it
	// arrives.
	f.chain.step = time.Millisecond
	f.chain.mu.Unlock()

	store, err := service.OpenStore("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	desk, err := service.NewDesk(service.DeskConfig{App: f.chain.app, Chain: f.chain, Store: store,
		Keys: map[string]key.Private{authPSB: keys[authPSB]}, Now: f.now})
	if err != nil {
		t.Fatal(err)
	}
	api := New(f.chain.app, f.chain, Config{CommitTimeout: 2 * time.Second, Gatherer: prometheus.NewRegistry(), Now: f.now, Desk: desk},
		slog.New(slog.DiscardHandler))
	f.srv = httptest.NewServer(api)
	t.Cleanup(f.srv.Close)
	return f
}

// now is the node's clock: the last block's time.
func (f *consentFixture) now() time.Time { return f.chain.Status().LatestTime }

// signed is a request to this node signed by authority as with its ledger key
// over the exact body.
func (f *consentFixture) signed(t testing.TB, as, method, path string, body []byte) *http.Request {
	t.Helper()
	return f.signedWith(t, as, f.keys[as], f.now(), method, path, body)
}

func (f *consentFixture) signedWith(t testing.TB, as string, k key.Private, at time.Time, method, path string, body []byte) *http.Request {
	t.Helper()
	req := f.request(t, method, path, body)
	if err := authn.SignRequest(req, body, as, k, at); err != nil {
		t.Fatal(err)
	}
	return req
}

func (f *consentFixture) request(t testing.TB, method, path string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// send is do for a prepared request, safe to call from any goroutine.
func send(req *http.Request) (*http.Response, []byte, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func call(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := send(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// asResident is a request carrying a session token.
func (f *consentFixture) asResident(t testing.TB, token, method, path string) (*http.Response, []byte) {
	t.Helper()
	req := f.request(t, method, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return call(t, req)
}

func (f *consentFixture) challenge(t testing.TB) authn.Challenge {
	t.Helper()
	resp, b := do(t, "POST", f.srv.URL+"/v1/sessions/challenge", nil)
	var c authn.Challenge
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &c) != nil {
		t.Fatalf("challenge: %d %s", resp.StatusCode, b)
	}
	return c
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signIn signs in as the pseudonyms whose keys are ks and returns the token.
func (f *consentFixture) signIn(t testing.TB, ks ...key.Private) string {
	t.Helper()
	c := f.challenge(t)
	req := SignInRequest{Challenge: c.ID}
	for _, k := range ks {
		req.Proofs = append(req.Proofs, authn.WalletProof(c, psn(k), k))
	}
	resp, b := do(t, "POST", f.srv.URL+"/v1/sessions", mustJSON(t, req))
	var s SessionResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &s) != nil || len(s.Principals) != len(ks) {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, b)
	}
	return s.Token
}

func psn(k key.Private) string { return pseudonym.FromKey(k.Public()).String() }

func newKey(t testing.TB) key.Private {
	t.Helper()
	k, err := key.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRecordID(t testing.TB) tx.Bytes {
	t.Helper()
	id := make(tx.Bytes, 16)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	return id
}

// familyName is a claim the bureau vouches for and the pension service asks.
var familyName = tx.ClaimRef{Type: credential.TypeResidentIdentity, Claim: "family_name"}

// readRequest is a back-office read of the resident subject's family name for
// the pension service.
func readRequest(t testing.TB, subject string) (tx.Bytes, []byte) {
	t.Helper()
	id := newRecordID(t)
	return id, mustJSON(t, service.ReadRequest{ID: id, Subject: subject, Service: service.Pension, Claims: []tx.ClaimRef{familyName}})
}

// readAtPSB makes the social insurance bureau read subject's data from the
// public security bureau and returns the request's id and the answer.
func (f *consentFixture) readAtPSB(t testing.TB, subject string) (tx.Bytes, *http.Response, []byte) {
	t.Helper()
	id, body := readRequest(t, subject)
	resp, b := call(t, f.signed(t, authHRSS, "POST", "/v1/authorities/"+authPSB+"/back-office/read", body))
	return id, resp, b
}

// grantHouseholdCert commits a one-time consent of the pseudonym k to the
// bureau's household certificate service, straight to the ledger.
func (f *consentFixture) grantHouseholdCert(t *testing.T, k key.Private) {
	t.Helper()
	s, _, err := f.chain.app.Service(service.HouseholdCert, 0)
	if err != nil {
		t.Fatal(err)
	}
	types, _, err := f.chain.app.CredentialTypes(0)
	if err != nil {
		t.Fatal(err)
	}
	sensitive := service.Sensitivity(types)
	g := &tx.GrantConsent{Service: s.ID, ServiceVersion: s.Version, Mode: tx.ModeOneTime}
	g.Claims = slices.Concat(s.Required, s.Optional)
	slices.SortFunc(g.Claims, tx.ClaimRef.Compare)
	for _, c := range g.Claims {
		if sensitive(c) {
			g.Sensitive = append(g.Sensitive, c)
		}
	}
	var au ledger.Authority
	if _, b := do(t, "GET", f.srv.URL+"/v1/authorities/"+authPSB, nil); json.Unmarshal(b, &au) != nil {
		t.Fatalf("authority: %s", b)
	}
	resident := newKey(t)
	ctx := consent.Context{ChainID: chainID, Pseudonym: psn(k), Service: s.ID, Authority: authPSB}
	box, err := consent.Seal(au.KEMKey, ctx, consent.NewSubject(ctx, did.FromKey(resident.Public()).String(), resident, "", key.Private{}))
	if err != nil {
		t.Fatal(err)
	}
	g.Subjects = []tx.SealedSubject{{Authority: authPSB, Box: box}}
	x, err := tx.New(chainID, psn(k), 0, 0, g)
	if err != nil {
		t.Fatal(err)
	}
	x.Sign(k)
	if resp, b := do(t, "POST", f.srv.URL+"/v1/txs", x.Encode()); resp.StatusCode != http.StatusOK {
		t.Fatalf("grant: %d %s", resp.StatusCode, b)
	}
}

func b64(id []byte) string { return base64.RawURLEncoding.EncodeToString(id) }

func TestResidentEndpointsNeedASession(t *testing.T) {
	f := newConsentFixture(t)
	paths := []string{
		"/v1/me/consents",
		"/v1/me/access-log",
		"/v1/me/delegations",
		"/v1/me/access-log/" + psn(newKey(t)) + "/" + b64(newRecordID(t)),
	}
	ended := f.signIn(t, newKey(t))
	if resp, b := f.asResident(t, ended, "DELETE", "/v1/sessions"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, b)
	}
	for _, tc := range []struct {
		name, authorization string
		reason              string
	}{
		{"no header", "", "sign_in"},
		{"not bearer", "Basic dXNlcjpwYXNz", "sign_in"},
		{"unknown token", "Bearer " + strings.Repeat("A", 43), "session_expired"},
		{"signed out", "Bearer " + ended, "session_expired"},
	} {
		for _, p := range paths {
			t.Run(tc.name+p, func(t *testing.T) {
				req := f.request(t, "GET", p, nil)
				if tc.authorization != "" {
					req.Header.Set("Authorization", tc.authorization)
				}
				resp, b := call(t, req)
				wantProblem(t, resp, b, http.StatusUnauthorized, tc.reason)
			})
		}
	}
}

// TestRefusalsUnderLoadNameTheirOwnRequest: concurrent refusals each carry
// the path of the request they answer (and the race detector sees no shared
// problem being written).
func TestRefusalsUnderLoadNameTheirOwnRequest(t *testing.T) {
	f := newConsentFixture(t)
	paths := []string{"/v1/me/consents", "/v1/me/access-log", "/v1/me/delegations", "/v1/applications/nope/decline"}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := paths[i%len(paths)]
			method := "GET"
			if strings.HasSuffix(p, "decline") {
				method = "POST"
			}
			req, _ := http.NewRequest(method, f.fixture.srv.URL+p, nil) // the node without a desk
			resp, b, err := send(req)
			if err != nil {
				errs <- err
				return
			}
			var pr Problem
			if err := json.Unmarshal(b, &pr); err != nil || pr.Instance != p || (resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusNotImplemented) {
				errs <- fmt.Errorf("%s: %d %s", p, resp.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSessionSeesOnlyItsOwnRecords(t *testing.T) {
	f := newConsentFixture(t)
	a, b := newKey(t), newKey(t)
	idA, resp, body := f.readAtPSB(t, psn(a))
	wantProblem(t, resp, body, http.StatusForbidden, ledger.DenyNoConsent)
	idB, resp, body := f.readAtPSB(t, psn(b))
	wantProblem(t, resp, body, http.StatusForbidden, ledger.DenyNoConsent)
	f.grantHouseholdCert(t, a)

	tokA, tokB, tokAB := f.signIn(t, a), f.signIn(t, b), f.signIn(t, a, b)
	type logResponse struct {
		Records []ledger.Access `json:"records"`
	}
	for _, tc := range []struct {
		name  string
		token string
		want  map[string]string // record id -> subject
	}{
		{"A", tokA, map[string]string{b64(idA): psn(a)}},
		{"B", tokB, map[string]string{b64(idB): psn(b)}},
		{"A and B", tokAB, map[string]string{b64(idA): psn(a), b64(idB): psn(b)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.asResident(t, tc.token, "GET", "/v1/me/access-log")
			var got logResponse
			if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil {
				t.Fatalf("access log: %d %s", resp.StatusCode, body)
			}
			gotIDs := map[string]string{}
			for _, r := range got.Records {
				gotIDs[b64(r.ID)] = r.Subject
			}
			if !maps.Equal(gotIDs, tc.want) {
				t.Errorf("access log = %v, want %v", gotIDs, tc.want)
			}
		})
	}

	type consentsResponse struct {
		Consents []ledger.Consent `json:"consents"`
	}
	for _, tc := range []struct {
		name  string
		token string
		want  []string // subjects
	}{
		{"A", tokA, []string{psn(a)}},
		{"B", tokB, nil},
	} {
		resp, body := f.asResident(t, tc.token, "GET", "/v1/me/consents")
		var got consentsResponse
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil {
			t.Fatalf("consents of %s: %d %s", tc.name, resp.StatusCode, body)
		}
		var subjects []string
		for _, c := range got.Consents {
			subjects = append(subjects, c.Subject)
		}
		if !slices.Equal(subjects, tc.want) {
			t.Errorf("consents of %s are of %v, want %v", tc.name, subjects, tc.want)
		}
	}

	// A's own record, with a proof that checks.
	resp, body = f.asResident(t, tokA, "GET", "/v1/me/access-log/"+psn(a)+"/"+b64(idA))
	var pr AccessProofResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &pr) != nil {
		t.Fatalf("own record: %d %s", resp.StatusCode, body)
	}
	if !bytes.Equal(pr.Record.ID, idA) || pr.Record.Subject != psn(a) || pr.Record.Reason != ledger.DenyNoConsent {
		t.Errorf("own record = %+v", pr.Record)
	}
	if err := pr.Proof.Verify(pr.Proof.Root); err != nil {
		t.Errorf("own record's proof: %v", err)
	}

	for _, tc := range []struct {
		name, path string
		status     int
		reason     string
	}{
		{"B's record under B", "/v1/me/access-log/" + psn(b) + "/" + b64(idB), http.StatusForbidden, "forbidden"},
		{"B's record under A", "/v1/me/access-log/" + psn(a) + "/" + b64(idB), http.StatusNotFound, "not_found"},
		{"B's subject, A's record", "/v1/me/access-log/" + psn(b) + "/" + b64(idA), http.StatusForbidden, "forbidden"},
		{"bad record id", "/v1/me/access-log/" + psn(a) + "/not*base64", http.StatusBadRequest, "bad_id"},
		{"height above the chain", "/v1/me/access-log/" + psn(a) + "/" + b64(idA) + "?height=999999999", http.StatusNotFound, "bad_height"},
		{"height not a number", "/v1/me/access-log/" + psn(a) + "/" + b64(idA) + "?height=x", http.StatusBadRequest, "bad_height"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.asResident(t, tokA, "GET", tc.path)
			wantProblem(t, resp, body, tc.status, tc.reason)
		})
	}
}

func TestSignInRefusals(t *testing.T) {
	f := newConsentFixture(t)
	a, other := newKey(t), newKey(t)
	post := func(t *testing.T, body []byte) (*http.Response, []byte) {
		t.Helper()
		return do(t, "POST", f.srv.URL+"/v1/sessions", body)
	}

	t.Run("challenge used twice", func(t *testing.T) {
		c := f.challenge(t)
		body := mustJSON(t, SignInRequest{Challenge: c.ID, Proofs: []authn.Proof{authn.WalletProof(c, psn(a), a)}})
		if resp, b := post(t, body); resp.StatusCode != http.StatusOK {
			t.Fatalf("first use: %d %s", resp.StatusCode, b)
		}
		resp, b := post(t, body)
		wantProblem(t, resp, b, http.StatusUnauthorized, "sign_in_failed")
	})
	t.Run("wrong key", func(t *testing.T) {
		c := f.challenge(t)
		body := mustJSON(t, SignInRequest{Challenge: c.ID, Proofs: []authn.Proof{authn.WalletProof(c, psn(a), other)}})
		resp, b := post(t, body)
		wantProblem(t, resp, b, http.StatusUnauthorized, "sign_in_failed")
		// The failed answer used the challenge up: the right key is too late.
		body = mustJSON(t, SignInRequest{Challenge: c.ID, Proofs: []authn.Proof{authn.WalletProof(c, psn(a), a)}})
		resp, b = post(t, body)
		wantProblem(t, resp, b, http.StatusUnauthorized, "sign_in_failed")
	})
	t.Run("one of two proofs wrong", func(t *testing.T) {
		c := f.challenge(t)
		body := mustJSON(t, SignInRequest{Challenge: c.ID, Proofs: []authn.Proof{authn.WalletProof(c, psn(a), a), authn.WalletProof(c, psn(other), a)}})
		resp, b := post(t, body)
		wantProblem(t, resp, b, http.StatusUnauthorized, "sign_in_failed")
	})
	t.Run("unknown DID", func(t *testing.T) {
		c := f.challenge(t)
		d := did.FromKey(a.Public()).String()
		body := mustJSON(t, SignInRequest{Challenge: c.ID, Proofs: []authn.Proof{authn.WalletProof(c, d, a)}})
		resp, b := post(t, body)
		wantProblem(t, resp, b, http.StatusUnauthorized, "sign_in_failed")
	})
	t.Run("unknown challenge", func(t *testing.T) {
		c := f.challenge(t)
		c.ID = strings.Repeat("A", len(c.ID))
		body := mustJSON(t, SignInRequest{Challenge: c.ID, Proofs: []authn.Proof{authn.WalletProof(c, psn(a), a)}})
		resp, b := post(t, body)
		wantProblem(t, resp, b, http.StatusUnauthorized, "sign_in_failed")
	})
	t.Run("principals in the body", func(t *testing.T) {
		// A body cannot add a principal the proofs do not prove.
		c := f.challenge(t)
		body := mustJSON(t, map[string]any{
			"challenge":  c.ID,
			"proofs":     []authn.Proof{authn.WalletProof(c, psn(a), a)},
			"principals": []string{psn(other)},
		})
		resp, b := post(t, body)
		wantProblem(t, resp, b, http.StatusBadRequest, "bad_body")
	})
}

// authorityEndpoints are the endpoints only the authority in the path may
// call, with a body each accepts.
var authorityEndpoints = []struct {
	method, path string
	body         []byte
}{
	{"POST", "/v1/authorities/" + authPSB + "/applications", []byte(`{"service":"` + service.HouseholdCert + `"}`)},
	{"GET", "/v1/authorities/" + authPSB + "/applications", nil},
	{"GET", "/v1/authorities/" + authPSB + "/access", nil},
	{"PUT", "/v1/authorities/" + authPSB + "/records/did:imi:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/" + credential.TypeResidentIdentity, []byte(`{"family_name":"李"}`)},
}

func TestAuthorityRequestsAreSignedByThePathAuthority(t *testing.T) {
	f := newConsentFixture(t)
	for _, e := range authorityEndpoints {
		t.Run(e.method+" "+e.path, func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				req    func() *http.Request
				status int
				reason string
			}{
				{"unsigned", func() *http.Request { return f.request(t, e.method, e.path, e.body) }, http.StatusUnauthorized, "unauthenticated"},
				{"signed by another authority", func() *http.Request { return f.signed(t, authHRSS, e.method, e.path, e.body) }, http.StatusForbidden, "forbidden"},
				{"signed with another key", func() *http.Request {
					return f.signedWith(t, authPSB, f.keys[authHRSS], f.now(), e.method, e.path, e.body)
				}, http.StatusUnauthorized, "unauthenticated"},
				{"by an unknown authority", func() *http.Request {
					return f.signedWith(t, "cc-nobody", f.keys[authPSB], f.now(), e.method, e.path, e.body)
				}, http.StatusUnauthorized, "unauthenticated"},
				{"stale", func() *http.Request {
					return f.signedWith(t, authPSB, f.keys[authPSB], f.now().Add(-authn.DefaultSkew-time.Minute), e.method, e.path, e.body)
				}, http.StatusUnauthorized, "unauthenticated"},
				{"body changed after signing", func() *http.Request {
					r := f.signed(t, authPSB, e.method, e.path, append(bytes.Clone(e.body), ' '))
					changed := f.request(t, e.method, e.path, e.body)
					changed.Header = r.Header
					return changed
				}, http.StatusUnauthorized, "unauthenticated"},
				{"signed for another path", func() *http.Request {
					r := f.signed(t, authPSB, e.method, e.path+"?x=1", e.body)
					moved := f.request(t, e.method, e.path, e.body)
					moved.Header = r.Header
					return moved
				}, http.StatusUnauthorized, "unauthenticated"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					resp, b := call(t, tc.req())
					wantProblem(t, resp, b, tc.status, tc.reason)
				})
			}
		})
	}
	// The same requests signed by the authority itself go through.
	for _, e := range authorityEndpoints[:3] {
		resp, b := call(t, f.signed(t, authPSB, e.method, e.path, e.body))
		if resp.StatusCode/100 != 2 {
			t.Errorf("%s %s signed by %s: %d %s", e.method, e.path, authPSB, resp.StatusCode, b)
		}
	}
}

func TestSignedRequestIsAcceptedOnce(t *testing.T) {
	f := newConsentFixture(t)
	const n = 100
	body := []byte(`{"service":"` + service.HouseholdCert + `"}`)
	path := "/v1/authorities/" + authPSB + "/applications"
	header := f.signed(t, authPSB, "POST", path, body).Header

	type answer struct {
		status int
		body   []byte
		err    error
	}
	answers := make(chan answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest("POST", f.srv.URL+path, bytes.NewReader(body))
			if err != nil {
				answers <- answer{err: err}
				return
			}
			req.Header = header.Clone()
			<-start
			resp, b, err := send(req)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			answers <- answer{status: resp.StatusCode, body: b}
		}()
	}
	close(start)
	wg.Wait()
	close(answers)

	created, replays := 0, 0
	for a := range answers {
		switch {
		case a.err != nil:
			t.Error(a.err)
		case a.status == http.StatusCreated:
			created++
			var app service.Application
			if err := json.Unmarshal(a.body, &app); err != nil || app.Authority != authPSB || app.Status != service.StatusOpen {
				t.Errorf("created application %s", a.body)
			}
		case a.status == http.StatusConflict:
			var p Problem
			if err := json.Unmarshal(a.body, &p); err != nil || p.Reason != "replay" || p.TitleZH == "" {
				t.Errorf("conflict %s, want reason replay", a.body)
			}
			replays++
		default:
			t.Errorf("status %d: %s", a.status, a.body)
		}
	}
	if created != 1 || replays != n-1 {
		t.Errorf("%d created and %d replays, want 1 and %d", created, replays, n-1)
	}
}

func TestBodiesCannotNameAnIdentity(t *testing.T) {
	f := newConsentFixture(t)
	subject := psn(newKey(t))
	_, read := readRequest(t, subject)
	withReader := append([]byte(`{"reader":"`+authPSB+`",`), read[1:]...)
	for _, tc := range []struct {
		name       string
		as         string
		path, body string
	}{
		{"application for another authority", authPSB, "/v1/authorities/" + authPSB + "/applications",
			`{"service":"` + service.HouseholdCert + `","authority":"` + authHRSS + `"}`},
		{"application naming its own authority", authPSB, "/v1/authorities/" + authPSB + "/applications",
			`{"service":"` + service.HouseholdCert + `","authority":"` + authPSB + `"}`},
		{"back-office read naming the reader", authHRSS, "/v1/authorities/" + authPSB + "/back-office/read", string(withReader)},
		{"trailing data", authPSB, "/v1/authorities/" + authPSB + "/applications",
			`{"service":"` + service.HouseholdCert + `"} {"authority":"` + authHRSS + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := call(t, f.signed(t, tc.as, "POST", tc.path, []byte(tc.body)))
			wantProblem(t, resp, b, http.StatusBadRequest, "bad_body")
		})
	}
	if log, _, err := f.chain.app.AccessLog(subject, 0); err != nil || len(log) != 0 {
		t.Errorf("a refused body left access records %+v, %v", log, err)
	}
}

func TestBackOfficeReadWithoutConsentIsDeniedAndRecorded(t *testing.T) {
	f := newConsentFixture(t)
	subject := psn(newKey(t))
	id, resp, b := f.readAtPSB(t, subject)
	p := wantProblem(t, resp, b, http.StatusForbidden, ledger.DenyNoConsent)
	if !strings.Contains(p.Detail, "access log") {
		t.Errorf("detail %q does not say the attempt is recorded", p.Detail)
	}

	want := func(t *testing.T, r ledger.Access) {
		t.Helper()
		if r.Subject != subject || r.Reader != authHRSS || r.Source != authPSB || r.Recorder != authPSB ||
			r.Service != service.Pension || r.Channel != tx.ChannelBackOffice ||
			r.Outcome != tx.OutcomeDenied || r.Reason != ledger.DenyNoConsent || r.At.Height == 0 ||
			!slices.Equal(r.Claims, []tx.ClaimRef{familyName}) {
			t.Errorf("access record = %+v", r)
		}
	}
	find := func(t *testing.T, records []ledger.Access) {
		t.Helper()
		i := slices.IndexFunc(records, func(r ledger.Access) bool { return bytes.Equal(r.ID, id) })
		if i < 0 {
			t.Fatalf("the denied read %s is not among %+v", b64(id), records)
		}
		want(t, records[i])
	}

	t.Run("resident's log on the ledger", func(t *testing.T) {
		log, _, err := f.chain.app.AccessLog(subject, 0)
		if err != nil || len(log) != 1 {
			t.Fatalf("AccessLog = %+v, %v", log, err)
		}
		find(t, log)
	})
	for _, as := range []string{authPSB, authHRSS} {
		t.Run("access of "+as, func(t *testing.T) {
			resp, b := call(t, f.signed(t, as, "GET", "/v1/authorities/"+as+"/access", nil))
			var got struct {
				Height  int64           `json:"height"`
				Records []ledger.Access `json:"records"`
			}
			if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			find(t, got.Records)
		})
	}
	t.Run("not in a third authority's access", func(t *testing.T) {
		resp, b := call(t, f.signed(t, authHSB, "GET", "/v1/authorities/"+authHSB+"/access", nil))
		if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(b64(id))) {
			t.Errorf("%d %s", resp.StatusCode, b)
		}
	})

	// The same read repeated with the same id has one effect on the ledger.
	again := f.signed(t, authHRSS, "POST", "/v1/authorities/"+authPSB+"/back-office/read",
		mustJSON(t, service.ReadRequest{ID: id, Subject: subject, Service: service.Pension, Claims: []tx.ClaimRef{familyName}}))
	resp, b = call(t, again)
	wantProblem(t, resp, b, http.StatusForbidden, ledger.DenyNoConsent)
	if log, _, _ := f.chain.app.AccessLog(subject, 0); len(log) != 1 {
		t.Errorf("after a retry the log has %d records, want 1", len(log))
	}
}

func TestDeskRefusals(t *testing.T) {
	f := newConsentFixture(t)
	_, read := readRequest(t, psn(newKey(t)))
	t.Run("read at an authority this node does not act for", func(t *testing.T) {
		resp, b := call(t, f.signed(t, authHRSS, "POST", "/v1/authorities/"+authHSB+"/back-office/read", read))
		wantProblem(t, resp, b, http.StatusMisdirectedRequest, "not_here")
	})
	t.Run("unsigned read", func(t *testing.T) {
		resp, b := call(t, f.request(t, "POST", "/v1/authorities/"+authPSB+"/back-office/read", read))
		wantProblem(t, resp, b, http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("node without a desk", func(t *testing.T) {
		req := f.signed(t, authPSB, "POST", "/v1/authorities/"+authPSB+"/applications", []byte(`{"service":"`+service.HouseholdCert+`"}`))
		req.URL.Host = strings.TrimPrefix(f.fixture.srv.URL, "http://")
		resp, b := call(t, req)
		wantProblem(t, resp, b, http.StatusNotImplemented, "no_desk")
	})
	t.Run("another authority's service", func(t *testing.T) {
		resp, b := call(t, f.signed(t, authPSB, "POST", "/v1/authorities/"+authPSB+"/applications", []byte(`{"service":"`+service.Pension+`"}`)))
		wantProblem(t, resp, b, http.StatusBadRequest, "bad_request")
	})
	t.Run("unknown application", func(t *testing.T) {
		resp, b := do(t, "GET", f.srv.URL+"/v1/applications/"+b64(newRecordID(t)), nil)
		wantProblem(t, resp, b, http.StatusNotFound, "no_application")
	})
}

func TestOversizedBodies(t *testing.T) {
	f := newConsentFixture(t)
	big := func(n int) []byte { return bytes.Repeat([]byte(" "), n) }
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		reason string
	}{
		{"sign-in", func() *http.Request { return f.request(t, "POST", "/v1/sessions", big(maxConsentBody+1)) }, "too_large"},
		{"unsigned application", func() *http.Request {
			return f.request(t, "POST", "/v1/authorities/"+authPSB+"/applications", big(maxConsentBody+1))
		}, "too_large"},
		{"signed application", func() *http.Request {
			return f.signed(t, authPSB, "POST", "/v1/authorities/"+authPSB+"/applications", big(maxConsentBody+1))
		}, "too_large"},
		{"back-office read", func() *http.Request {
			return f.signed(t, authHRSS, "POST", "/v1/authorities/"+authPSB+"/back-office/read", big(maxConsentBody+1))
		}, "too_large"},
		{"record", func() *http.Request {
			return f.signed(t, authPSB, "PUT", "/v1/authorities/"+authPSB+"/records/did:imi:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/"+credential.TypeResidentIdentity, big(maxConsentBody+1))
		}, "too_large"},
		{"submission", func() *http.Request {
			return f.request(t, "POST", "/v1/applications/"+b64(newRecordID(t))+"/submit", big(maxSubmissionBody+1))
		}, "too_large"},
		{"body on a bodiless read", func() *http.Request {
			return f.signed(t, authPSB, "GET", "/v1/authorities/"+authPSB+"/access", []byte("{}"))
		}, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := call(t, tc.req())
			wantProblem(t, resp, b, http.StatusRequestEntityTooLarge, tc.reason)
		})
	}
}
