package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

const chainID = "imi-test-1"

// fakeChain stands in for CometBFT: CheckTx into a queue, and a block of
// whatever is queued every few milliseconds.
type fakeChain struct {
	app    *ledger.App
	mu     sync.Mutex
	queue  [][]byte
	seen   map[[32]byte]bool
	height int64
	now    time.Time
	hold   bool // stop making blocks
	// step is how far block time advances per block; default one second.
	step time.Duration
}

func (f *fakeChain) Submit(ctx context.Context, raw []byte) (*abci.ResponseCheckTx, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := tx.Hash(raw)
	if f.seen[h] {
		return nil, ErrInCache
	}
	res, err := f.app.CheckTx(ctx, &abci.RequestCheckTx{Tx: raw, Type: abci.CheckTxType_New})
	if err != nil || res.Code != 0 {
		return res, err
	}
	f.seen[h] = true
	f.queue = append(f.queue, raw)
	return res, nil
}

func (f *fakeChain) block() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hold {
		return
	}
	f.height++
	step := f.step
	if step == 0 {
		step = time.Second
	}
	f.now = f.now.Add(step)
	txs := f.queue
	f.queue = nil
	if _, err := f.app.FinalizeBlock(context.Background(), &abci.RequestFinalizeBlock{Height: f.height, Time: f.now, Txs: txs}); err != nil {
		panic(err)
	}
	if _, err := f.app.Commit(context.Background(), &abci.RequestCommit{}); err != nil {
		panic(err)
	}
}

func (f *fakeChain) Status() ChainStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ChainStatus{LatestHeight: f.height, LatestTime: f.now}
}

func (f *fakeChain) Commit(h int64) (any, error) { return map[string]int64{"height": h}, nil }

type fixture struct {
	srv       *httptest.Server
	api       *Server
	chain     *fakeChain
	registrar key.Private
	regDID    string
	seq       uint64
	now       time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	reg, _ := key.Generate()
	g := ledger.Genesis{DistrictZH: "禅城区", DistrictEN: "Chancheng", Authorities: []tx.AuthoritySpec{{
		ID: "cc-psb", NameZH: "公安", NameEN: "PSB", Key: reg.Public(), Roles: []string{"registrar"},
		ValidatorKey: bytes.Repeat([]byte{7}, 32), Power: 10,
	}}}
	return newFixtureWith(t, reg, g, nil)
}

// newFixtureWith serves a chain with genesis g whose first authority is the
// registrar reg; issuerKeys are the status-list keys the node holds.
func newFixtureWith(t testing.TB, reg key.Private, g ledger.Genesis, issuerKeys map[string]key.Private) *fixture {
	t.Helper()
	app, err := ledger.OpenMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	genesisTime := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	state, _ := tx.Marshal(g)
	if _, err := app.InitChain(context.Background(), &abci.RequestInitChain{ChainId: chainID, InitialHeight: 1, Time: genesisTime, AppStateBytes: state}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{chain: &fakeChain{app: app, seen: map[[32]byte]bool{}, now: genesisTime}, registrar: reg, regDID: did.FromKey(reg.Public()).String(), now: genesisTime}
	f.chain.block()
	stop := make(chan struct{})
	go func() {
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				f.chain.block()
			}
		}
	}()
	api := New(app, f.chain, Config{CommitTimeout: 2 * time.Second, Gatherer: prometheus.NewRegistry(), Now: func() time.Time { return f.chain.Status().LatestTime }, IssuerKeys: issuerKeys}, nil)
	f.api, f.srv = api, httptest.NewServer(api)
	t.Cleanup(func() { close(stop); f.srv.Close() })
	return f
}

func (f *fixture) registration(t testing.TB, tag byte) ([]byte, string) {
	t.Helper()
	k, _ := key.Generate()
	rk, _ := key.Generate()
	d := did.FromKey(k.Public()).String()
	var u tx.Hash32
	u[0] = tag
	x, err := tx.New(chainID, f.regDID, 0, f.seq, &tx.RegisterResident{DID: d, Key: k.Public(), RecoveryHash: key.RecoveryHash(rk.Public()), UniquenessTag: u, Assurance: "high"})
	if err != nil {
		t.Fatal(err)
	}
	f.seq++
	x.Sign(f.registrar)
	return x.Encode(), d
}

func do(t testing.TB, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func wantProblem(t *testing.T, resp *http.Response, body []byte, status int, reason string) Problem {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body %s: %v", body, err)
	}
	if p.Reason != reason || p.Status != status || p.Title == "" || p.TitleZH == "" || p.Type != "urn:imi:problem:"+reason {
		t.Errorf("problem = %+v, want reason %s", p, reason)
	}
	return p
}

func TestSubmitCommitsAndIsIdempotent(t *testing.T) {
	f := newFixture(t)
	raw, d := f.registration(t, 1)
	resp, body := do(t, "POST", f.srv.URL+"/v1/txs", raw)
	if resp.StatusCode != 200 {
		t.Fatalf("submit: %d %s", resp.StatusCode, body)
	}
	var sr SubmitResponse
	json.Unmarshal(body, &sr)
	if sr.Status != "committed" || sr.Height < 2 || sr.Hash != tx.HashHex(raw) {
		t.Fatalf("submit response %+v", sr)
	}
	// The DID resolves at once: the answer came after the commit.
	resp, body = do(t, "GET", f.srv.URL+"/v1/dids/"+d, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), d+"#key-1") {
		t.Fatalf("resolve: %d %s", resp.StatusCode, body)
	}
	// Sending the same bytes again returns the same commit, applied once.
	resp, body = do(t, "POST", f.srv.URL+"/v1/txs", raw)
	var again SubmitResponse
	json.Unmarshal(body, &again)
	if resp.StatusCode != 200 || again.Height != sr.Height {
		t.Fatalf("resubmit: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", f.srv.URL+"/v1/txs/"+sr.Hash, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"reason": "ok"`) {
		t.Fatalf("tx lookup: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", f.srv.URL+"/v1/status", nil)
	var st StatusResponse
	json.Unmarshal(body, &st)
	if resp.StatusCode != 200 || st.Residents != 1 || st.ChainID != chainID {
		t.Fatalf("status: %d %s", resp.StatusCode, body)
	}
}

func TestSubmitRefusals(t *testing.T) {
	f := newFixture(t)
	raw, _ := f.registration(t, 1)
	if resp, body := do(t, "POST", f.srv.URL+"/v1/txs", raw); resp.StatusCode != 200 {
		t.Fatalf("first registration: %s", body)
	}
	dup, _ := f.registration(t, 1) // same uniqueness tag, another key
	resp, body := do(t, "POST", f.srv.URL+"/v1/txs", dup)
	p := wantProblem(t, resp, body, http.StatusConflict, "already_registered")
	if p.TxHash != tx.HashHex(dup) || !strings.Contains(p.Detail, "did:imi:") {
		t.Errorf("duplicate problem = %+v", p)
	}
	f.seq-- // the refused tx did not use its sequence number

	forged, _ := f.registration(t, 2)
	forged[len(forged)-3] ^= 1
	resp, body = do(t, "POST", f.srv.URL+"/v1/txs", forged)
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("forged signature: %d %s", resp.StatusCode, body)
	}

	resp, body = do(t, "POST", f.srv.URL+"/v1/txs", []byte(`{"v":1}`))
	wantProblem(t, resp, body, http.StatusUnprocessableEntity, "malformed")

	resp, body = do(t, "POST", f.srv.URL+"/v1/txs", nil)
	wantProblem(t, resp, body, http.StatusBadRequest, "empty")

	resp, body = do(t, "POST", f.srv.URL+"/v1/txs", bytes.Repeat([]byte("x"), tx.MaxBytes+1))
	wantProblem(t, resp, body, http.StatusRequestEntityTooLarge, "too_large")
}

func TestReplayAfterCommitIsNotReapplied(t *testing.T) {
	f := newFixture(t)
	raw, _ := f.registration(t, 1)
	do(t, "POST", f.srv.URL+"/v1/txs", raw)
	// Bypass the API's idempotence: the bytes reach CheckTx again.
	f.chain.mu.Lock()
	delete(f.chain.seen, tx.Hash(raw))
	f.chain.mu.Unlock()
	res, err := f.chain.Submit(context.Background(), raw)
	if err != nil || ledger.Code(res.Code) != ledger.CodeBadSequence {
		t.Fatalf("replay CheckTx = %+v, %v; want bad_sequence", res, err)
	}
}

func TestReads(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		path   string
		status int
		reason string
	}{
		{"/v1/dids/did:web:example.com", 400, "bad_did"},
		{"/v1/dids/did:imi:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 404, "not_found"},
		{"/v1/dids/did:imi:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa?height=x", 400, "bad_height"},
		{"/v1/authorities?height=999999", 404, "bad_height"},
		{"/v1/txs/zz", 400, "bad_hash"},
		{"/v1/txs/" + strings.Repeat("AB", 32), 404, "not_found"},
		{"/v1/proposals/p-9", 404, "not_found"},
		{"/v1/accounts/did:imi:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/sequence?lane=999", 400, "bad_lane"},
		{"/v1/nothing", 404, "no_route"},
	}
	for _, c := range cases {
		resp, body := do(t, "GET", f.srv.URL+c.path, nil)
		t.Run(c.path, func(t *testing.T) { wantProblem(t, resp, body, c.status, c.reason) })
	}
	resp, body := do(t, "GET", f.srv.URL+"/v1/authorities", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"cc-psb"`) {
		t.Errorf("authorities: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", f.srv.URL+"/v1/dids/"+f.regDID, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"imiSubjectKind": "authority"`) {
		t.Errorf("authority DID: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", f.srv.URL+"/v1/accounts/"+f.regDID+"/sequence?lane=3", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"next": 0`) {
		t.Errorf("sequence: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, "GET", f.srv.URL+"/healthz", nil)
	if resp.StatusCode != 200 {
		t.Errorf("healthz = %d", resp.StatusCode)
	}
}

func TestProofVerifies(t *testing.T) {
	f := newFixture(t)
	raw, d := f.registration(t, 1)
	do(t, "POST", f.srv.URL+"/v1/txs", raw)
	_, body := do(t, "GET", f.srv.URL+"/v1/dids/"+d+"?proof=true", nil)
	var rr struct {
		Proof *ledger.Proof `json:"imiProof"`
	}
	if err := json.Unmarshal(body, &rr); err != nil || rr.Proof == nil {
		t.Fatalf("no proof in %s", body)
	}
	if err := rr.Proof.Verify(rr.Proof.Root); err != nil {
		t.Errorf("proof does not verify against its root: %v", err)
	}
	if err := rr.Proof.Verify(bytes.Repeat([]byte{1}, 32)); err == nil {
		t.Error("proof verified against a wrong app hash")
	}
}

func TestStatusSaysDegradedWhenBlocksStop(t *testing.T) {
	f := newFixture(t)
	f.chain.mu.Lock()
	f.chain.hold = true
	f.chain.mu.Unlock()
	app := f.chain.app
	api := New(app, f.chain, Config{Gatherer: prometheus.NewRegistry(), Now: func() time.Time { return f.chain.Status().LatestTime.Add(5 * time.Minute) }}, nil)
	srv := httptest.NewServer(api)
	defer srv.Close()
	_, body := do(t, "GET", srv.URL+"/v1/status", nil)
	var st StatusResponse
	json.Unmarshal(body, &st)
	if !st.Degraded || !strings.Contains(st.Health, "no block") {
		t.Errorf("status = %+v", st)
	}
}

func TestOpenAPIListsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	var routes []string
	for _, r := range routeTable {
		routes = append(routes, r.pattern)
	}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("openapi.json lacks %s", r)
		}
	}
	// OpenAPI groups methods under one path.
	paths := map[string]bool{}
	for _, r := range routes {
		_, p, _ := strings.Cut(r, " ")
		paths[p] = true
	}
	if len(doc.Paths) != len(paths) {
		t.Errorf("openapi.json has %d paths, the server %d", len(doc.Paths), len(paths))
	}
}

// TestSequenceAheadIsRetryable: a transaction whose predecessor on its lane
// has not reached this node is not a conflict but "not yet": 503 with
// Retry-After, so a client may try again or ask another node.
func TestSequenceAheadIsRetryable(t *testing.T) {
	f := newFixture(t)
	f.seq = 3 // skip 0..2
	raw, _ := f.registration(t, 9)
	resp, body := do(t, "POST", f.srv.URL+"/v1/txs", raw)
	wantProblem(t, resp, body, http.StatusServiceUnavailable, "sequence_ahead")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}
