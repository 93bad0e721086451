package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/district"
)

// asIMI makes the test binary run as imi, for the children of testnet up.
const asIMI = "IMI_CMD_TEST_RUN_AS_IMI"

func TestMain(m *testing.M) {
	if os.Getenv(asIMI) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestTestnetHelp(t *testing.T) {
	for _, args := range [][]string{{"testnet", "--help"}, {"testnet", "up", "--help"}, {"help", "testnet"}} {
		e, _, errb := testEnv("")
		if err := run(context.Background(), e, args); !errors.Is(err, flag.ErrHelp) && err != nil {
			t.Errorf("%v: %v", args, err)
		}
		if !strings.Contains(errb.String(), "Usage: imi testnet") || !strings.Contains(errb.String(), "Examples:") {
			t.Errorf("%v shows:\n%s", args, errb)
		}
	}
}

func TestTestnetUsageErrors(t *testing.T) {
	dir := t.TempDir()
	e, _, _ := testEnv("")
	if err := run(context.Background(), e, []string{"testnet", "--validators", "1", "--out", dir}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"testnet"},
		{"testnet", "--validators", "0", "--out", filepath.Join(dir, "x")},
		{"testnet", "--standby", "-1", "--out", filepath.Join(dir, "x")},
		{"testnet", "--out", filepath.Join(dir, "x"), "extra"},
		{"testnet", "--frobnicate"},
		{"testnet", "up"},
		{"testnet", "up", "--dir", dir, "--nodes", "node0,node9"},
		{"testnet", "up", "--dir", dir, "node0"},
	} {
		e, _, _ := testEnv("")
		err := run(context.Background(), e, args)
		if !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
	// Not usage errors, but refused.
	for _, args := range [][]string{
		{"testnet", "--out", dir},               // not empty
		{"testnet", "up", "--dir", t.TempDir()}, // no testnet there
		{"testnet", "--base-port", "65500", "--out", filepath.Join(dir, "y")},
	} {
		e, _, _ := testEnv("")
		if err := run(context.Background(), e, args); err == nil || exitCode(err) != 1 {
			t.Errorf("%v: err = %v, want a failure", args, err)
		}
	}
}

func TestTestnetPrintsHowToJoin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my net")
	e, out, _ := testEnv("")
	if err := run(context.Background(), e, []string{"testnet", "--validators", "4", "--standby", "2", "--out", dir, "--base-port", "40000", "--chain-id", "imi-try-1"}); err != nil {
		t.Fatal(err)
	}
	nodes, err := district.ReadTestnet(dir)
	if err != nil {
		t.Fatal(err)
	}
	home := func(i int) string { return "'" + filepath.Join(dir, "node"+strconv.Itoa(i)) + "'" }
	s4 := nodes[4]
	for _, want := range []string{
		"chain imi-try-1",
		"node0  cc-psb       http://127.0.0.1:40000  127.0.0.1:40100  validator",
		"node4  authority-4  http://127.0.0.1:40004  127.0.0.1:40104  standby",
		"imi testnet up --dir '" + dir + "'",
		"imi node --home " + home(4),
		"imi status --each --node http://127.0.0.1:40000,http://127.0.0.1:40001,http://127.0.0.1:40002,http://127.0.0.1:40003,http://127.0.0.1:40004,http://127.0.0.1:40005\n",
		"imi authority propose --as cc-psb --home " + home(0) + " --node http://127.0.0.1:40000",
		"--action add_authority --id authority-4 --name-zh 测试机构4 --name-en 'Test Authority 4'",
		"--public-key " + s4.AuthorityKey.String() + " --roles service_provider",
		"--validator-key " + base64.StdEncoding.EncodeToString(s4.ValidatorKey) + " --power 10 --endpoint http://127.0.0.1:40004",
		"2 more approve (3 of 4 authorities",
		"imi authority vote --as cc-hrss --home " + home(1) + " --node http://127.0.0.1:40001 --proposal p-1",
		"imi authority vote --as cc-hsb --home " + home(2) + " --node http://127.0.0.1:40002 --proposal p-1",
		// The second standby authority needs one approval more.
		"3 more approve (4 of 5 authorities",
		"imi authority vote --as cc-utility --home " + home(3) + " --node http://127.0.0.1:40003 --proposal p-2",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out.String(), "--as cc-utility --home "+home(3)+" --node http://127.0.0.1:40003 --proposal p-1") {
		t.Error("asks for a fourth approval of p-1")
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/net/node0":   "/tmp/net/node0",
		"测试机构4":            "测试机构4",
		"Test Authority 4": "'Test Authority 4'",
		"it's":             `'it'\''s'`,
		"":                 "''",
		"$HOME":            "'$HOME'",
	} {
		if got := sh(in); got != want {
			t.Errorf("sh(%q) = %s, want %s", in, got, want)
		}
	}
}

// syncBuffer is an io.Writer the test reads while children write.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeBasePort(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(30000)
		ok := true
		for i := range n {
			for _, p := range []int{base + i, base + 100 + i} {
				ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
				if err != nil {
					ok = false
					continue
				}
				ln.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestTestnetUp runs imi testnet up on a two-validator testnet, with this
// test binary standing in for imi, until both nodes are ready, then stops it.
func TestTestnetUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two nodes")
	}
	dir := t.TempDir()
	e, _, _ := testEnv("")
	if err := run(context.Background(), e, []string{"testnet", "--validators", "2", "--standby", "1", "--out", dir, "--base-port", strconv.Itoa(freeBasePort(t, 3))}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(asIMI, "1")
	var out, errb syncBuffer
	e = &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- run(ctx, e, []string{"testnet", "up", "--dir", dir, "--nodes", "node0,node1"}) }()
	for !strings.Contains(out.String(), "All 2 nodes are up.") {
		select {
		case err := <-done:
			t.Fatalf("testnet up returned %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errb)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 60*time.Second {
			cancel()
			t.Fatalf("not up after a minute\nstdout:\n%s\nstderr:\n%s", &out, &errb)
		}
	}
	t.Logf("two nodes up after %v", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"node0 ready  http://", "(cc-psb, validator)", "(cc-hrss, validator)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, &out)
		}
	}
	if !strings.Contains(errb.String(), "node1 | ") || strings.Contains(errb.String(), "node2 | ") {
		t.Errorf("stderr is not node1's and node0's prefixed log:\n%s", &errb)
	}
	cancel()
	stopping := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("testnet up: %v", err)
		}
	case <-time.After(stopGrace + 5*time.Second):
		t.Fatal("testnet up did not stop")
	}
	t.Logf("stopped in %v", time.Since(stopping).Round(time.Millisecond))
	for _, want := range []string{"node0 stopped: exit status 0", "node1 stopped: exit status 0", "node0 | IMI node running", "node1 | IMI node running"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, &errb)
		}
	}
}

// fakeNode writes a shell script that stands in for imi.
func fakeNode(t *testing.T, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "imi")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTestnetUpKillsStubbornNodes(t *testing.T) {
	defer func(g time.Duration) { stopGrace = g }(stopGrace)
	stopGrace = 300 * time.Millisecond
	exe := fakeNode(t, `echo "$1 $2 $3"; trap '' TERM; exec sleep 60`)
	nodes := []district.TestnetNode{{Name: "node0", Home: "/h0", HTTP: "127.0.0.1:1"}, {Name: "node1", Home: "/h1", HTTP: "127.0.0.1:1"}}
	var out, errb syncBuffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := upTestnet(ctx, e, exe, nodes)
	if err == nil || !strings.Contains(err.Error(), "killed node0, node1") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	for _, want := range []string{"node0 | node --home /h0", "node1 | node --home /h1"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, &errb)
		}
	}
}

func TestTestnetUpEndsWhenEveryNodeExits(t *testing.T) {
	exe := fakeNode(t, `echo "port taken" >&2; exit 3`)
	nodes := []district.TestnetNode{{Name: "node0", Home: "/h0", HTTP: "127.0.0.1:1"}}
	var out, errb syncBuffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	err := upTestnet(context.Background(), e, exe, nodes)
	if err == nil || !strings.Contains(err.Error(), "every node exited") {
		t.Errorf("err = %v", err)
	}
	for _, want := range []string{"node0 | port taken", "node0 exited: exit status 3"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, &errb)
		}
	}
}
