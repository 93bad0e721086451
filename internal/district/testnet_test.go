package district

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/node"
)

var testGenesisTime = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// freeBasePort finds a base port for WriteTestnet whose n HTTP and n P2P
// ports nobody listens on right now.
func freeBasePort(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(30000)
		var lns []net.Listener
		ok := true
		for i := range n {
			for _, p := range []int{base + i, base + p2pPortOffset + i} {
				ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
				if err != nil {
					ok = false
					break
				}
				lns = append(lns, ln)
			}
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

func TestWriteTestnet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	nodes, err := WriteTestnet(dir, TestnetOptions{Validators: 4, Standby: 2, BasePort: 31000, GenesisTime: testGenesisTime})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(nodes))
	}
	wantIDs := []string{"cc-psb", "cc-hrss", "cc-hsb", "cc-utility", "authority-4", "authority-5"}
	seen := map[string]bool{}
	unique := func(what, v string) {
		t.Helper()
		if seen[what+v] {
			t.Errorf("%s %s used twice", what, v)
		}
		seen[what+v] = true
	}
	var genesisFile []byte
	var genesisSection string
	for i, n := range nodes {
		if n.Name != fmt.Sprintf("node%d", i) || n.Home != filepath.Join(dir, n.Name) || n.AuthorityID != wantIDs[i] {
			t.Errorf("node %d = %s in %s for %s", i, n.Name, n.Home, n.AuthorityID)
		}
		if n.HTTP != fmt.Sprintf("127.0.0.1:%d", 31000+i) || n.P2P != fmt.Sprintf("127.0.0.1:%d", 31100+i) {
			t.Errorf("%s listens on %s and %s", n.Name, n.HTTP, n.P2P)
		}
		if n.Validator != (i < 4) {
			t.Errorf("%s validator = %v", n.Name, n.Validator)
		}
		for what, v := range map[string]string{"http": n.HTTP, "p2p": n.P2P, "node id": n.NodeID,
			"validator key": string(n.ValidatorKey), "authority key": n.AuthorityKey.String()} {
			unique(what, v)
		}

		// The same genesis everywhere, in imi.toml and in genesis.json.
		g, err := os.ReadFile(filepath.Join(n.Home, "comet", "config", "genesis.json"))
		if err != nil {
			t.Fatal(err)
		}
		conf, err := os.ReadFile(filepath.Join(n.Home, ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		_, section, ok := strings.Cut(string(conf), "\n[genesis]\n")
		if !ok {
			t.Fatalf("%s: imi.toml has no [genesis]", n.Name)
		}
		if i == 0 {
			genesisFile, genesisSection = g, section
		} else if !bytes.Equal(g, genesisFile) || section != genesisSection {
			t.Errorf("%s has another genesis than node0", n.Name)
		}

		cfg, err := LoadConfig(n.Home)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ChainID != DefaultTestnetChainID || cfg.Moniker != n.Name || cfg.HTTP != n.HTTP || cfg.P2P != "tcp://"+n.P2P {
			t.Errorf("%s: imi.toml says %s, %s, %s, %s", n.Name, cfg.ChainID, cfg.Moniker, cfg.HTTP, cfg.P2P)
		}
		// Peers: every other founding node.
		var want []string
		for j, p := range nodes[:4] {
			if j != i {
				want = append(want, p.NodeID+"@"+p.P2P)
			}
		}
		if got := strings.Split(cfg.PersistentPeers, ","); !slices.Equal(got, want) {
			t.Errorf("%s peers = %v, want %v", n.Name, got, want)
		}

		// Only the node's own authority key (and the registrar's HMAC key).
		entries, err := os.ReadDir(filepath.Join(n.Home, "keys"))
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		for _, e := range entries {
			files = append(files, e.Name())
		}
		wantFiles := []string{n.AuthorityID + ".key"}
		if n.AuthorityID == RegistrarID {
			wantFiles = append(wantFiles, "registrar-uniqueness.key")
		}
		if !slices.Equal(files, wantFiles) {
			t.Errorf("%s keys/ = %v, want %v", n.Name, files, wantFiles)
		}
		// Every node signs its own authority's status lists, a standby one
		// (which joins by a vote later) included, and no other's.
		if ks := issuerKeys(n.Home, slog.New(slog.DiscardHandler)); len(ks) != 1 || ks[n.AuthorityID].IsZero() {
			t.Errorf("%s signs status lists for %d authorities, want only its own", n.Name, len(ks))
		}
	}

	// The genesis: the four founders at power 10, the standby ones absent.
	g, err := node.ReadGenesis(node.Config{Home: nodes[0].Home})
	if err != nil {
		t.Fatal(err)
	}
	if g.ChainID != DefaultTestnetChainID || !g.GenesisTime.Equal(testGenesisTime) || len(g.Validators) != 4 {
		t.Fatalf("genesis = %s at %v with %d validators", g.ChainID, g.GenesisTime, len(g.Validators))
	}
	for i, v := range g.Validators {
		if v.Name != nodes[i].AuthorityID || !bytes.Equal(v.PubKey, nodes[i].ValidatorKey) || v.Power != TestnetPower {
			t.Errorf("validator %d = %s %x %d", i, v.Name, v.PubKey, v.Power)
		}
	}
	cfg, _ := LoadConfig(nodes[0].Home)
	var founders []string
	for _, a := range cfg.Genesis.Authorities {
		founders = append(founders, a.ID)
		if a.Endpoint == "" || a.ValidatorKey == "" || a.Power != TestnetPower {
			t.Errorf("authority %+v", a)
		}
	}
	if !slices.Equal(founders, wantIDs[:4]) {
		t.Errorf("founding authorities %v", founders)
	}
	if len(cfg.Genesis.CredentialTypes) == 0 {
		t.Error("no credential types in the genesis")
	}
	if !strings.Contains(string(genesisFile), `"app_state"`) || strings.Contains(string(genesisFile), "authority-4") {
		t.Error("a standby authority is in the genesis")
	}

	read, err := ReadTestnet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(read, nodes) {
		t.Errorf("ReadTestnet = %+v\nwant %+v", read, nodes)
	}

	if _, err := WriteTestnet(dir, TestnetOptions{Validators: 1, GenesisTime: testGenesisTime}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("second write into %s: %v", dir, err)
	}
}

func TestWriteTestnetFewerThanFour(t *testing.T) {
	dir := t.TempDir()
	nodes, err := WriteTestnet(dir, TestnetOptions{Validators: 2, Standby: 1, GenesisTime: testGenesisTime})
	if err != nil {
		t.Fatal(err)
	}
	// cc-hsb stands by: its credential type waits for it.
	cfg, err := LoadConfig(nodes[2].Home)
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range cfg.Genesis.CredentialTypes {
		if ct.Issuer != "cc-psb" && ct.Issuer != "cc-hrss" {
			t.Errorf("credential type %s of %s, who is not a founder", ct.ID, ct.Issuer)
		}
	}
	if nodes[0].HTTP != "127.0.0.1:26700" || nodes[2].P2P != "127.0.0.1:26802" {
		t.Errorf("default ports: %s, %s", nodes[0].HTTP, nodes[2].P2P)
	}
}

func TestWriteTestnetRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    TestnetOptions
		want string
	}{
		{"no validators", TestnetOptions{Standby: 1, GenesisTime: testGenesisTime}, "at least one validator"},
		{"negative standby", TestnetOptions{Validators: 1, Standby: -1, GenesisTime: testGenesisTime}, "negative"},
		{"too many", TestnetOptions{Validators: 90, Standby: 11, GenesisTime: testGenesisTime}, "at most 100"},
		{"ports", TestnetOptions{Validators: 4, BasePort: 65500, GenesisTime: testGenesisTime}, "no room"},
		{"no time", TestnetOptions{Validators: 4}, "genesis time"},
		{"chain id", TestnetOptions{Validators: 1, ChainID: strings.Repeat("x", 51), GenesisTime: testGenesisTime}, "chain ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "net")
			_, err := WriteTestnet(dir, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("wrote a directory for refused options")
			}
		})
	}
	if _, err := ReadTestnet(t.TempDir()); err == nil {
		t.Error("ReadTestnet of an empty directory")
	}
}

func TestLoopbackListen(t *testing.T) {
	for in, want := range map[string]bool{
		"":                      true,
		"tcp://127.0.0.1:26656": true,
		"tcp://[::1]:26656":     true,
		"tcp://localhost:1":     true,
		"127.0.0.2:26656":       true,
		"tcp://0.0.0.0:26656":   false,
		"tcp://10.1.2.3:26656":  false,
		"tcp://node.example:1":  false,
		"nonsense":              false,
	} {
		if got := loopbackListen(in); got != want {
			t.Errorf("loopbackListen(%q) = %v, want %v", in, got, want)
		}
	}
}

// lockedBuffer collects a node's log for the test's failure output.
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

// runningNode is a node started by startNode.
type runningNode struct {
	n      TestnetNode
	cancel context.CancelFunc
	done   chan error
	log    *lockedBuffer
}

// startNode runs the node of n in this process until stop.
func startNode(t *testing.T, n TestnetNode) *runningNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningNode{n: n, cancel: cancel, done: make(chan error, 1), log: new(lockedBuffer)}
	log := slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ready := make(chan struct{})
	go func() { r.done <- Run(ctx, n.Home, RunOptions{Log: log, Ready: func(Info) { close(ready) }}) }()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("%s: %v", n.Name, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start", n.Name)
	}
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("log of %s:\n%s", n.Name, r.log)
		}
	})
	return r
}

func (r *runningNode) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("%s stopped with %v", r.n.Name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop", r.n.Name)
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(v)
}

// waitHeader waits until n has committed block h and the next, with the
// validators of the testnet's founding nodes, and returns block h's header.
func waitHeader(ctx context.Context, t *testing.T, n TestnetNode, h int64, founders []TestnetNode) json.RawMessage {
	t.Helper()
	var s httpapi.StatusResponse
	for {
		err := getJSON(ctx, "http://"+n.HTTP+"/v1/status", &s)
		if err == nil && s.Height > h && sameValidators(s.Chain.Validators, founders) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: no block %d with the %d founding validators (last status %+v, %v)", n.Name, h, len(founders), s, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	var b SignedBlock
	if err := getJSON(ctx, fmt.Sprintf("http://%s/v1/blocks/%d/commit", n.HTTP, h), &b); err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	return b.Header
}

func sameValidators(vs []httpapi.Validator, founders []TestnetNode) bool {
	var got, want []string
	for _, v := range vs {
		got = append(got, fmt.Sprintf("%s/%d", v.PubKey, v.Power))
	}
	for _, n := range founders {
		want = append(want, fmt.Sprintf("%s/%d", base64.StdEncoding.EncodeToString(n.ValidatorKey), TestnetPower))
	}
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

// TestTestnetRuns starts the four validators of a testnet in this process,
// waits until they agree on block 3, then starts the standby node, which
// catches up by block sync.
func TestTestnetRuns(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	nodes, err := WriteTestnet(dir, TestnetOptions{Validators: 4, Standby: 1, BasePort: freeBasePort(t, 5),
		GenesisTime: time.Now().Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	// Raise the pace: a test has no stragglers to wait for.
	for _, n := range nodes {
		path := filepath.Join(n.Home, ConfigFile)
		b, _ := os.ReadFile(path)
		os.WriteFile(path, bytes.Replace(b, []byte(`timeout_commit = "500ms"`), []byte(`timeout_commit = "100ms"`), 1), 0o600)
	}
	var running []*runningNode
	for _, n := range nodes[:4] {
		running = append(running, startNode(t, n))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const h = 3
	want := waitHeader(ctx, t, nodes[0], h, nodes[:4])
	for _, n := range nodes[1:4] {
		if got := waitHeader(ctx, t, n, h, nodes[:4]); !bytes.Equal(got, want) {
			t.Errorf("%s has another block %d:\n%s\nnode0:\n%s", n.Name, h, got, want)
		}
	}
	t.Logf("4 validators agree on block %d after %v", h, time.Since(start).Round(time.Millisecond))

	standby := startNode(t, nodes[4])
	if got := waitHeader(ctx, t, nodes[4], h, nodes[:4]); !bytes.Equal(got, want) {
		t.Errorf("the standby node has another block %d", h)
	}
	t.Logf("the standby node caught up after %v", time.Since(start).Round(time.Millisecond))
	standby.stop(t)
	for _, r := range running {
		r.stop(t)
	}
}
