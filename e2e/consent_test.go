package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/store"

	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/wallet"
)

// TestConsentJourneyKeepsValuesOffChainAndPseudonymsApart runs issue 4's
// journey against a real imi process and then reads its disk: the resident
// applies for a pension (standing consent) and for a utility account
// (one-time), the pension bureau re-reads the address from the police under
// the consent, the resident revokes and the next read is denied and logged.
// Then: no claim value or typed-in value is in the chain's data or the node
// log, and no transaction names two of the resident's identifiers (the DID
// and the pseudonyms towards each authority), so an authority that is party
// to neither consent cannot link the records.
func TestConsentJourneyKeepsValuesOffChainAndPseudonymsApart(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	addr := initNode(t, home)
	logf, logPath := nodeLog(t, dir)
	nd := startProc(t, logf, "node", "--home", home)
	a := newAPI(addr)
	if _, err := a.waitReady(ctx, nd, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IMI_WALLET_PASSPHRASE", "correct horse battery staple")
	nodeArgs := []string{"--node", a.base}
	as := func(id string, args ...string) []string {
		return append(append(args, "--as", id, "--home", home), nodeArgs...)
	}
	must := func(args ...string) string { t.Helper(); return mustIMI(t, args...).stdout }
	writeJSON := func(name string, v any) string {
		t.Helper()
		p := filepath.Join(dir, name)
		b, _ := json.Marshal(v)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	rdir := filepath.Join(dir, "resident")
	m := regexp.MustCompile(`(did:imi:[a-z2-7]{32})`).FindStringSubmatch(must("resident", "keygen", "--dir", rdir))
	if m == nil {
		t.Fatal("keygen named no DID")
	}
	resident := m[1]
	idn, err := idnumber.Example("440604", 1951, 8, 9, 42)
	if err != nil {
		t.Fatal(err)
	}
	must(as("cc-psb", "registrar", "register", "--request", filepath.Join(rdir, "request.json"), "--id-number", idn.String())...)

	// Canary values: each must reach the authority that needs it and never
	// the chain.
	canaries := map[string]string{
		"family_name":        "欧阳同意金丝雀",
		"given_name":         "ConsentCanaryGiven",
		"registered_address": "佛山市禅城区同意金丝雀路17号",
		"insurance_number":   "SI-CANARY-7730912",
		"service_address":    "佛山市禅城区水电金丝雀街3号",
		"account_number":     "UT-CANARY-5521",
		"bank_account":       "6222029988776655443",
		"phone":              "13912345678",
	}
	identity := writeJSON("identity.json", map[string]any{
		"family_name": canaries["family_name"], "given_name": canaries["given_name"], "ethnicity": "汉",
		"resident_id_number": idn.String(), "registered_address": canaries["registered_address"],
	})
	insurance := writeJSON("insurance.json", map[string]any{
		"insurance_number": canaries["insurance_number"], "pension_status": "contributing", "contribution_years": 35,
	})
	utility := writeJSON("utility.json", map[string]any{
		"account_number": canaries["account_number"], "service_address": canaries["service_address"],
	})
	walletFile := filepath.Join(dir, "resident.wallet")
	must("wallet", "init", "--wallet", walletFile, "--resident", rdir)
	for _, c := range []struct{ issuer, typ, claims string }{
		{"cc-psb", "resident_identity", identity},
		{"cc-hrss", "social_insurance", insurance},
		{"cc-utility", "utility_account", utility},
	} {
		f := filepath.Join(dir, c.typ+".cred.json")
		must(as(c.issuer, "credential", "issue", "--type", c.typ, "--to", resident, "--claims", c.claims, "--out", f)...)
		must(append([]string{"wallet", "add", "--wallet", walletFile, f}, nodeArgs...)...)
	}
	must(as("cc-psb", "registry", "put", "--did", resident, "--type", "resident_identity", "--claims", identity)...)

	apply := func(authority, svc string, extra ...string) string {
		t.Helper()
		out := must(as(authority, "service", "open", "--service", svc)...)
		m := regexp.MustCompile(`Opened application ([A-Za-z0-9_-]+) `).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("service open printed no id:\n%s", out)
		}
		args := append([]string{"apply", "--wallet", walletFile, "--application", m[1], "--yes"}, extra...)
		out = must(append(args, nodeArgs...)...)
		p := regexp.MustCompile(`pseudonym: (psn:[A-Za-z0-9_-]{43})`).FindStringSubmatch(out)
		if p == nil {
			t.Fatalf("apply printed no pseudonym:\n%s", out)
		}
		return p[1]
	}
	psnHRSS := apply("cc-hrss", service.Pension, "--mode", "standing", "--days", "730", "--set", "bank_account="+canaries["bank_account"])
	psnUtility := apply("cc-utility", service.UtilityAccount, "--set", "phone="+canaries["phone"])

	// The wallet derives the same pseudonyms, and they differ per authority.
	c, err := wallet.Load(walletFile, []byte("correct horse battery staple"))
	if err != nil {
		t.Fatal(err)
	}
	secret, created, err := service.PseudonymSecret(c)
	if err != nil || created {
		t.Fatalf("the wallet has no pseudonym secret after applying (created=%v): %v", created, err)
	}
	ids := map[string]string{"DID": resident}
	for _, au := range []string{"cc-psb", "cc-hrss", "cc-hsb", "cc-utility"} {
		k, err := pseudonym.Derive(secret, au)
		if err != nil {
			t.Fatal(err)
		}
		ids["pseudonym towards "+au] = pseudonym.FromKey(k.Public()).String()
	}
	if ids["pseudonym towards cc-hrss"] != psnHRSS || ids["pseudonym towards cc-utility"] != psnUtility || psnHRSS == psnUtility {
		t.Fatalf("pseudonyms: apply said %s and %s, the wallet derives %v", psnHRSS, psnUtility, ids)
	}

	read := as("cc-hrss", "service", "read", "--from", "cc-psb", "--subject", psnHRSS, "--service", service.Pension, "--claims", "resident_identity.registered_address")
	if out := must(read...); !strings.Contains(out, canaries["registered_address"]) {
		t.Fatalf("the back-office read released no address:\n%s", out)
	}
	must(append([]string{"consent", "revoke", "--wallet", walletFile, "--service", service.Pension}, nodeArgs...)...)
	if r := runIMI(t, read...); r.code != 1 || !strings.Contains(r.stdout+r.stderr, "consent_revoked") || strings.Contains(r.stdout, canaries["registered_address"]) {
		t.Fatalf("read after revocation: %s", r)
	}
	out := must(append([]string{"log", "--wallet", walletFile, "--verify"}, nodeArgs...)...)
	if strings.Count(out, "proof ok at height") != 4 || !strings.Contains(out, "DENIED (consent_revoked)") {
		t.Errorf("the resident's log should hold four verified records, the last denied:\n%s", out)
	}

	// A third authority sees none of these records through the API.
	hsb := must(as("cc-hsb", "service", "access")...)
	for name, v := range ids {
		if strings.Contains(hsb, v) {
			t.Errorf("cc-hsb's access view shows the resident's %s:\n%s", name, hsb)
		}
	}

	if _, err := a.waitHeight(ctx, a.mustHeight(ctx, t)+2, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, took, err := nd.interrupt(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("stopping the node: exit %d after %v: %v", code, took, err)
	}

	// Chain data: the block store, the state tree, the WAL and the results
	// beside the tree. The off-chain store (data/offchain) is the authority's
	// own record of what it received, which is where values belong.
	var chain []scanTarget
	for _, f := range filesUnder(t, home) {
		if !strings.Contains(f.name, string(filepath.Separator)+"offchain"+string(filepath.Separator)) {
			chain = append(chain, f)
		}
	}
	logb, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	chain = append(chain, scanTarget{name: "node log", b: logb})
	// Positive control: the pseudonyms are on chain, so the scan sees it.
	if len(hits(needle{"pseudonym", []byte(psnHRSS)}, chain)) == 0 {
		t.Error("scan control: the pension pseudonym is nowhere in the chain data")
	}
	for name, v := range canaries {
		if w := hits(needle{name, []byte(v)}, chain); len(w) > 0 {
			t.Errorf("PERSONAL DATA: %s found in %s", name, strings.Join(w, ", "))
		}
	}
	for _, nd := range idNeedles(idn.String()) {
		if w := hits(nd, chain); len(w) > 0 {
			t.Errorf("PERSONAL DATA: ID number form %s found in %s", nd.name, strings.Join(w, ", "))
		}
	}

	// No transaction names two of the resident's identifiers.
	db, err := dbm.NewGoLevelDB("blockstore", filepath.Join(home, "comet", "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bs := store.NewBlockStore(db)
	var txs, withID int
	for h := bs.Base(); h <= bs.Height(); h++ {
		b := bs.LoadBlock(h)
		if b == nil {
			t.Fatalf("block %d missing", h)
		}
		for _, raw := range b.Data.Txs {
			txs++
			var named []string
			for name, v := range ids {
				if bytes.Contains(raw, []byte(v)) {
					named = append(named, name)
				}
			}
			if len(named) > 0 {
				withID++
			}
			if len(named) > 1 {
				t.Errorf("LINKABLE: a transaction in block %d names %s:\n%.300s", h, strings.Join(named, " and "), raw)
			}
		}
	}
	if withID < 5 {
		t.Errorf("scan control: only %d of %d transactions name the resident; the journey made more", withID, txs)
	}
	t.Logf("%d transactions scanned, %d name one of the resident's identifiers, none two", txs, withID)
}
