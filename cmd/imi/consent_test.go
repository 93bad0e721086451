package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/idnumber"
)

// TestServiceJourney is issue 4's journey as a clerk, a registrar and a
// resident type it against a running node: register, receive credentials,
// apply for a pension with the form filled from the wallet, see the access
// in the log with a proof, let the bureau re-read the address under the
// standing consent, revoke, and see the next read refused and logged.
func TestServiceJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	base, home := startDistrict(t)
	dir := t.TempDir()
	vars := map[string]string{passphraseEnv: testPassphrase}
	imiIn := func(stdin string, args ...string) (string, string, error) {
		t.Helper()
		return cliRun(ctx, vars, stdin, args...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, err := imiIn("", args...)
		if err != nil {
			t.Fatalf("imi %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	node := func(args ...string) []string { return append(args, "--node", base) }
	as := func(id string, args ...string) []string {
		return node(append(args, "--as", id, "--home", home)...)
	}
	writeJSON := func(name string, v any) string {
		t.Helper()
		p := filepath.Join(dir, name)
		b, _ := json.Marshal(v)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The catalogue shows what the pension service asks for, and why.
	out := must(node("service", "show", "pension_application")...)
	for _, want := range []string{"养老金申领", "Pension application", "cc-hrss", "Social Insurance Law", "resident_identity.age_over_60", "敏感/sensitive", "standing", "bank_account"} {
		if !strings.Contains(out, want) {
			t.Errorf("service show lacks %q:\n%s", want, out)
		}
	}
	if out := must(node("service", "list")...); !strings.Contains(out, "household_certificate") || !strings.Contains(out, "utility_account_opening") {
		t.Errorf("service list:\n%s", out)
	}

	// Alice, born in 1950, is registered and receives two credentials.
	alice := filepath.Join(dir, "alice")
	m := regexp.MustCompile(`Your DID will be (did:imi:[a-z2-7]+)`).FindStringSubmatch(must("resident", "keygen", "--dir", alice))
	if m == nil {
		t.Fatal("keygen named no DID")
	}
	aliceDID := m[1]
	idn, err := idnumber.Example("440604", 1950, 3, 7, 1)
	if err != nil {
		t.Fatal(err)
	}
	must(as("cc-psb", "registrar", "register", "--request", filepath.Join(alice, "request.json"), "--id-number", idn.String())...)
	wallet := filepath.Join(dir, "alice.wallet")
	must("wallet", "init", "--wallet", wallet, "--resident", alice)
	const address = "佛山市禅城区祖庙路1号"
	identity := writeJSON("identity.json", map[string]any{
		"family_name": "张", "given_name": "丽华", "ethnicity": "汉",
		"resident_id_number": idn.String(), "registered_address": address,
	})
	insurance := writeJSON("insurance.json", map[string]any{
		"insurance_number": "440604195003070011", "pension_status": "contributing", "contribution_years": 38,
	})
	for _, c := range []struct{ issuer, typ, claims string }{
		{"cc-psb", "resident_identity", identity},
		{"cc-hrss", "social_insurance", insurance},
	} {
		f := filepath.Join(dir, c.typ+".cred.json")
		must(as(c.issuer, "credential", "issue", "--type", c.typ, "--to", aliceDID, "--claims", c.claims, "--out", f)...)
		must(node("wallet", "add", "--wallet", wallet, f)...)
	}
	// The Public Security Bureau keeps its data of record, for back-office
	// release under consent.
	must(as("cc-psb", "registry", "put", "--did", aliceDID, "--type", "resident_identity", "--claims", identity)...)

	openApp := func() string {
		t.Helper()
		out := must(as("cc-hrss", "service", "open", "--service", "pension_application")...)
		m := regexp.MustCompile(`Opened application ([A-Za-z0-9_-]+) `).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("service open printed no id:\n%s", out)
		}
		return m[1]
	}

	// The form arrives filled; a resident who says no sends nothing.
	app := openApp()
	applyArgs := node("apply", "--wallet", wallet, "--application", app, "--mode", "standing", "--days", "730", "--set", "bank_account=6222020200112233445")
	out, errOut, err := imiIn("y\nn\n", applyArgs...)
	if err == nil || !strings.Contains(err.Error(), "nothing was sent") {
		t.Fatalf("apply answered no: %v\n%s", err, out)
	}
	for _, want := range []string{"丽华", "verified by", "Chancheng Branch", "self-declared", "6222020200112233445", "Sensitive personal information", "Social Insurance Law", "standing, 730 days", "days / 保存"} {
		if !strings.Contains(out, want) {
			t.Errorf("the form lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "Approve all?") || !strings.Contains(errOut, "Share the sensitive items") {
		t.Errorf("apply did not ask:\n%s", errOut)
	}
	sens := out[strings.Index(out, "Sensitive personal information"):]
	if !strings.Contains(sens, "Resident ID number") || !strings.Contains(sens, "Social insurance number") || strings.Contains(sens, "Given name") {
		t.Errorf("the sensitive block is wrong:\n%s", sens)
	}

	// Now she approves.
	out = must(append(applyArgs, "--yes")...)
	m = regexp.MustCompile(`pseudonym: (psn:[A-Za-z0-9_-]+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "consent:") {
		t.Fatalf("apply printed no pseudonym or consent:\n%s", out)
	}
	psn := m[1]

	out = must(as("cc-hrss", "service", "received")...)
	for _, want := range []string{app, psn, "丽华", "张", idn.String(), "6222020200112233445", "self-declared", "verified by 佛山市公安局禅城分局", "verified by 禅城区人力资源和社会保障局", "yes / 是"} {
		if !strings.Contains(out, want) {
			t.Errorf("service received lacks %q:\n%s", want, out)
		}
	}

	out = must(node("log", "--wallet", wallet, "--verify")...)
	if !strings.Contains(out, "presentation") || !strings.Contains(out, "allowed") || !regexp.MustCompile(`proof ok at height \d+`).MatchString(out) {
		t.Errorf("log --verify:\n%s", out)
	}
	if strings.Contains(out, "丽华") || strings.Contains(out, address) {
		t.Errorf("the log shows values, not only claim names:\n%s", out)
	}
	out = must(node("consent", "list", "--wallet", wallet)...)
	if !strings.Contains(out, "pension_application") || !strings.Contains(out, "active") || !strings.Contains(out, "standing") {
		t.Errorf("consent list:\n%s", out)
	}

	// The bureau re-reads the address from its source under the standing
	// consent.
	read := as("cc-hrss", "service", "read", "--from", "cc-psb", "--subject", psn, "--service", "pension_application", "--claims", "resident_identity.registered_address")
	out = must(read...)
	if !strings.Contains(out, address) || !strings.Contains(out, "Released by cc-psb") {
		t.Errorf("service read:\n%s", out)
	}
	check := as("cc-hrss", "service", "check", "--from", "cc-psb", "--subject", psn, "--service", "pension_application", "--claims", "resident_identity.registered_address")
	if out := must(check...); !strings.Contains(out, "Allowed under consent") {
		t.Errorf("service check:\n%s", out)
	}
	// A claim outside the consent is refused.
	outside := as("cc-hrss", "service", "read", "--from", "cc-psb", "--subject", psn, "--service", "pension_application", "--claims", "resident_identity.ethnicity")
	if out, _, err := imiIn("", outside...); !errors.Is(err, errDenied) || !strings.Contains(out, "claim_not_consented") || strings.Contains(out, "汉") {
		t.Errorf("read outside the consent: %v\n%s", err, out)
	}

	// Revoking takes one command; the next read is refused and logged.
	out = must(node("consent", "revoke", "--wallet", wallet, "--service", "pension_application")...)
	if !regexp.MustCompile(`at height \d+`).MatchString(out) {
		t.Errorf("consent revoke:\n%s", out)
	}
	out, _, err = imiIn("", read...)
	if !errors.Is(err, errDenied) || exitCode(err) != 1 || !strings.Contains(out, "consent_revoked") || !strings.Contains(out, "居民已撤回同意") || strings.Contains(out, address) {
		t.Errorf("read after revocation: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	if out, _, err := imiIn("", check...); !errors.Is(err, errDenied) || !strings.Contains(out, "WOULD BE DENIED (consent_revoked)") {
		t.Errorf("service check after revocation: %v\n%s", err, out)
	}
	out = must(node("log", "--wallet", wallet, "--verify")...)
	if !strings.Contains(out, "DENIED (consent_revoked)") || !strings.Contains(out, "back office") || strings.Count(out, "proof ok at height") != 4 {
		t.Errorf("log after revocation:\n%s", out)
	}
	if out := must(node("consent", "list", "--wallet", wallet)...); !strings.Contains(out, "revoked") {
		t.Errorf("consent list after revocation:\n%s", out)
	}
	out = must(as("cc-psb", "service", "access")...)
	if !strings.Contains(out, "consent_revoked") || !strings.Contains(out, psn) {
		t.Errorf("service access of the source:\n%s", out)
	}

	// A declined application leaves nothing behind.
	app2 := openApp()
	out = must(node("apply", "--application", app2, "--decline")...)
	if !strings.Contains(out, "Declined") {
		t.Errorf("decline:\n%s", out)
	}
	out = must(as("cc-hrss", "service", "received")...)
	if strings.Contains(out, app2) || strings.Count(out, "\nApplication ") != 1 {
		t.Errorf("a declined application was kept:\n%s", out)
	}
	if _, _, err := imiIn("", node("apply", "--wallet", wallet, "--application", app2, "--yes")...); err == nil || !strings.Contains(err.Error(), "no open application") {
		t.Errorf("apply to a declined application: %v", err)
	}

	// The registrar records that Alice now consents only together with Bob,
	// her guardian: alone she is refused, with him the grant goes through
	// and her log marks it.
	bob := filepath.Join(dir, "bob")
	m = regexp.MustCompile(`Your DID will be (did:imi:[a-z2-7]+)`).FindStringSubmatch(must("resident", "keygen", "--dir", bob))
	if m == nil {
		t.Fatal("keygen named no DID")
	}
	bobDID := m[1]
	idb, _ := idnumber.Example("440604", 1980, 5, 1, 2)
	must(as("cc-psb", "registrar", "register", "--request", filepath.Join(bob, "request.json"), "--id-number", idb.String())...)
	bobWallet := filepath.Join(dir, "bob.wallet")
	must("wallet", "init", "--wallet", bobWallet, "--resident", bob)
	out = must(as("cc-psb", "registrar", "delegate", "--guardian", bobDID, "--ward", aliceDID, "--basis", "adult_incapacity",
		"--scope", "*", "--days", "30", "--reference", "CC-PSB/2026/0001", "--guardian-consent")...)
	m = regexp.MustCompile(`Recorded delegation ([0-9a-f]{32}) at height \d+`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("registrar delegate:\n%s", out)
	}
	delegation := m[1]
	app3 := openApp()
	alone := node("apply", "--wallet", wallet, "--application", app3, "--yes")
	if out, _, err := imiIn("", alone...); err == nil || !strings.Contains(err.Error(), "registered guardian") {
		t.Errorf("apply without the guardian: %v\n%s", err, out)
	}
	out = must(append(alone, "--guardian-wallet", bobWallet)...)
	if !strings.Contains(out, "co-signs") || !strings.Contains(out, "Submitted") {
		t.Errorf("apply with the guardian:\n%s", out)
	}
	if out := must(node("log", "--wallet", wallet)...); strings.Count(out, "监护人代为同意") != 1 {
		t.Errorf("the log does not mark the guardian's act once:\n%s", out)
	}
	if out := must(node("consent", "list", "--wallet", wallet)...); !strings.Contains(out, "given by your guardian") || !strings.Contains(out, "one-time") {
		t.Errorf("consent list after the guardian's grant:\n%s", out)
	}
	end := as("cc-psb", "registrar", "end-delegation", "--ward", aliceDID, "--id", delegation)
	if out := must(end...); !strings.Contains(out, "Ended delegation "+delegation) {
		t.Errorf("registrar end-delegation:\n%s", out)
	}
	if _, _, err := imiIn("", end...); err == nil || !strings.Contains(err.Error(), "already ended") {
		t.Errorf("ending a delegation twice: %v", err)
	}
	// An adult ward ends an assisting guardian's delegation herself.
	out = must(as("cc-psb", "registrar", "delegate", "--guardian", bobDID, "--ward", aliceDID, "--basis", "adult_assisted",
		"--scope", "pension_application", "--days", "30", "--reference", "CC-PSB/2026/0002")...)
	m = regexp.MustCompile(`Recorded delegation ([0-9a-f]{32}) at height \d+`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("registrar delegate:\n%s", out)
	}
	if out := must(node("resident", "end-delegation", "--dir", alice, "--id", m[1])...); !strings.Contains(out, "ended at height") {
		t.Errorf("resident end-delegation:\n%s", out)
	}
	// Bob cannot end Alice's delegation with his own key.
	if _, _, err := imiIn("", node("resident", "end-delegation", "--dir", bob, "--id", m[1])...); err == nil {
		t.Error("a guardian ended the ward's delegation with his own key")
	}
}

func TestConsentUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"service"},
		{"service", "show"},
		{"service", "open", "--as", "cc-hrss"},
		{"service", "read", "--as", "cc-hrss", "--from", "cc-psb", "--subject", "psn:x", "--service", "s", "--claims", "a.b"},
		{"service", "read", "--as", "cc-hrss", "--from", "cc-psb", "--service", "s", "--claims", "a.b"},
		{"registry", "put", "--as", "cc-psb", "--did", "did:imi:x", "--type", "t"},
		{"apply", "--wallet", "w"},
		{"apply", "--application", "a", "--yes", "--decline"},
		{"consent", "revoke", "--wallet", "w"},
		{"log"},
		{"service", "check", "--as", "cc-hrss", "--subject", "psn:x", "--service", "s", "--claims", "a.b"},
		{"registrar", "delegate", "--as", "cc-psb", "--guardian", "did:imi:a", "--ward", "did:imi:b", "--basis", "uncle", "--scope", "*", "--days", "1", "--reference", "r"},
		{"registrar", "end-delegation", "--as", "cc-psb", "--ward", "did:imi:b"},
	} {
		_, _, err := cliRun(context.Background(), nil, "", args...)
		if !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

func TestParseClaimRefs(t *testing.T) {
	got, err := parseClaimRefs("social_insurance.insurance_number, resident_identity.registered_address,social_insurance.insurance_number")
	if err != nil {
		t.Fatal(err)
	}
	want := "resident_identity.registered_address social_insurance.insurance_number"
	var s []string
	for _, c := range got {
		s = append(s, c.String())
	}
	if strings.Join(s, " ") != want {
		t.Errorf("got %v, want %s", s, want)
	}
	for _, bad := range []string{"", "registered_address", ".x", "t."} {
		if _, err := parseClaimRefs(bad); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", bad, err)
		}
	}
}
