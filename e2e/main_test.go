package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
)

// imiBin is the imi binary TestMain built for this run.
var imiBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// The tests skip themselves; don't spend a build on them.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "imi-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "imi")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "github.com/imi-city/imi/cmd/imi")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: couldn't build imi:", err)
			return 1
		}
		imiBin = bin
		return m.Run()
	}()
	os.Exit(code)
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test against real imi processes; skipped with -short")
	}
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lockedBuffer is a bytes.Buffer safe for a process writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a running imi process (a node). Its stdout and stderr go to a
// log file shared by every start of the same node; stdout is also kept.
type proc struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	done   chan struct{}
	state  *os.ProcessState
	err    error
}

// startProc runs imi args in the background; the process is killed when the
// test ends if it is still running.
func startProc(t *testing.T, log io.Writer, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: new(lockedBuffer), done: make(chan struct{})}
	p.cmd = exec.Command(imiBin, args...)
	p.cmd.Env = append(os.Environ(), "IMI_HOME=", "IMI_NODE=")
	p.cmd.Stdout = io.MultiWriter(log, p.stdout)
	p.cmd.Stderr = log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("couldn't start imi %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// interrupt sends SIGINT and waits up to limit for the process to exit.
// It returns the exit code and how long the exit took.
func (p *proc) interrupt(limit time.Duration) (int, time.Duration, error) {
	start := time.Now()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		return -1, 0, err
	}
	select {
	case <-p.done:
		return p.state.ExitCode(), time.Since(start), nil
	case <-time.After(limit):
		p.kill()
		return -1, time.Since(start), fmt.Errorf("imi did not exit within %v of SIGINT", limit)
	}
}

// nodeLog is the log file of one node, kept in the test's temp dir; its
// tail is printed if the test fails.
func nodeLog(t *testing.T, dir string) (*os.File, string) {
	t.Helper()
	path := filepath.Join(dir, "node.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if d := os.Getenv("IMI_E2E_LOGDIR"); d != "" {
			// Keep the log for a post-mortem.
			if b, err := os.ReadFile(path); err == nil {
				_ = os.WriteFile(filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_")+".log"), b, 0o600)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(path)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("tail of %s:\n%s", path, b)
		}
	})
	return f, path
}

// cliResult is the outcome of one imi CLI command.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runIMI runs one CLI command to completion (bounded to a minute).
func runIMI(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, imiBin, args...)
	cmd.Env = append(os.Environ(), "IMI_HOME=", "IMI_NODE=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("imi %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("imi %s did not finish within a minute", strings.Join(args, " "))
	}
	return r
}

// mustIMI runs a CLI command that must succeed.
func mustIMI(t *testing.T, args ...string) cliResult {
	t.Helper()
	r := runIMI(t, args...)
	if r.code != 0 {
		t.Fatalf("imi %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// api is a bare HTTP client of one node, so the tests see status codes and
// problem documents exactly as the node sends them.
type api struct {
	base string
	hc   *http.Client
}

func newAPI(addr string) *api {
	return &api{base: "http://" + addr, hc: &http.Client{Timeout: 45 * time.Second}}
}

// do sends a request and returns the status and body; err is a transport
// failure (the node is down, the connection was cut).
func (a *api) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// getJSON GETs path and decodes a 200 answer into out.
func (a *api) getJSON(ctx context.Context, path string, out any) error {
	code, b, err := a.do(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

func (a *api) status(ctx context.Context) (*httpapi.StatusResponse, error) {
	var s httpapi.StatusResponse
	return &s, a.getJSON(ctx, "/v1/status", &s)
}

// waitReady polls /v1/status until the node answers with a committed height.
func (a *api) waitReady(ctx context.Context, p *proc, limit time.Duration) (*httpapi.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		s, err := a.status(ctx)
		if err == nil && s.Height > 0 {
			return s, nil
		}
		if p != nil && p.exited() {
			return nil, fmt.Errorf("imi exited (%v) before it was ready", p.err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("node at %s not ready within %v (last: %v)", a.base, limit, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitHeight waits until the node's committed height is at least h.
func (a *api) waitHeight(ctx context.Context, h int64, limit time.Duration) (*httpapi.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		s, err := a.status(ctx)
		if err == nil && s.Height >= h {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("height %d not reached within %v (last: %+v, %v)", h, limit, s, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (a *api) nextSeq(ctx context.Context, signer string, lane uint32) (uint64, error) {
	var r httpapi.SequenceResponse
	err := a.getJSON(ctx, fmt.Sprintf("/v1/accounts/%s/sequence?lane=%d", url.PathEscape(signer), lane), &r)
	return r.Next, err
}

// txResult returns a committed transaction's outcome; found is false on 404.
func (a *api) txResult(ctx context.Context, hash string) (res *httpapi.TxResponse, found bool, err error) {
	code, b, err := a.do(ctx, "GET", "/v1/txs/"+hash, nil)
	if err != nil {
		return nil, false, err
	}
	switch code {
	case http.StatusOK:
		var r httpapi.TxResponse
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, false, err
		}
		return &r, true, nil
	case http.StatusNotFound:
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("GET /v1/txs/%s: %d %s", hash, code, bytes.TrimSpace(b))
}

// resolve resolves a DID (as of height h unless 0, with a proof if asked)
// and returns the decoded answer and its exact bytes.
func (a *api) resolve(ctx context.Context, d string, h int64, proof bool) (*httpapi.ResolveResponse, []byte, error) {
	q := url.Values{}
	if h > 0 {
		q.Set("height", strconv.FormatInt(h, 10))
	}
	if proof {
		q.Set("proof", "true")
	}
	path := "/v1/dids/" + url.PathEscape(d)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	code, b, err := a.do(ctx, "GET", path, nil)
	if err != nil {
		return nil, nil, err
	}
	if code != http.StatusOK {
		return nil, b, fmt.Errorf("GET %s: %d %s", path, code, bytes.TrimSpace(b))
	}
	var r httpapi.ResolveResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, b, err
	}
	return &r, b, nil
}

// headerAppHash returns the app hash in the header of block h, which
// commits to the state after block h-1.
func (a *api) headerAppHash(ctx context.Context, h int64) ([]byte, error) {
	var r struct {
		Header struct {
			Height  string `json:"height"`
			AppHash string `json:"app_hash"`
		} `json:"header"`
	}
	if err := a.getJSON(ctx, fmt.Sprintf("/v1/blocks/%d/commit", h), &r); err != nil {
		return nil, err
	}
	if r.Header.Height != strconv.FormatInt(h, 10) {
		return nil, fmt.Errorf("asked for block %d, got header %q", h, r.Header.Height)
	}
	return hex.DecodeString(r.Header.AppHash)
}

// proofMatchesHeader checks that the node's state at height h (seen through
// a Merkle proof of a resident's DID record) is the one block h+1's header
// commits to.
func (a *api) proofMatchesHeader(ctx context.Context, d string, h int64) error {
	r, _, err := a.resolve(ctx, d, h, true)
	if err != nil {
		return err
	}
	if r.Proof == nil || r.Proof.Height != h {
		return fmt.Errorf("resolve %s at %d: no proof for that height (%+v)", d, h, r.Proof)
	}
	hdr, err := a.headerAppHash(ctx, h+1)
	if err != nil {
		return err
	}
	if !bytes.Equal(r.Proof.Root, hdr) {
		return fmt.Errorf("state root at height %d is %X, but the header of block %d commits to %X", h, []byte(r.Proof.Root), h+1, hdr)
	}
	if err := r.Proof.Verify(hdr); err != nil {
		return fmt.Errorf("proof at height %d against header %d: %w", h, h+1, err)
	}
	rec, err := ledger.ResidentFromProof(r.Proof)
	if err != nil || rec.DID != d {
		return fmt.Errorf("proof at height %d does not carry %s's record (%v)", h, d, err)
	}
	return nil
}

// problemOf decodes a problem+json body; nil if it is not one.
func problemOf(b []byte) *httpapi.Problem {
	var p httpapi.Problem
	if json.Unmarshal(b, &p) != nil || p.Reason == "" {
		return nil
	}
	return &p
}

// registrar is the demo registrar's keys, read from a node's home.
type registrar struct {
	key  key.Private
	did  string
	hmac key.HMAC
}

func loadRegistrar(t *testing.T, home string) registrar {
	t.Helper()
	k, err := key.ReadFile(district.KeyFile(home, district.RegistrarID))
	if err != nil {
		t.Fatal(err)
	}
	hk, err := key.ReadHMACFile(district.UniquenessKeyFile(home))
	if err != nil {
		t.Fatal(err)
	}
	return registrar{key: k, did: didOf(k.Public()), hmac: hk}
}

// setConfig sets one top-level setting in home's imi.toml, as an operator
// would edit it.
func setConfig(t *testing.T, home, name, value string) {
	t.Helper()
	path := filepath.Join(home, district.ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` = .*$`)
	if !re.Match(b) {
		t.Fatalf("%s has no setting %s", path, name)
	}
	b = re.ReplaceAll(b, []byte(name+" = "+strconv.Quote(value)))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// initNode writes a node home with its own API and P2P ports, so nodes of
// parallel tests (and other programs on the host) don't collide.
func initNode(t *testing.T, home string) (apiAddr string) {
	t.Helper()
	apiAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p2p := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	mustIMI(t, "init", "--home", home, "--http", apiAddr, "--p2p", p2p)
	return apiAddr
}
