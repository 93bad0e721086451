package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/authn"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/key"
)

// readOnlyChain is the consensus engine of a node that is only asked
// questions: the consent check never submits.
type readOnlyChain struct{}

func (readOnlyChain) Submit(context.Context, []byte) (*abci.ResponseCheckTx, error) {
	return nil, httpapi.ErrMempoolFull
}
func (readOnlyChain) Status() httpapi.ChainStatus { return httpapi.ChainStatus{} }
func (readOnlyChain) Commit(int64) (any, error)   { return nil, httpapi.ErrMempoolFull }

// BenchmarkConsentCheckHTTP is BenchmarkConsentCheck through the API: each
// request is an authority's signed POST /v1/authorities/{id}/consent-check
// over loopback HTTP/1.1 with keep-alive, answered from the same state. The
// latency runs from sending the signed request to reading the whole answer;
// the node verifies the signature and the replay cache on every request.
func BenchmarkConsentCheckHTTP(b *testing.B) {
	n := envInt(b, "IMI_BENCH_CONSENTS", 100_000)
	st := openConsentState(b, n, os.Getenv("IMI_BENCH_BOXES") == "1")
	srv := httpapi.New(st.app, readOnlyChain{}, httpapi.Config{}, slog.New(slog.DiscardHandler))
	ts := httptest.NewServer(srv)
	defer ts.Close()
	hc := ts.Client()
	keys := map[string]key.Private{"civil": st.g.civil.key, "hsb": st.g.hsb.key}

	const nreq = 1 << 14
	reqs, want := st.requests(nreq, 11)
	bodies := make([][]byte, nreq)
	for i, r := range reqs {
		var err error
		bodies[i], err = json.Marshal(httpapi.CheckRequest{Subject: r.Subject, Service: r.Service, Claims: r.Claims, Channel: r.Channel, Source: r.Source})
		if err != nil {
			b.Fatal(err)
		}
	}
	type answer struct {
		Allowed bool   `json:"allowed"`
		Reason  string `json:"reason"`
	}
	ask := func(i int) (answer, time.Duration) {
		r := reqs[i%nreq]
		req, err := http.NewRequest("POST", ts.URL+"/v1/authorities/"+r.Reader+"/consent-check", bytes.NewReader(bodies[i%nreq]))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if err := authn.SignRequest(req, bodies[i%nreq], r.Reader, keys[r.Reader], time.Now()); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("request %d: %d %s %v", i, resp.StatusCode, body, err)
		}
		var a answer
		if err := json.Unmarshal(body, &a); err != nil {
			b.Fatal(err)
		}
		return a, took
	}
	for i := range 500 {
		if a, _ := ask(i); a.Reason != want[i] {
			b.Fatalf("request %d (%+v): reason %q, want %q", i, reqs[i], a.Reason, want[i])
		}
	}

	lat := make([]time.Duration, 0, 1<<18)
	i := 500
	for b.Loop() {
		_, took := ask(i)
		lat = append(lat, took)
		i++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(n), "consents")
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
