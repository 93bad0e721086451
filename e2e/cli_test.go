package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/httpapi"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/node"
)

// portFree reports whether a TCP address can be listened on right now.
func portFree(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// TestCLIWalkthrough is the five-minute walkthrough, run as an operator, a
// registrar and a resident would type it.
func TestCLIWalkthrough(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	home := filepath.Join(dir, "district")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logf, _ := nodeLog(t, dir)

	// imi up creates the district on first start. It has no flag for the
	// P2P port, which defaults to 26656; if something on this host holds
	// that port, write the home first with imi init and a free one.
	fresh := portFree(strings.TrimPrefix(node.DefaultP2PListen, "tcp://"))
	if !fresh {
		t.Logf("%s is in use on this host; imi up cannot take another P2P port, so the home is written by imi init first", node.DefaultP2PListen)
		mustIMI(t, "init", "--home", home, "--http", addr, "--p2p", fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t)))
	}
	up := startProc(t, logf, "up", "--home", home, "--http", addr)
	a := newAPI(addr)
	if _, err := a.waitReady(ctx, up, time.Minute); err != nil {
		t.Fatal(err)
	}
	if fresh && !strings.Contains(up.stdout.String(), "(created)") {
		t.Errorf("imi up on a new home does not say it created the chain:\n%s", up.stdout)
	}
	nodeFlag := []string{"--node", a.base}
	signer := func(id string) []string { return append([]string{"--as", id, "--home", home}, nodeFlag...) }
	resolve := func(args ...string) *httpapi.ResolveResponse {
		t.Helper()
		r := mustIMI(t, append(append([]string{"did", "resolve"}, args...), nodeFlag...)...)
		var res httpapi.ResolveResponse
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("did resolve printed no JSON: %v\n%s", err, r)
		}
		return &res
	}
	wantKey := func(res *httpapi.ResolveResponse, d string, version int, k key.Public) {
		t.Helper()
		vm := res.Document.VerificationMethod
		if len(vm) != 1 || vm[0].ID != fmt.Sprintf("%s#key-%d", d, version) || vm[0].PublicKeyJwk != did.NewJWK(k) {
			t.Errorf("want %s#key-%d with %s; got %+v", d, version, k, vm)
		}
	}
	currentKey := func(wallet string) key.Public {
		t.Helper()
		k, err := key.ReadFile(filepath.Join(wallet, "resident.key"))
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}

	// A resident makes keys; the registrar anchors the DID.
	alice := filepath.Join(dir, "alice")
	r := mustIMI(t, "resident keygen", "--dir", alice)
	m := regexp.MustCompile(`Your DID will be (did:imi:[a-z2-7]+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("keygen did not name the DID:\n%s", r)
	}
	aliceDID, key1 := m[1], currentKey(alice)
	idNumber := syntheticID(t, "440604", 1990, 3, 7, 1, false)
	r = mustIMI(t, append([]string{"registrar", "register", "--request", filepath.Join(alice, "request.json"), "--id-number", idNumber}, signer("cc-psb")...)...)
	hm := heightRe.FindStringSubmatch(r.stdout)
	if hm == nil || !strings.Contains(r.stdout, aliceDID) {
		t.Fatalf("register did not report the DID and height:\n%s", r)
	}
	regHeight, _ := strconv.ParseInt(hm[1], 10, 64)

	// Anyone resolves it, and can check it against the signed chain.
	wantKey(resolve(aliceDID), aliceDID, 1, key1)
	r = mustIMI(t, append([]string{"did", "resolve", aliceDID, "--verify"}, nodeFlag...)...)
	if !strings.Contains(r.stderr, "verified") {
		t.Errorf("--verify did not say verified:\n%s", r)
	}

	// The resident rotates; the past stays resolvable.
	mustIMI(t, append([]string{"resident", "rotate", "--dir", alice}, nodeFlag...)...)
	key2 := currentKey(alice)
	if key2.Equal(key1) {
		t.Fatal("rotate left the key file unchanged")
	}
	wantKey(resolve(aliceDID), aliceDID, 2, key2)
	wantKey(resolve(aliceDID, "--height", strconv.FormatInt(regHeight, 10)), aliceDID, 1, key1)

	// Recovery with the pre-committed recovery key.
	mustIMI(t, append([]string{"resident", "recover", "--dir", alice}, nodeFlag...)...)
	wantKey(resolve(aliceDID), aliceDID, 3, currentKey(alice))

	// The same person cannot register twice.
	bob := filepath.Join(dir, "bob")
	mustIMI(t, "resident keygen", "--dir", bob)
	r = runIMI(t, append([]string{"registrar", "register", "--request", filepath.Join(bob, "request.json"), "--id-number", idNumber}, signer("cc-psb")...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "already registered") {
		t.Errorf("second registration of one ID number: want exit 1 and 'already registered':\n%s", r)
	}

	// A mistyped number is refused before anything is sent: the CLI is
	// pointed at a server that only counts requests.
	var sent atomic.Int64
	counter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		sent.Add(1)
		http.Error(w, "nothing should reach me", http.StatusTeapot)
	}))
	defer counter.Close()
	mistyped := idNumber[:16] + string("0123456789"[(idNumber[16]-'0'+1)%10]) + idNumber[17:]
	r = runIMI(t, "registrar", "register", "--as", "cc-psb", "--home", home, "--node", counter.URL, "--request", filepath.Join(bob, "request.json"), "--id-number", mistyped)
	if r.code != 1 || !strings.Contains(r.stderr, "check digit") {
		t.Errorf("mistyped ID number: want exit 1 and a check-digit message:\n%s", r)
	}
	if n := sent.Load(); n != 0 {
		t.Errorf("a mistyped ID number made the CLI send %d requests", n)
	}

	// Government-backed recovery: re-proofing in person binds new keys.
	aliceNew := filepath.Join(dir, "alice-new")
	mustIMI(t, "resident keygen", "--dir", aliceNew)
	mustIMI(t, append([]string{"registrar", "reproof", "--did", aliceDID, "--request", filepath.Join(aliceNew, "request.json"), "--id-number", idNumber}, signer("cc-psb")...)...)
	wantKey(resolve(aliceDID), aliceDID, 4, currentKey(aliceNew))

	// The resident moves away.
	mustIMI(t, append([]string{"registrar", "deactivate", "--did", aliceDID, "--reason", "moved_away"}, signer("cc-psb")...)...)
	res := resolve(aliceDID)
	if !res.Metadata.Deactivated || res.Metadata.DeactivationReason != "moved_away" || len(res.Document.VerificationMethod) != 0 {
		t.Errorf("after deactivation: %+v, %+v", res.Metadata, res.Document)
	}

	// Governance: four founding authorities; three of four add a fifth.
	authorities := func() []string {
		t.Helper()
		r := mustIMI(t, append([]string{"authority", "list"}, nodeFlag...)...)
		rj := mustIMI(t, append([]string{"authority", "list", "--json"}, nodeFlag...)...)
		var list httpapi.AuthoritiesResponse
		if err := json.Unmarshal([]byte(rj.stdout), &list); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, au := range list.Authorities {
			ids = append(ids, au.ID)
			if !strings.Contains(r.stdout, au.ID) {
				t.Errorf("authority list does not show %s:\n%s", au.ID, r.stdout)
			}
		}
		return ids
	}
	if ids := authorities(); len(ids) != 4 {
		t.Fatalf("want the four founding authorities, got %v", ids)
	}
	r = mustIMI(t, "authority", "keygen", "--out", filepath.Join(dir, "cc-tax.key"))
	pub := regexp.MustCompile(`ed25519-pub:\S+`).FindString(r.stdout)
	if pub == "" {
		t.Fatalf("authority keygen printed no public key:\n%s", r)
	}
	mustIMI(t, append([]string{"authority", "propose", "--action", "add_authority", "--id", "cc-tax",
		"--name-zh", "禅城区税务局", "--name-en", "Chancheng Tax Bureau", "--public-key", pub,
		"--roles", "service_provider", "--reference", "CC-GOV/2026-014"}, signer("cc-psb")...)...)
	r = mustIMI(t, append([]string{"authority", "proposals"}, nodeFlag...)...)
	if !regexp.MustCompile(`(?m)^p-1\s+add_authority\s+cc-tax\s+pending\s+cc-psb\s`).MatchString(r.stdout) {
		t.Errorf("proposals do not show p-1 pending with cc-psb's approval:\n%s", r.stdout)
	}
	r = mustIMI(t, append([]string{"authority", "vote", "--proposal", "p-1"}, signer("cc-hrss")...)...)
	if !strings.Contains(r.stdout, "Status: pending") {
		t.Errorf("two of four approvals should leave p-1 pending:\n%s", r.stdout)
	}
	r = mustIMI(t, append([]string{"authority", "vote", "--proposal", "p-1"}, signer("cc-hsb")...)...)
	if !strings.Contains(r.stdout, "Status: executed") {
		t.Errorf("three of four approvals should carry p-1:\n%s", r.stdout)
	}
	if ids := authorities(); len(ids) != 5 || !strings.Contains(strings.Join(ids, ","), "cc-tax") {
		t.Errorf("want five authorities with cc-tax, got %v", ids)
	}

	// Ctrl-C stops the node cleanly and quickly.
	before, err := a.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	code, took, err := up.interrupt(10 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("imi up after SIGINT: exit %d after %v: %v", code, took, err)
	}
	if took > 5*time.Second {
		t.Errorf("imi up took %v to stop after SIGINT", took)
	}
	t.Logf("imi up stopped %v after SIGINT, at height %d", took.Round(time.Millisecond), before.Height)

	// Started again on the same home, it resumes the chain.
	up = startProc(t, logf, "up", "--home", home, "--http", addr)
	after, err := a.waitReady(ctx, up, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if after.Height < before.Height || !strings.Contains(up.stdout.String(), "(resumed)") {
		t.Errorf("restart: height %d (was %d); imi up said:\n%s", after.Height, before.Height, up.stdout)
	}
	if _, err := a.waitHeight(ctx, after.Height+1, 20*time.Second); err != nil {
		t.Errorf("the chain does not move on after the restart: %v", err)
	}
	res = resolve(aliceDID)
	if res.Document == nil || res.Document.ID != aliceDID || !res.Metadata.Deactivated {
		t.Errorf("after the restart %s resolves to %+v", aliceDID, res)
	}
	wantKey(resolve(aliceDID, "--height", strconv.FormatInt(regHeight, 10)), aliceDID, 1, key1)
	if ids := authorities(); len(ids) != 5 {
		t.Errorf("after the restart: %v", ids)
	}
	if code, took, err := up.interrupt(10 * time.Second); err != nil || code != 0 {
		t.Errorf("second imi up after SIGINT: exit %d after %v: %v", code, took, err)
	}
}
