package web

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/authn"
	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/hosted"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
	"github.com/imi-city/imi/internal/wallet"
)

// The portal's benchmarks run against the harness's node, with its hosted
// wallets at wallet.DefaultParams as a district's are. Each benchmark has
// sub-benchmarks: the page over HTTP, and the part of it that no page
// could avoid (the wallet, the ledger read, the desk). -count repeats each
// sub-benchmark in a row, so on a shared machine run rounds of -count 1
// instead, which put a page and its baseline in the same minute:
//
//	go test -c -o /tmp/web.test ./internal/web/
//	cd internal/web && for i in $(seq 10); do /tmp/web.test -test.run '^$' -test.bench . -test.benchtime 3s -test.count 1; done

// benchLane is the lane the benchmarks sign their own access records on.
const benchLane uint32 = 240

// benchLogRecords is how many access records the log page's resident has.
const benchLogRecords = 200

// benchClient is a browser for benchmarks: browserless reports through a
// *testing.T, which a benchmark has none of.
type benchClient struct {
	tb   testing.TB
	base string
	c    *http.Client
}

func newBenchClient(tb testing.TB, base string) *benchClient {
	jar, _ := cookiejar.New(nil)
	return &benchClient{tb: tb, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *benchClient) read(res *http.Response, err error) (*http.Response, string) {
	b.tb.Helper()
	if err != nil {
		b.tb.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.tb.Fatal(err)
	}
	return res, string(body)
}

func (b *benchClient) get(path string) (*http.Response, string) {
	b.tb.Helper()
	return b.read(b.c.Get(b.base + path))
}

func (b *benchClient) post(path string, form url.Values) (*http.Response, string) {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.base)
	return b.read(b.c.Do(req))
}

// submit opens page and sends its form that posts to action, as
// browserless.submit does.
func (b *benchClient) submit(page, action string, form url.Values) (*http.Response, string) {
	b.tb.Helper()
	res, body := b.get(page)
	if res.StatusCode != http.StatusOK {
		b.tb.Fatalf("GET %s: %d", page, res.StatusCode)
	}
	v := url.Values{}
	for k, vs := range form {
		v[k] = vs
	}
	v.Set("csrf", formToken(b.tb, body, action))
	return b.post(action, v)
}

// signIn is the resident's sign-in: the page, then the form.
func (b *benchClient) signIn(p *person, code string) {
	b.tb.Helper()
	res, body := b.submit("/signin", "/signin", url.Values{"id_number": {p.number.String()}, "passphrase": {p.passphrase}, "activation": {code}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/me" {
		b.tb.Fatalf("resident sign-in: %d to %q\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
}

// applyForPension opens a pension application and approves it with a
// standing consent, as applyForPension does in the console's tests.
func (b *benchClient) applyForPension() {
	b.tb.Helper()
	res, _ := b.submit("/me/services", "/me/services/apply", url.Values{"service": {service.Pension}})
	to := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(to, "/me/applications/") {
		b.tb.Fatalf("opening an application: %d to %q", res.StatusCode, to)
	}
	res, body := b.submit(to, to, url.Values{"action": {"approve"}, "mode": {tx.ModeStanding}, "days": {"30"},
		"sensitive_ok": {"yes"}, "share_contribution_years": {"yes"}, "typed_bank_account": {"6222 0000 1111 2222"}, "agree": {"yes"}})
	if res.StatusCode != http.StatusOK { // any refusal is another status
		b.tb.Fatalf("applying: %d\n%s", res.StatusCode, body)
	}
}

// benchResident is a resident registered at the counter of a harness
// whose hosted wallets cost what a district's do, holding three
// credentials (resident identity, social insurance, utility account) and
// signed in.
type benchResident struct {
	h       *harness
	p       *person
	did     string
	browser *benchClient
}

func newBenchResident(b *testing.B) *benchResident {
	b.Helper()
	h := newHarness(b)
	// The harness makes cheap wallets so that tests run fast; a district's
	// cost 64 MiB of Argon2id each, and a sign-in is measured at that.
	h.portal.cfg.WalletParams = wallet.DefaultParams
	h.portal.wallets.Params = wallet.DefaultParams

	clerk := newBenchClient(b, h.srv.URL)
	if res, _ := clerk.submit("/staff/signin", "/staff/signin", url.Values{"account": {clerkAccount}, "passphrase": {clerkPassphrase}}); res.StatusCode != http.StatusSeeOther {
		b.Fatalf("staff sign-in: %d", res.StatusCode)
	}
	p := h.newPerson("王", "秀英", "female", 1958, 3, 14)
	res, body := clerk.submit("/counter/register", "/counter/register", p.form())
	if res.StatusCode != http.StatusOK {
		b.Fatalf("registration: %d\n%s", res.StatusCode, body)
	}
	rc := readReceipt(b, body)

	// The bureau and the utility issue to the wallet's inbox, as the
	// console does; the sign-in below collects them.
	ctx := context.Background()
	for _, c := range []struct {
		authority, typ string
		claims         map[string]any
	}{
		{hrssID, credential.TypeSocialInsurance, map[string]any{"insurance_number": "440604195803140021", "pension_status": "参保缴费", "contribution_years": int64(32)}},
		{utilityID, credential.TypeUtilityAccount, map[string]any{"account_number": "0757-0012345678", "service_address": p.address}},
	} {
		cred, _, err := h.portal.issue(ctx, c.authority, laneConsole, c.typ, rc.did, c.claims, 0)
		if err != nil {
			b.Fatal(err)
		}
		item, err := json.Marshal(cred)
		if err != nil {
			b.Fatal(err)
		}
		if err := h.portal.wallets.Deliver(rc.did, item); err != nil {
			b.Fatal(err)
		}
	}
	r := &benchResident{h: h, p: p, did: rc.did, browser: newBenchClient(b, h.srv.URL)}
	r.browser.signIn(p, rc.code)
	_, body = r.browser.get("/me")
	for _, name := range []string{"居民身份", "社会保险", "水电账户"} {
		if !strings.Contains(body, name) {
			b.Fatalf("the wallet lacks its %s credential:\n%s", name, body)
		}
	}
	return r
}

// unlock opens the resident's wallet in process, as a sign-in does.
func (r *benchResident) unlock(b *testing.B) *hosted.Unlocked {
	b.Helper()
	u, err := r.h.portal.wallets.Unlock(r.p.number, []byte(r.p.passphrase), "")
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// pseudonyms are the resident's pseudonyms towards every authority, by
// authority id, once the wallet has a pseudonym secret.
func (r *benchResident) pseudonyms(b *testing.B) map[string]key.Private {
	b.Helper()
	u := r.unlock(b)
	defer u.Contents.Wipe()
	secret, ok := pseudonymSecret(u.Contents)
	if !ok {
		b.Fatal("the wallet has no pseudonym secret")
	}
	keys, err := service.Pseudonyms(secret, benchAuthorities)
	if err != nil {
		b.Fatal(err)
	}
	return keys
}

// benchAuthorities are the demo district's authorities.
var benchAuthorities = []string{psbID, hrssID, hsbID, utilityID}

func psnOf(k key.Private) string { return pseudonym.FromKey(k.Public()).String() }

func sortedClaims(refs ...tx.ClaimRef) []tx.ClaimRef {
	slices.SortFunc(refs, tx.ClaimRef.Compare)
	return refs
}

// recordAccesses commits n access records of the resident, recorded by
// three authorities in batches of ten, each batch in a block of its own:
// the bureau's presentations for the pension (allowed under the standing
// consent), the public security bureau's back-office releases of identity
// claims for it (allowed), and the utility's presentations without a
// consent (stored as denied).
func (r *benchResident) recordAccesses(b *testing.B, psns map[string]key.Private, n int) {
	b.Helper()
	const batch = 10
	ref := func(typ, claim string) tx.ClaimRef { return tx.ClaimRef{Type: typ, Claim: claim} }
	kinds := []struct {
		signer string
		rec    tx.AccessRecord
	}{
		{hrssID, tx.AccessRecord{Subject: psnOf(psns[hrssID]), Reader: hrssID, Service: service.Pension, Channel: tx.ChannelPresentation,
			Claims: sortedClaims(ref(credential.TypeResidentIdentity, "family_name"), ref(credential.TypeResidentIdentity, "given_name"), ref(credential.TypeSocialInsurance, "insurance_number"))}},
		{psbID, tx.AccessRecord{Subject: psnOf(psns[hrssID]), Reader: hrssID, Source: psbID, Service: service.Pension, Channel: tx.ChannelBackOffice,
			Claims: sortedClaims(ref(credential.TypeResidentIdentity, "registered_address"), ref(credential.TypeResidentIdentity, "age_over_60"))}},
		{utilityID, tx.AccessRecord{Subject: psnOf(psns[utilityID]), Reader: utilityID, Service: service.UtilityAccount, Channel: tx.ChannelPresentation,
			Claims: sortedClaims(ref(credential.TypeResidentIdentity, "family_name"), ref(credential.TypeResidentIdentity, "given_name"))}},
	}
	ctx := context.Background()
	made := 0
	for made < n {
		for _, k := range kinds {
			body := &tx.RecordAccess{}
			for i := 0; i < batch && made < n; i++ {
				rec := k.rec
				rec.ID = make(tx.Bytes, 16)
				rand.Read(rec.ID)
				rec.Outcome = tx.OutcomeAllowed
				body.Records = append(body.Records, rec)
				made++
			}
			if len(body.Records) == 0 {
				break
			}
			if _, err := r.h.portal.sign(ctx, k.signer, benchLane, body); err != nil {
				b.Fatalf("recording accesses as %s: %v", k.signer, err)
			}
		}
	}
}

// BenchmarkLogPage is GET /me/log for a resident with 200 access records
// (and the one their pension application left) recorded by three
// authorities. Baselines: the node API's GET /v1/me/access-log for the same
// pseudonyms, over the same loopback server, and the ledger's AccessLog of
// each pseudonym in process.
func BenchmarkLogPage(b *testing.B) {
	r := newBenchResident(b)
	r.browser.applyForPension() // gives the wallet its pseudonym secret
	psns := r.pseudonyms(b)
	r.recordAccesses(b, psns, benchLogRecords)

	var all []string
	total, denied := 0, 0
	for _, id := range benchAuthorities {
		all = append(all, psnOf(psns[id]))
		as, _, err := r.h.app.AccessLog(psnOf(psns[id]), 0)
		if err != nil {
			b.Fatal(err)
		}
		total += len(as)
		for _, a := range as {
			if a.Outcome != tx.OutcomeAllowed {
				denied++
			}
		}
	}
	if total != benchLogRecords+1 || denied == 0 || denied == total {
		b.Fatalf("%d access records (%d denied), want %d, some of them denied", total, denied, benchLogRecords+1)
	}

	// The API's session: one challenge, one proof per pseudonym, as imi
	// resident does.
	ctx := context.Background()
	cl, err := client.New(r.h.srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	ch, err := cl.Challenge(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var proofs []authn.Proof
	for _, id := range benchAuthorities {
		proofs = append(proofs, authn.WalletProof(*ch, psnOf(psns[id]), psns[id]))
	}
	sess, err := cl.SignIn(ctx, ch.ID, proofs)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.SignOut(context.Background(), sess.Token) })

	b.Run("portal", func(b *testing.B) {
		size := 0
		b.ReportAllocs()
		for b.Loop() {
			res, body := r.browser.get("/me/log")
			if res.StatusCode != http.StatusOK {
				b.Fatalf("GET /me/log: %d", res.StatusCode)
			}
			size = len(body)
		}
		b.ReportMetric(float64(size), "B/page")
	})
	b.Run("api", func(b *testing.B) {
		var got struct {
			Records []json.RawMessage `json:"records"`
		}
		size := 0
		b.ReportAllocs()
		for b.Loop() {
			req, err := http.NewRequest(http.MethodGet, r.h.srv.URL+"/v1/me/access-log", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+sess.Token)
			res, body := r.browser.read(http.DefaultClient.Do(req))
			if res.StatusCode != http.StatusOK {
				b.Fatalf("GET /v1/me/access-log: %d %s", res.StatusCode, body)
			}
			size = len(body)
			if got.Records == nil {
				if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.Records) != total {
					b.Fatalf("the API lists %d records (%v), want %d", len(got.Records), err, total)
				}
			}
		}
		b.ReportMetric(float64(size), "B/page")
	})
	b.Run("ledger", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for _, psn := range all {
				as, _, err := r.h.app.AccessLog(psn, 0)
				if err != nil {
					b.Fatal(err)
				}
				n += len(as)
			}
			if n != total {
				b.Fatalf("%d records, want %d", n, total)
			}
		}
	})
}

// BenchmarkCredentialsPage is GET /me for a resident holding three
// credentials. Baseline: what every signed-in page pays to reach the
// wallet, hosted.OpenSession and Wallets.Open, alone.
func BenchmarkCredentialsPage(b *testing.B) {
	r := newBenchResident(b)
	u := r.unlock(b)
	u.Contents.Wipe()
	cookieKey := make([]byte, hosted.SessionKeySize)
	rand.Read(cookieKey)
	blob, err := hosted.SealSession(cookieKey, u.Account.ID, u.Key)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("portal", func(b *testing.B) {
		size := 0
		b.ReportAllocs()
		for b.Loop() {
			res, body := r.browser.get("/me")
			if res.StatusCode != http.StatusOK {
				b.Fatalf("GET /me: %d", res.StatusCode)
			}
			size = len(body)
		}
		b.ReportMetric(float64(size), "B/page")
	})
	b.Run("wallet", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			id, k, err := hosted.OpenSession(cookieKey, blob)
			if err != nil {
				b.Fatal(err)
			}
			_, c, err := r.h.portal.wallets.Open(id, k)
			if err != nil {
				b.Fatal(err)
			}
			if len(c.Credentials) != 3 {
				b.Fatalf("%d credentials, want 3", len(c.Credentials))
			}
			c.Wipe()
		}
	})
}

// BenchmarkSignIn is a resident's sign-in from a new browser: GET /signin
// for the form's token, then POST /signin, at wallet.DefaultParams.
// Baseline: hosted.Wallets.Unlock alone, the same Argon2id run. The
// -parallel pair runs maxUnlocks sign-ins at once, as many as the portal
// lets run, so their ns/op is the node's sign-in rate at saturation.
func BenchmarkSignIn(b *testing.B) {
	r := newBenchResident(b)
	signIn := func(b *testing.B) {
		// The limiter allows one sign-in a second from an address after
		// a burst, and every sign-in here comes from loopback.
		r.h.clock.add(time.Second)
		newBenchClient(b, r.h.srv.URL).signIn(r.p, "")
	}
	unlock := func(b *testing.B) {
		u, err := r.h.portal.wallets.Unlock(r.p.number, []byte(r.p.passphrase), "")
		if err != nil {
			b.Fatal(err)
		}
		u.Contents.Wipe()
	}
	for _, c := range []struct {
		name string
		f    func(*testing.B)
	}{{"portal", signIn}, {"unlock", unlock}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.f(b)
			}
		})
	}
	for _, c := range []struct {
		name string
		f    func(*testing.B)
	}{{"portal-parallel", signIn}, {"unlock-parallel", unlock}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetParallelism(max(1, maxUnlocks/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.f(b)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signins/s")
		})
	}
}

// BenchmarkSubmitApplication is a pension application with a standing
// consent made over HTTP: open it from the services page, review the
// filled form, approve it and wait for the consent's block and the access
// record's. Baseline: the same through the desk in process (open, fill
// from the wallet, sign, Desk.Submit), without pages or the session's
// wallet. The harness's chain commits a block as soon as it is submitted;
// a real node's blocks (timeout_commit 500 ms) are not measured here.
func BenchmarkSubmitApplication(b *testing.B) {
	r := newBenchResident(b)
	r.browser.applyForPension() // the pseudonym secret, saved
	b.Run("portal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.browser.applyForPension()
		}
	})
	b.Run("desk", func(b *testing.B) {
		u := r.unlock(b)
		defer u.Contents.Wipe()
		secret, ok := pseudonymSecret(u.Contents)
		if !ok {
			b.Fatal("the wallet has no pseudonym secret")
		}
		h := r.h
		dir := h.portal.directory()
		kem := map[string][]byte{}
		for id, a := range dir.authorities {
			kem[id] = a.KEMKey
		}
		types := make([]ledger.CredentialType, 0, len(dir.types))
		for _, t := range dir.types {
			types = append(types, *t)
		}
		psn, err := pseudonymOf(secret, hrssID)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			a, err := h.desk.Open(hrssID, service.Pension)
			if err != nil {
				b.Fatal(err)
			}
			svc, _, err := h.app.Service(a.Service, 0)
			if err != nil {
				b.Fatal(err)
			}
			form := consent.Prefill(&svc.RegisterService, svc.Version, service.Held(u.Contents, h.clock.now()), service.Sensitivity(types))
			ch := service.Choice{Mode: tx.ModeStanding, Days: 30, Typed: map[string]string{"bank_account": "6222 0000 1111 2222"}, Seq: h.app.NextSeq(psn, 0)}
			sub, err := service.Approve(u.Contents, secret, a, svc, form, kem, h.app.ChainID(), ch, h.clock.now())
			if err != nil {
				b.Fatal(err)
			}
			res, err := h.desk.Submit(ctx, a.ID, sub)
			if err != nil {
				b.Fatal(err)
			}
			if res.Status != service.StatusReceived {
				b.Fatalf("application %s", res.Status)
			}
		}
	})
}
