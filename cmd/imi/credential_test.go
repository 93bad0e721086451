package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/idnumber"
)

const testPassphrase = "correct horse battery"

// cliRun runs one imi command in-process with the given environment
// variables and stdin.
func cliRun(ctx context.Context, vars map[string]string, stdin string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }}
	err := run(ctx, e, args)
	return out.String(), errb.String(), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDistrict runs the demo district's node in this process until the
// test ends and returns its API URL and home.
func startDistrict(t *testing.T) (string, string) {
	t.Helper()
	home := t.TempDir()
	addr := freeAddr(t)
	if err := district.InitDemo(home, district.InitOptions{HTTP: addr, P2P: "tcp://" + freeAddr(t), GenesisTime: time.Now().Truncate(time.Second)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan district.Info, 1), make(chan error, 1)
	go func() {
		done <- district.Run(ctx, home, district.RunOptions{Ready: func(i district.Info) { ready <- i }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("node stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("node not ready within a minute")
	}
	base := "http://" + addr
	cl, err := client.New(base)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if s, err := cl.Status(ctx); err == nil && s.Height > 0 {
			return base, home
		}
		if time.Now().After(deadline) {
			t.Fatal("no block within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCredentialWalkthrough is the credential life cycle as an issuer
// clerk, a resident and a verifier would type it: issue, hold, present,
// verify, replay, revoke.
func TestCredentialWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base, home := startDistrict(t)
	dir := t.TempDir()
	vars := map[string]string{passphraseEnv: testPassphrase}
	imi := func(args ...string) (string, string, error) {
		t.Helper()
		return cliRun(ctx, vars, "", args...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, err := imi(args...)
		if err != nil {
			t.Fatalf("imi %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	node := []string{"--node", base}
	as := func(id string, args ...string) []string {
		return append(append(args, "--as", id, "--home", home), node...)
	}
	didRe := regexp.MustCompile(`Your DID will be (did:imi:[a-z2-7]+)`)
	resident := func(name string) (string, string) {
		t.Helper()
		d := filepath.Join(dir, name)
		m := didRe.FindStringSubmatch(must("resident", "keygen", "--dir", d))
		if m == nil {
			t.Fatal("keygen named no DID")
		}
		return d, m[1]
	}
	register := func(d string, seq int) string {
		t.Helper()
		n, err := idnumber.Example("440604", 1990, 3, 7, seq)
		if err != nil {
			t.Fatal(err)
		}
		must(as("cc-psb", "registrar", "register", "--request", filepath.Join(d, "request.json"), "--id-number", n.String())...)
		return n.String()
	}

	alice, aliceDID := resident("alice")
	idNumber := register(alice, 1)

	out := must(append([]string{"credential", "types"}, node...)...)
	for _, want := range []string{"resident_identity", "居民身份 / Resident identity", "resident_id_number", "敏感/sensitive", "urn:imi:vct:resident_identity"} {
		if !strings.Contains(out, want) {
			t.Errorf("credential types lacks %q:\n%s", want, out)
		}
	}

	wallet := filepath.Join(dir, "alice.wallet")
	must("wallet", "init", "--wallet", wallet, "--resident", alice)
	if _, _, err := imi("wallet", "init", "--wallet", wallet, "--resident", alice); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second wallet init: %v, want a refusal to overwrite", err)
	}

	// The clerk issues; nothing personal is printed.
	claims := map[string]any{
		"family_name": "张", "given_name": "丽华", "ethnicity": "汉",
		"resident_id_number": idNumber, "registered_address": "佛山市禅城区祖庙路1号",
	}
	claimsFile := filepath.Join(dir, "claims.json")
	b, _ := json.Marshal(claims)
	if err := os.WriteFile(claimsFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	credFile := filepath.Join(dir, "alice-identity.json")
	issue := as("cc-psb", "credential", "issue", "--type", "resident_identity", "--to", aliceDID, "--claims", claimsFile, "--out", credFile)
	out = must(issue...)
	if !strings.Contains(out, "resident_identity") || !strings.Contains(out, aliceDID) || !strings.Contains(out, "index") {
		t.Errorf("issue does not say what it issued:\n%s", out)
	}
	for _, v := range []string{"张", "丽华", idNumber, "祖庙路"} {
		if strings.Contains(out, v) {
			t.Errorf("issue printed the claim value %q:\n%s", v, out)
		}
	}
	if fi, err := os.Stat(credFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file: %v, %v; want mode 0600", fi, err)
	}
	before, _ := os.ReadFile(credFile)
	if _, _, err := imi(issue...); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("issue over an existing file: %v", err)
	}
	if after, _ := os.ReadFile(credFile); !bytes.Equal(before, after) {
		t.Error("a refused issue changed the existing credential file")
	}

	// A credential whose signature was tampered with is refused.
	var issued credential.Issued
	if err := json.Unmarshal(before, &issued); err != nil {
		t.Fatal(err)
	}
	jwt, rest, _ := strings.Cut(issued.SDJWT, "~")
	flip := map[byte]byte{'A': 'B'}[jwt[len(jwt)-2]]
	if flip == 0 {
		flip = 'A'
	}
	issued.SDJWT = jwt[:len(jwt)-2] + string(flip) + jwt[len(jwt)-1:] + "~" + rest
	forged := filepath.Join(dir, "forged.json")
	fb, _ := json.Marshal(issued)
	if err := os.WriteFile(forged, fb, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := imi(append([]string{"wallet", "add", "--wallet", wallet, forged}, node...)...); err == nil || !strings.Contains(err.Error(), "forged") {
		t.Errorf("adding a tampered credential: %v", err)
	}

	must(append([]string{"wallet", "add", "--wallet", wallet, credFile}, node...)...)
	if _, _, err := imi(append([]string{"wallet", "add", "--wallet", wallet, credFile}, node...)...); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("adding the same credential twice: %v", err)
	}
	out = must(append([]string{"wallet", "list", "--wallet", wallet}, node...)...)
	if !strings.Contains(out, "valid / 有效") || !strings.Contains(out, "居民身份") || !strings.Contains(out, "Chancheng Branch") {
		t.Errorf("wallet list does not show a valid resident identity from cc-psb:\n%s", out)
	}

	// The resident discloses three claims to one verifier.
	const aud = "https://bus.example.gov.cn"
	present := func(nonce, name string, claims string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		must("wallet", "present", "--wallet", wallet, "--type", "resident_identity", "--claims", claims, "--aud", aud, "--nonce", nonce, "--out", p)
		return p
	}
	nonce1 := "nonce-0001-abcdefgh"
	p1 := present(nonce1, "p1.txt", "given_name,age_over_18,registered_address")
	out = must(append([]string{"verify", "--aud", aud, "--nonce", nonce1, "--json", p1}, node...)...)
	var res credential.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	disclosed := slices.Sorted(slices.Values(res.Disclosed))
	if res.Outcome != credential.Valid || !slices.Equal(disclosed, []string{"age_over_18", "given_name", "registered_address"}) {
		t.Fatalf("verify: %s %s, disclosed %v; want valid with exactly the three claims", res.Outcome, res.Reason, res.Disclosed)
	}
	if res.Claims["given_name"] != "丽华" || res.Claims["age_over_18"] != true {
		t.Errorf("verify: claims %v", res.Claims)
	}
	for _, hidden := range []string{"family_name", "resident_id_number", "birth_date", "ethnicity", "sex"} {
		if _, ok := res.Claims[hidden]; ok {
			t.Errorf("verify disclosed %s, which the resident did not choose", hidden)
		}
	}

	// The same presentation again is a replay.
	out, _, err := imi(append([]string{"verify", "--aud", aud, "--nonce", nonce1, p1}, node...)...)
	if !errors.Is(err, errNotValid) || exitCode(err) != 1 || !strings.Contains(out, credential.ReasonNonceReplayed) || strings.Contains(out, "丽华") {
		t.Errorf("replayed presentation: err %v (exit %d)\n%s", err, exitCode(err), out)
	}

	// Refusals a resident can act on.
	if _, _, err := imi("wallet", "present", "--wallet", wallet, "--type", "resident_identity", "--claims", "given_name,shoe_size", "--aud", aud, "--nonce", "nonce-0002-abcdefgh"); err == nil || !strings.Contains(err.Error(), `"shoe_size"`) || !strings.Contains(err.Error(), "given_name") {
		t.Errorf("present with an unknown claim: %v", err)
	}
	if _, _, err := imi("wallet", "present", "--wallet", wallet, "--type", "medical_insurance", "--claims", "plan", "--aud", aud, "--nonce", "nonce-0002-abcdefgh"); err == nil || !strings.Contains(err.Error(), "no medical_insurance credential") {
		t.Errorf("present of a type the wallet lacks: %v", err)
	}
	if _, _, err := cliRun(ctx, map[string]string{passphraseEnv: "not the passphrase"}, "", "wallet", "list", "--wallet", wallet, "--node", base); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Errorf("wrong passphrase: %v", err)
	}

	// A credential made for Alice cannot go into another resident's wallet.
	bob, bobDID := resident("bob")
	bobWallet := filepath.Join(dir, "bob.wallet")
	must("wallet", "init", "--wallet", bobWallet, "--resident", bob)
	if _, _, err := imi(append([]string{"wallet", "add", "--wallet", bobWallet, credFile}, node...)...); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Errorf("adding Alice's credential to Bob's wallet: %v", err)
	}

	// Issuing to an unregistered or a deactivated DID fails, and leaves no file.
	for _, c := range []struct{ name, did, want string }{
		{"unregistered", bobDID, "not registered"},
		{"deactivated", "", "deactivated"},
	} {
		if c.name == "deactivated" {
			carol, carolDID := resident("carol")
			register(carol, 2)
			must(as("cc-psb", "registrar", "deactivate", "--did", carolDID, "--reason", "moved_away")...)
			c.did = carolDID
		}
		out := filepath.Join(dir, c.name+".json")
		_, _, err := imi(as("cc-psb", "credential", "issue", "--type", "resident_identity", "--to", c.did, "--claims", claimsFile, "--out", out)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("issue to a %s DID: %v, want %q", c.name, err, c.want)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused issue left %s behind", out)
		}
	}

	// Another authority cannot revoke cc-psb's credential through the file.
	if _, _, err := imi(as("cc-hrss", "credential", "revoke", "--credential", credFile)...); err == nil || !strings.Contains(err.Error(), "only its issuer") {
		t.Errorf("revoke by another authority: %v", err)
	}

	// The issuer revokes; the wallet and the verifier see it.
	out = must(as("cc-psb", "credential", "revoke", "--credential", credFile)...)
	if !regexp.MustCompile(`at height \d+`).MatchString(out) {
		t.Errorf("revoke does not give the height:\n%s", out)
	}
	out = must(append([]string{"wallet", "list", "--wallet", wallet}, node...)...)
	if !strings.Contains(out, "revoked / 已撤销") {
		t.Errorf("wallet list after revocation:\n%s", out)
	}
	// A node that does not answer is "unknown", never "revoked".
	out = must("wallet", "list", "--wallet", wallet, "--node", "http://"+freeAddr(t))
	if !strings.Contains(out, "status unknown: node unreachable") || strings.Contains(out, "revoked") {
		t.Errorf("wallet list with no node:\n%s", out)
	}
	nonce3 := "nonce-0003-abcdefgh"
	p3 := present(nonce3, "p3.txt", "age_over_18")
	out, _, err = imi(append([]string{"verify", "--aud", aud, "--nonce", nonce3, p3}, node...)...)
	if !errors.Is(err, errNotValid) || exitCode(err) != 1 || !strings.Contains(out, "REVOKED") || !strings.Contains(out, "已撤销") || strings.Contains(out, "disclosed") {
		t.Errorf("verify after revocation: err %v (exit %d)\n%s", err, exitCode(err), out)
	}
	if _, _, err := imi(as("cc-psb", "credential", "unsuspend", "--credential", credFile)...); err == nil || !strings.Contains(err.Error(), "status_not_allowed") {
		t.Errorf("unsuspend of a revoked credential: %v", err)
	}
}

// TestWalletPassphrasePrompt checks the prompt path: typed twice on init,
// and a mismatch writes nothing.
func TestWalletPassphrasePrompt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	res := filepath.Join(dir, "alice")
	if _, _, err := cliRun(ctx, nil, "", "resident", "keygen", "--dir", res); err != nil {
		t.Fatal(err)
	}
	w := filepath.Join(dir, "w")
	_, errOut, err := cliRun(ctx, nil, testPassphrase+"\nsomething else\n", "wallet", "init", "--wallet", w, "--resident", res)
	if err == nil || !strings.Contains(err.Error(), "differ") || !strings.Contains(errOut, "钱包密码") {
		t.Errorf("mismatched passphrases: %v\n%s", err, errOut)
	}
	if _, err := os.Stat(w); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused init left a wallet file")
	}
	if _, _, err := cliRun(ctx, nil, "short\nshort\n", "wallet", "init", "--wallet", w, "--resident", res); !errors.Is(err, errUsage) {
		t.Errorf("short passphrase: %v", err)
	}
	if _, _, err := cliRun(ctx, nil, testPassphrase+"\n"+testPassphrase+"\n", "wallet", "init", "--wallet", w, "--resident", res); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(w); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("wallet file: %v, %v; want mode 0600", fi, err)
	}
	// An empty wallet lists without a node; the passphrase is typed once.
	out, _, err := cliRun(ctx, nil, testPassphrase+"\n", "wallet", "list", "--wallet", w, "--node", "http://"+freeAddr(t))
	if err != nil || !strings.Contains(out, "0 credential") {
		t.Errorf("list: %v\n%s", err, out)
	}
	if _, _, err := cliRun(ctx, nil, "wrong passphrase\n", "wallet", "list", "--wallet", w); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Errorf("wrong passphrase: %v", err)
	}
}

func TestCredentialUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"credential"},
		{"wallet"},
		{"credential", "issue", "--as", "cc-psb"},
		{"credential", "issue", "--as", "cc-psb", "--type", "resident_identity", "--to", "not-a-did", "--claims", "c.json", "--out", "x.json"},
		{"credential", "revoke", "--as", "cc-psb"},
		{"credential", "suspend", "--as", "cc-psb", "--credential", "c.json", "--list", "0", "--index", "1"},
		{"credential", "unsuspend", "--as", "cc-psb", "--list", "4096", "--index", "1"},
		{"wallet", "init", "--wallet", "w"},
		{"wallet", "add", "--wallet", "w"},
		{"wallet", "add", "--wallet", "w", "a.json", "b.json"},
		{"wallet", "present", "--wallet", "w", "--type", "resident_identity", "--claims", "given_name", "--aud", "a"},
		{"verify", "--aud", "a", "--nonce", "0123456789abcdef"},
		{"verify", "--aud", "a", "-"},
	} {
		_, _, err := cliRun(context.Background(), nil, "", args...)
		if !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}
