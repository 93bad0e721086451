package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/tx"
)

// recorder is a reverse proxy in front of a node that keeps every request
// the CLI sends, so a test can check what went over the wire.
type recorder struct {
	*httptest.Server
	mu       sync.Mutex
	requests int
	traffic  bytes.Buffer
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.mu.Lock()
		r.requests++
		fmt.Fprintf(&r.traffic, "%s %s\n%s\n%s\n", req.Method, req.URL.RequestURI(), req.Header, body)
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.traffic.Bytes())
}

// needle is a byte string to look for, with a name for the report.
type needle struct {
	name string
	b    []byte
}

// idNeedles are the forms in which an ID number could leak: as typed, and
// as the plain SHA-256 a careless implementation would put on chain instead
// of the keyed uniqueness tag, in the encodings IMI uses.
func idNeedles(n string) []needle {
	sum := sha256.Sum256([]byte(n))
	out := []needle{
		{n + " (ASCII)", []byte(n)},
		{n + " sha256 raw", sum[:]},
		{n + " sha256 hex", []byte(hex.EncodeToString(sum[:]))},
		{n + " sha256 HEX", []byte(strings.ToUpper(hex.EncodeToString(sum[:])))},
		{n + " sha256 base64url", []byte(base64.RawURLEncoding.EncodeToString(sum[:]))},
		{n + " sha256 base64", []byte(base64.StdEncoding.EncodeToString(sum[:]))},
	}
	if strings.HasSuffix(n, "X") {
		out = append(out, needle{n + " (lower-case x)", []byte(strings.ToLower(n))})
	}
	return out
}

// scanTarget is one blob scanned for needles.
type scanTarget struct {
	name string
	b    []byte
}

// filesUnder reads every regular file under root, raw: nothing is
// decompressed or decoded.
func filesUnder(t *testing.T, root string) []scanTarget {
	t.Helper()
	var out []scanTarget
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, scanTarget{name: filepath.Join(filepath.Base(root), rel), b: b})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hits returns where n occurs in the targets.
func hits(n needle, targets []scanTarget) []string {
	var where []string
	for _, tg := range targets {
		if i := bytes.Index(tg.b, n.b); i >= 0 {
			where = append(where, fmt.Sprintf("%s@%d", tg.name, i))
		}
	}
	return where
}

// syntheticID returns a valid ID number built from the given date whose
// check character is X or not, as wantX says (seq is searched for one).
func syntheticID(t *testing.T, region string, y, m, d, seq int, wantX bool) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		n, err := idnumber.Example(region, y, m, d, (seq+i)%1000)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(n.String(), "X") == wantX {
			return n.String()
		}
	}
	t.Fatal("no ID number with check character X")
	return ""
}

var heightRe = regexp.MustCompile(`at height (\d+)`)

func TestNoPersonalDataOnDisk(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	addr := initNode(t, home)
	logf, logPath := nodeLog(t, dir)
	node := startProc(t, logf, "node", "--home", home)
	a := newAPI(addr)
	st, err := a.waitReady(ctx, node, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, a.base)
	nodeURL := rec.URL
	wallets := filepath.Join(dir, "wallets")
	keygen := func(name string) string {
		d := filepath.Join(wallets, name)
		mustIMI(t, "resident keygen", "--dir", d)
		return d
	}
	signer := []string{"--as", "cc-psb", "--home", home, "--node", nodeURL}
	cli := func(args ...string) cliResult {
		return runIMI(t, append(strings.Fields(args[0]), append(args[1:], signer...)...)...)
	}

	// The ID numbers that pass through the registration path. One ends in X
	// and is typed in lower case, as a clerk might.
	ids := []string{
		syntheticID(t, "440604", 1987, 6, 5, 123, false),
		syntheticID(t, "440604", 1992, 11, 30, 457, false),
		syntheticID(t, "440602", 1975, 2, 14, 9, true),
	}
	var idsSeen []string // every ID number given to the CLI, in any path
	var tags []needle    // uniqueness tags of the registered numbers: expected on chain
	reg := loadRegistrar(t, home)
	dids := make([]string, len(ids))
	for i, n := range ids {
		w := keygen(fmt.Sprintf("r%d", i))
		typed := n
		if strings.HasSuffix(n, "X") {
			typed = strings.ToLower(n)
		}
		r := cli("registrar register", "--request", filepath.Join(w, "request.json"), "--id-number", typed)
		if r.code != 0 {
			t.Fatalf("register %d: %s", i, r)
		}
		dids[i] = strings.Fields(r.stdout)[1]
		idsSeen = append(idsSeen, n)
		num, err := idnumber.Parse(n)
		if err != nil {
			t.Fatal(err)
		}
		tag := idnumber.UniquenessTag(reg.hmac, num)
		tags = append(tags, needle{"uniqueness tag of " + n, []byte(base64.RawURLEncoding.EncodeToString(tag[:]))})
	}
	// Re-proofing passes the number again.
	if r := cli("registrar reproof", "--did", dids[0], "--request", filepath.Join(keygen("r0-new"), "request.json"), "--id-number", ids[0]); r.code != 0 {
		t.Fatalf("reproof: %s", r)
	}
	// A second registration of a number is refused, after the tag went out.
	if r := cli("registrar register", "--request", filepath.Join(keygen("dup"), "request.json"), "--id-number", ids[1]); r.code != 1 || !strings.Contains(r.stderr, "already_registered") {
		t.Fatalf("duplicate registration: %s", r)
	}
	// A mistyped number is refused before anything is sent.
	mistyped := []byte(ids[1])
	mistyped[17] = "0123456789"[(mistyped[17]-'0'+1)%10]
	before := rec.count()
	if r := cli("registrar register", "--request", filepath.Join(keygen("typo"), "request.json"), "--id-number", string(mistyped)); r.code != 1 || !strings.Contains(r.stderr, "check digit") {
		t.Fatalf("mistyped number: %s", r)
	}
	if rec.count() != before {
		t.Errorf("a mistyped number made the CLI send %d requests", rec.count()-before)
	}
	idsSeen = append(idsSeen, string(mistyped))

	// A credential carries personal data to the resident, never to the
	// chain: the issuer sends only a status reservation, the wallet file is
	// encrypted, and the node that verifies a presentation keeps nothing.
	credClaims := map[string]string{
		"family_name": "欧阳金丝雀", "given_name": "CanaryGiven", "ethnicity": "金丝雀族",
		"registered_address": "佛山市禅城区金丝雀街7号", "resident_id_number": ids[2],
	}
	claimsFile := filepath.Join(dir, "claims.json") // the issuer's own record, not scanned
	cb, _ := json.Marshal(credClaims)
	if err := os.WriteFile(claimsFile, cb, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IMI_WALLET_PASSPHRASE", "correct horse battery staple")
	credFile := filepath.Join(wallets, "identity.json")
	if r := cli("credential issue", "--type", "resident_identity", "--to", dids[2], "--claims", claimsFile, "--out", credFile); r.code != 0 {
		t.Fatalf("issue: %s", r)
	}
	walletFile := filepath.Join(wallets, "r2.wallet")
	mustIMI(t, "wallet", "init", "--wallet", walletFile, "--resident", filepath.Join(wallets, "r2"))
	mustIMI(t, "wallet", "add", "--wallet", walletFile, "--node", nodeURL, credFile)
	presFile := filepath.Join(dir, "presentation.txt")
	mustIMI(t, "wallet", "present", "--wallet", walletFile, "--type", "resident_identity", "--claims", "given_name,registered_address,age_over_18",
		"--aud", "urn:imi:service:canary", "--nonce", "canary-nonce-0001", "--out", presFile)
	if r := runIMI(t, "verify", "--aud", "urn:imi:service:canary", "--nonce", "canary-nonce-0001", "--node", nodeURL, presFile); r.code != 0 || !strings.Contains(r.stdout, "CanaryGiven") {
		t.Fatalf("verify: %s", r)
	}

	// The one free text a proposal carries onto the chain: an authority's
	// Chinese and English names, public facts about an institution. The
	// canaries here check that the scan does see chain data.
	authPub := strings.TrimSpace(strings.Split(mustIMI(t, "authority keygen", "--out", filepath.Join(dir, "canary-authority.key")).stdout, "\n")[1])
	accepted := []struct {
		field, value string
	}{
		{"add_authority name_zh", "张伟测试金丝雀"},
		{"add_authority name_en", "Canary Zhang"},
	}
	if r := cli("authority propose", "--action", "add_authority", "--id", "cc-canary", "--public-key", authPub, "--roles", "service_provider",
		"--name-zh", accepted[0].value, "--name-en", accepted[1].value, "--endpoint", "https://canary.example.gov.cn", "--reference", "CC-GOV/2026-001"); r.code != 0 {
		t.Fatalf("add_authority proposal: %s", r)
	}

	// Fields that must refuse free text. Their canaries are distinct from
	// the accepted ones, so an accepted value cannot hide a leak.
	refusedID := syntheticID(t, "440606", 1969, 9, 9, 77, false)
	idsSeen = append(idsSeen, refusedID)
	type probe struct {
		field, canary, want string // want: the refusal's reason
		res                 cliResult
	}
	probes := []probe{
		{"register assurance", "李娜拒绝金丝雀", "invalid_field",
			cli("registrar register", "--request", filepath.Join(keygen("refused"), "request.json"), "--id-number", refusedID, "--assurance", "李娜拒绝金丝雀")},
		{"registrar deactivate reason", "广州市天河区拒绝路99号", "invalid_field",
			cli("registrar deactivate", "--did", dids[1], "--reason", "广州市天河区拒绝路99号")},
		{"proposal authority id", "Refused Canary Li", "proposal_invalid",
			cli("authority propose", "--action", "add_authority", "--id", "Refused Canary Li", "--public-key", authPub, "--name-zh", "税务局", "--name-en", "Tax", "--roles", "service_provider")},
		{"proposal roles", "13900139000", "proposal_invalid",
			cli("authority propose", "--action", "set_roles", "--id", "cc-hsb", "--roles", "issuer:13900139000")},
		{"proposal action", "拒绝金丝雀动作", "proposal_invalid",
			cli("authority propose", "--action", "拒绝金丝雀动作", "--id", "cc-hsb")},
		{"vote proposal id", "拒绝提案13900139001", "not_found",
			cli("authority vote", "--proposal", "拒绝提案13900139001")},
		{"add_authority name_zh over 120 bytes", strings.Repeat("李娜拒绝金丝雀长名", 10), "proposal_invalid",
			cli("authority propose", "--action", "add_authority", "--id", "cc-long", "--public-key", authPub, "--name-zh", strings.Repeat("李娜拒绝金丝雀长名", 10), "--name-en", "Long", "--roles", "service_provider")},
		{"proposal reference as free text", "联系电话13800138000", "invalid_field",
			cli("authority propose", "--action", "set_roles", "--id", "cc-hsb", "--roles", "service_provider", "--reference", "联系电话13800138000")},
		{"proposal reference over 64 bytes", strings.Repeat("RefusedLongReference13900139002", 3), "invalid_field",
			cli("authority propose", "--action", "set_roles", "--id", "cc-hsb", "--roles", "service_provider", "--reference", strings.Repeat("RefusedLongReference13900139002", 3))},
		{"add_authority endpoint not a URL", "佛山市禅城区金丝雀路88号", "proposal_invalid",
			cli("authority propose", "--action", "add_authority", "--id", "cc-ep", "--public-key", authPub, "--name-zh", "税务局", "--name-en", "Tax", "--roles", "service_provider", "--endpoint", "佛山市禅城区金丝雀路88号")},
		{"set_roles carrying a name it does not use", "王芳测试金丝雀", "proposal_invalid",
			cli("authority propose", "--action", "set_roles", "--id", "cc-hsb", "--roles", "issuer:medical_insurance,service_provider", "--name-zh", "王芳测试金丝雀")},
	}
	for _, p := range probes {
		if p.res.code != 1 || !strings.Contains(p.res.stderr, "refused ("+p.want+")") {
			t.Errorf("%s: %q: want a refusal (%s): %s", p.field, p.canary, p.want, p.res)
		}
	}

	// The same through the HTTP API, in places the CLI does not reach.
	resKey, err := key.ReadFile(filepath.Join(wallets, "r1", "resident.key"))
	if err != nil {
		t.Fatal(err)
	}
	signed := func(chainID, signer string, k key.Private, lane uint32, body tx.Body) []byte {
		seq, err := a.nextSeq(ctx, signer, lane)
		if err != nil {
			t.Fatal(err)
		}
		x, err := tx.New(chainID, signer, lane, seq, body)
		if err != nil {
			t.Fatal(err)
		}
		x.Sign(k)
		return x.Encode()
	}
	unknownField := signed(st.ChainID, reg.did, reg.key, 7, &tx.Vote{Proposal: "p-1"})
	unknownField = bytes.Replace(unknownField, []byte(`"body":{"proposal":"p-1"}`), []byte(`"body":{"proposal":"p-1","name":"Refused Canary Zhao"}`), 1)
	rawProbes := []struct {
		field, canary, want string
		raw                 []byte
	}{
		{"unknown body field", "Refused Canary Zhao", "malformed", unknownField},
		{"chain id", "赵六拒绝金丝雀网络", "wrong_chain", signed("赵六拒绝金丝雀网络", reg.did, reg.key, 7, &tx.Vote{Proposal: "p-1"})},
		{"resident deactivate reason", "赵六拒绝金丝雀原因", "invalid_field", signed(st.ChainID, dids[1], resKey, 0, &tx.Deactivate{DID: dids[1], Reason: "赵六拒绝金丝雀原因"})},
		{"reproof assurance", "Refused Canary Qian", "invalid_field", signed(st.ChainID, reg.did, reg.key, 7, &tx.Reproof{DID: dids[2], NewKey: resKey.Public(), NewRecoveryHash: key.RecoveryHash(reg.key.Public()), Assurance: "Refused Canary Qian"})},
	}
	for _, p := range rawProbes {
		code, body, err := a.do(ctx, "POST", "/v1/txs", p.raw)
		if err != nil {
			t.Fatal(err)
		}
		if pr := problemOf(body); pr == nil || pr.Reason != p.want {
			t.Errorf("%s: %q: %d %s, want a refusal (%s)", p.field, p.canary, code, body, p.want)
		}
		probes = append(probes, probe{field: p.field, canary: p.canary})
	}

	// Let the last transactions settle into blocks, then stop the node the
	// way an operator does, so everything it buffers is on disk.
	if _, err := a.waitHeight(ctx, a.mustHeight(ctx, t)+2, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, took, err := node.interrupt(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("stopping the node: exit %d after %v: %v", code, took, err)
	}

	disk := filesUnder(t, home)
	logb, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := []scanTarget{{name: "node log", b: logb}}
	wire := []scanTarget{{name: "HTTP requests of the CLI", b: rec.bytes()}}
	walletFiles := filesUnder(t, wallets)
	var size int
	for _, f := range disk {
		size += len(f.b)
	}
	t.Logf("scanning %d files (%d bytes) under the node's home, %d bytes of node log, %d bytes of CLI requests, %d wallet files",
		len(disk), size, len(logb), len(wire[0].b), len(walletFiles))

	// Positive controls: what the registrations did put on chain is found,
	// so the scan does see the blocks, the state and the WAL.
	for _, n := range tags {
		if len(hits(n, disk)) == 0 {
			t.Errorf("scan control: the %s is nowhere on disk; the scan does not see the chain data", n.name)
		}
	}

	// No ID number, nor its plain hash, anywhere: disk, logs, the wire, the
	// resident's own request files.
	everywhere := append(append(append(append([]scanTarget{}, disk...), logs...), wire...), walletFiles...)
	for _, n := range idsSeen {
		for _, nd := range idNeedles(n) {
			if w := hits(nd, everywhere); len(w) > 0 {
				t.Errorf("PERSONAL DATA: ID number form %s found in %s", nd.name, strings.Join(w, ", "))
			}
		}
	}
	// Claim values of the credential: not on the node's disk nor in its log,
	// and not in the clear in the resident's files.
	for name, v := range credClaims {
		if w := hits(needle{"credential claim " + name, []byte(v)}, append(append(append([]scanTarget{}, disk...), logs...), walletFiles...)); len(w) > 0 {
			t.Errorf("PERSONAL DATA: credential claim %s found in %s", name, strings.Join(w, ", "))
		}
	}
	// Refused free text leaves no trace on disk or in the log.
	for _, p := range probes {
		if w := hits(needle{p.field, []byte(p.canary)}, append(append([]scanTarget{}, disk...), logs...)); len(w) > 0 {
			t.Errorf("refused %s %q is on disk: %s", p.field, p.canary, strings.Join(w, ", "))
		}
	}
	// The accepted authority names are on chain, as designed: this is the
	// control that the scan reads the chain's files at all.
	for _, f := range accepted {
		if w := hits(needle{f.field, []byte(f.value)}, disk); len(w) == 0 {
			t.Errorf("scan control: accepted %s %q is not on disk", f.field, f.value)
		}
	}
}

// mustHeight returns the node's committed height.
func (a *api) mustHeight(ctx context.Context, t *testing.T) int64 {
	t.Helper()
	s, err := a.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s.Height
}
