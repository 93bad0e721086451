package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/node"
)

// apiServer is IMI's HTTP API served on a loopback port, set up as
// district.Run sets it up.
type apiServer struct {
	srv    *http.Server
	url    string
	served chan error
}

func startAPI(app *ledger.App, n *node.Node, log *slog.Logger) (*apiServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("couldn't listen for the API: %w", err)
	}
	a := &apiServer{
		srv: &http.Server{
			Handler:           httpapi.New(app, district.NewChain(n), httpapi.Config{}, log),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      90 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		url:    "http://" + ln.Addr().String(),
		served: make(chan error, 1),
	}
	go func() { a.served <- a.srv.Serve(ln) }()
	return a, nil
}

func (a *apiServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("couldn't stop the API server: %w", err)
	}
	if err := <-a.served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("the API server failed: %w", err)
	}
	return nil
}

// submitHTTP runs one client per stream of l, each posting its
// transactions in order and waiting for each answer, as a registrar's
// counter would. It returns each transaction's latency as its client saw
// it and when the last answer came.
func submitHTTP(ctx context.Context, base string, l *Load, m *meter, retries *atomic.Int64) ([]time.Duration, time.Time, error) {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	// One kept-alive connection per client: http.DefaultTransport keeps
	// only two idle connections per host, and the rest would be redialled
	// for every request.
	tr := &http.Transport{
		MaxIdleConns:        len(l.streams),
		MaxIdleConnsPerHost: len(l.streams),
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Minute}

	lat := make([]time.Duration, l.Len())
	var last atomic.Int64
	var wg sync.WaitGroup
	for _, stream := range l.streams {
		wg.Go(func() {
			for _, i := range stream {
				t0 := time.Now()
				m.markSent(i, t0)
				if err := post(ctx, hc, base, l.txs[i], retries); err != nil {
					stop(fmt.Errorf("transaction %d: %w", i, err))
					return
				}
				t1 := time.Now()
				lat[i] = t1.Sub(t0)
				for {
					prev := last.Load()
					if t1.UnixNano() <= prev || last.CompareAndSwap(prev, t1.UnixNano()) {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, time.Time{}, err
	}
	return lat, time.Unix(0, last.Load()), nil
}

// post submits raw until the API answers that it is committed.
func post(ctx context.Context, hc *http.Client, base string, raw []byte, retries *atomic.Int64) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/txs", bytes.NewReader(raw))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("couldn't read the answer: %w", err)
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			retries.Add(1)
			select {
			case <-time.After(retryPause):
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		var sr httpapi.SubmitResponse
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &sr) != nil || sr.Status != "committed" {
			return fmt.Errorf("the API answered %s: %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	}
}
