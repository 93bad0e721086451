package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/hosted"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
	"github.com/imi-city/imi/internal/wallet"
)

// unlock opens p's hosted wallet as the resident's first sign-in does.
func (h *harness) unlock(p *person, code string) (*hosted.Unlocked, error) {
	return h.portal.wallets.Unlock(p.number, []byte(p.passphrase), code)
}

// claimsOf returns the claims of the wallet's first credential of typ.
func claimsOf(t *testing.T, c *wallet.Contents, typ string, now time.Time) map[string]any {
	t.Helper()
	for _, held := range service.Held(c, now) {
		if held.Type == typ {
			return held.Claims
		}
	}
	t.Fatalf("the wallet holds no %s credential", typ)
	return nil
}

func TestCounterRegistersAResident(t *testing.T) {
	h := newHarness(t)
	clerk := h.clerk()
	if res, body := clerk.get("/counter"); res.StatusCode != http.StatusOK || !strings.Contains(body, `href="/counter/register"`) ||
		!strings.Contains(body, `href="/counter/reproof"`) || !strings.Contains(body, `href="/counter/guardian"`) {
		t.Fatalf("counter menu: %d\n%s", res.StatusCode, body)
	}
	_, form := clerk.get("/counter/register")
	for _, want := range []string{`<script src="/assets/idcheck.js" defer></script>`, `data-idcheck="id_number_check"`, `id="id_number_check"`,
		`aria-live="polite"`, `type="password"`, `autocomplete="off"`} {
		if !strings.Contains(form, want) {
			t.Errorf("the registration form lacks %s", want)
		}
	}

	p := h.newPerson("王", "秀英", "female", 1955, 3, 7)
	rc := h.register(clerk, p)
	n := p.number.String()
	if rc.masked != n[:6]+"********"+n[14:] {
		t.Errorf("receipt shows the number as %q, want the first 6 and last 4 only", rc.masked)
	}
	if strings.Contains(rc.body, n) {
		t.Error("the receipt shows the whole ID number")
	}
	for _, want := range []string{"王秀英", "/signin", "只能使用一次"} {
		if !strings.Contains(rc.body, want) {
			t.Errorf("the receipt does not say %q", want)
		}
	}
	if strings.Contains(rc.body, p.passphrase) {
		t.Error("the receipt shows the passphrase")
	}

	// The DID is on the ledger, under the registrars' tag of the number.
	res, _, err := h.app.ResidentRecord(rc.did, 0)
	if err != nil {
		t.Fatalf("the receipt's DID is not on the ledger: %v", err)
	}
	if res.UniquenessTag != tx.Hash32(idnumber.UniquenessTag(h.uniq, p.number)) || res.Attestation.Assurance != "high" ||
		res.Attestation.Registrar != h.dids[psbID] {
		t.Errorf("resident record = %+v, want the tag of the number, high assurance, attested by the registrar", res)
	}

	// The hosted wallet exists and opens with the passphrase and the code.
	a, err := h.portal.wallets.ByNumber(p.number)
	if err != nil || a.DID != rc.did {
		t.Fatalf("hosted account = %+v, %v; want one for %s", a, err, rc.did)
	}
	if _, err := h.unlock(p, ""); !errors.Is(err, hosted.ErrActivationNeeded) {
		t.Errorf("first sign-in without the code: %v, want ErrActivationNeeded", err)
	}
	u, err := h.unlock(p, strings.ToLower(rc.code))
	if err != nil {
		t.Fatalf("unlock with the receipt's code: %v", err)
	}
	k, err := key.FromSeed(u.Contents.Key)
	if err != nil || !k.Public().Equal(res.Key) || did.FromKey(k.Public()).String() != rc.did {
		t.Errorf("the wallet's key is not the DID's key (%v)", err)
	}
	if rk, err := key.FromSeed(u.Contents.RecoveryKey); err != nil || tx.Hash32(key.RecoveryHash(rk.Public())) != res.RecoveryHash {
		t.Errorf("the wallet's recovery key is not the one the ledger committed to (%v)", err)
	}
	if len(u.Contents.Credentials) != 1 || u.Contents.Credentials[0].IssuerID != psbID {
		t.Fatalf("wallet credentials = %+v, want the identity credential from %s", u.Contents.Credentials, psbID)
	}
	claims := claimsOf(t, u.Contents, credential.TypeResidentIdentity, h.clock.now())
	for name, want := range map[string]any{"family_name": "王", "given_name": "秀英", "sex": "female", "ethnicity": "汉",
		"resident_id_number": n, "registered_address": p.address, "birth_date": "1955-03-07", "age_over_18": true, "age_over_60": true} {
		if claims[name] != want {
			t.Errorf("claim %s = %v, want %v", name, claims[name], want)
		}
	}
	if st := h.portal.liveStatus(&u.Contents.Credentials[0], h.clock.now()); st != "valid" {
		t.Errorf("the identity credential's status is %s, want valid", st)
	}

	// The log says what happened, not to whom.
	logs := h.log.String()
	if !strings.Contains(logs, "resident registered") {
		t.Errorf("no log line says a resident was registered:\n%s", logs)
	}
	for _, secret := range []string{n, n[:14], "秀英", p.address, rc.did, p.passphrase, rc.code} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q:\n%s", secret, logs)
		}
	}
}

func TestCounterRefusesAWrongFormWithNothingWritten(t *testing.T) {
	h := newHarness(t)
	clerk := h.clerk()
	ok := h.newPerson("李", "雷", "male", 1980, 5, 17)
	n := ok.number.String()
	badCheck := n[:17] + map[bool]string{true: "1", false: "2"}[n[17] != '1']
	for _, c := range []struct {
		name, field, want string
		edit              func(url.Values)
	}{
		{"bad check digit", "id_number", "校验码不符", func(v url.Values) { v.Set("id_number", badCheck) }},
		{"short number", "id_number", "应为18位", func(v url.Values) { v.Set("id_number", n[:17]) }},
		{"not a date", "id_number", "出生日期无效", func(v url.Values) {
			b := n[:10] + "13" + n[12:17]
			v.Set("id_number", b+string(idnumber.CheckChar(b)))
		}},
		{"born tomorrow", "id_number", "晚于今天", func(v url.Values) {
			b := "440604" + h.clock.now().Add(48*time.Hour).Format("20060102") + "001"
			v.Set("id_number", b+string(idnumber.CheckChar(b)))
		}},
		{"sex against the number", "sex", "性别与身份证号码不一致", func(v url.Values) { v.Set("sex", "female") }},
		{"no family name", "family_name", "此项必填", func(v url.Values) { v.Set("family_name", " ") }},
		{"control character", "registered_address", "不允许的字符", func(v url.Values) { v.Set("registered_address", "祖庙路\x07") }},
		{"short passphrase", "passphrase", "至少需要8个字符", func(v url.Values) { v.Set("passphrase", "1234567"); v.Set("passphrase2", "1234567") }},
		{"passphrases differ", "passphrase2", "两次输入的密码不一致", func(v url.Values) { v.Set("passphrase2", ok.passphrase+"!") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			height, residents := h.chain.Height(), h.residentsOnLedger()
			v := ok.form()
			c.edit(v)
			res, body := clerk.submit("/counter/register", "/counter/register", v)
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", res.StatusCode)
			}
			if !strings.Contains(body, c.want) || !strings.Contains(body, "未做任何登记") {
				t.Errorf("the page does not say %q and that nothing was registered:\n%s", c.want, body)
			}
			// The error is next to its field and in the summary at the top.
			if !regexp.MustCompile(`id="`+c.field+`_error"`).MatchString(body) || !strings.Contains(body, `href="#`+c.field+`"`) {
				t.Errorf("no error next to %s or in the summary", c.field)
			}
			if !regexp.MustCompile(`id="` + c.field + `"[^>]*aria-describedby="[^"]*` + c.field + `_error"[^>]*aria-invalid="true"`).MatchString(body) {
				t.Errorf("%s is not marked invalid and described by its error", c.field)
			}
			// Values are kept; passphrases are not.
			if c.field != "family_name" && !strings.Contains(body, `value="李"`) {
				t.Error("the family name was not kept")
			}
			if strings.Contains(body, ok.passphrase) || strings.Contains(body, "1234567") {
				t.Error("a passphrase was sent back in the page")
			}
			if h.chain.Height() != height || h.residentsOnLedger() != residents {
				t.Error("something was written to the ledger")
			}
			if _, err := h.portal.wallets.ByNumber(ok.number); !errors.Is(err, hosted.ErrNoAccount) {
				t.Errorf("a hosted wallet was made: %v", err)
			}
		})
	}

	// The same refusal, in English.
	clerk.get("/counter?lang=en")
	v := ok.form()
	v.Set("id_number", badCheck)
	res, body := clerk.submit("/counter/register", "/counter/register", v)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "The check digit does not match") || !strings.Contains(body, "nothing was registered") {
		t.Errorf("English refusal: %d\n%s", res.StatusCode, body)
	}
}

func TestCounterRefusesADuplicateInTheLedgersWords(t *testing.T) {
	h := newHarness(t)
	clerk := h.clerk()
	p := h.newPerson("陈", "静", "female", 1990, 1, 2)
	first := h.register(clerk, p)
	height, residents := h.chain.Height(), h.residentsOnLedger()

	again := *p
	again.passphrase = "another passphrase"
	res, body := clerk.submit("/counter/register", "/counter/register", again.form())
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, ledger.CodeAlreadyRegistered.MessageZH()) {
		t.Errorf("second registration: %d, want 409 in the ledger's words\n%s", res.StatusCode, body)
	}
	if h.chain.Height() != height || h.residentsOnLedger() != residents {
		t.Error("the second registration wrote to the ledger")
	}
	if u, err := h.unlock(p, first.code); err != nil || u.Contents.DID != first.did {
		t.Errorf("the first registration's wallet no longer opens: %v", err)
	}

	// Registered on the ledger elsewhere (another node, the command line),
	// so there is no wallet here: the ledger itself refuses.
	q := h.newPerson("周", "杰", "male", 1975, 8, 9)
	k, _ := key.Generate()
	rk, _ := key.Generate()
	x, err := tx.New(harnessChainID, h.dids[psbID], 0, h.app.NextSeq(h.dids[psbID], 0), &tx.RegisterResident{
		DID: did.FromKey(k.Public()).String(), Key: k.Public(), RecoveryHash: key.RecoveryHash(rk.Public()),
		UniquenessTag: idnumber.UniquenessTag(h.uniq, q.number), Assurance: "high"})
	if err != nil {
		t.Fatal(err)
	}
	x.Sign(h.keys[psbID])
	if _, err := h.chain.Submit(context.Background(), x.Encode()); err != nil {
		t.Fatal(err)
	}
	residents = h.residentsOnLedger()
	res, body = clerk.submit("/counter/register", "/counter/register", q.form())
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, ledger.CodeAlreadyRegistered.MessageZH()) || !strings.Contains(body, `id="id_number_error"`) {
		t.Errorf("registration of a person the ledger knows: %d, want 409 in the ledger's words\n%s", res.StatusCode, body)
	}
	if h.residentsOnLedger() != residents {
		t.Error("a second DID was registered")
	}
	if _, err := h.portal.wallets.ByNumber(q.number); !errors.Is(err, hosted.ErrNoAccount) {
		t.Errorf("a hosted wallet was made for a refused registration: %v", err)
	}
}

func TestCounterReproofReplacesTheKeyAndRevokesTheOldCredentials(t *testing.T) {
	h := newHarness(t)
	clerk := h.clerk()
	p := h.newPerson("黄", "桂兰", "female", 1958, 11, 30)
	first := h.register(clerk, p)
	u, err := h.unlock(p, first.code)
	if err != nil {
		t.Fatal(err)
	}
	// The pension bureau issued her a social insurance credential since.
	si, _, err := h.portal.issue(context.Background(), hrssID, laneConsole, credential.TypeSocialInsurance, first.did,
		map[string]any{"insurance_number": "440604195811300022", "pension_status": "contributing", "contribution_years": 30}, 0)
	if err != nil {
		t.Fatal(err)
	}
	u.Contents.Credentials = append(u.Contents.Credentials, *si)
	if err := h.portal.wallets.Save(u.Account, u.Contents, u.Key); err != nil {
		t.Fatal(err)
	}
	old := slices.Clone(u.Contents.Credentials)
	oldRecord, _, err := h.app.ResidentRecord(first.did, 0)
	if err != nil {
		t.Fatal(err)
	}

	oldPass := p.passphrase
	p.passphrase = "a brand new passphrase"
	res, body := clerk.submit("/counter/reproof", "/counter/reproof", p.form())
	if res.StatusCode != http.StatusOK {
		t.Fatalf("re-proof: %d\n%s", res.StatusCode, body)
	}
	rc := readReceipt(t, body)
	if rc.did != first.did || rc.code == first.code {
		t.Errorf("re-proof receipt: DID %s, code %s; want the same DID and a new code", rc.did, rc.code)
	}
	if !strings.Contains(body, "社会保险") || !strings.Contains(body, "需要重新申领") {
		t.Errorf("the receipt does not list the social insurance credential to ask for again:\n%s", body)
	}

	// The ledger binds a new key.
	rec, _, err := h.app.ResidentRecord(first.did, 0)
	if err != nil || rec.Key.Equal(oldRecord.Key) || rec.KeyVersion != oldRecord.KeyVersion+1 {
		t.Fatalf("resident record after re-proof = %+v, %v; want a new key", rec, err)
	}
	// The old credentials are revoked.
	for _, c := range old {
		list, err := credential.ListOf(c.StatusURI, c.IssuerID)
		if err != nil {
			t.Fatalf("bad status URI %s", c.StatusURI)
		}
		e, _, err := h.app.Status(c.IssuerID, list, uint32(c.StatusIdx), 0)
		if err != nil || e.Status != ledger.StatusInvalid {
			t.Errorf("old %s credential: status %+v, %v; want revoked", c.Type, e, err)
		}
	}
	// The old passphrase opens nothing; the new one and the new code open
	// a wallet with the new key and a fresh identity credential.
	stale := *p
	stale.passphrase = oldPass
	if _, err := h.unlock(&stale, first.code); !errors.Is(err, hosted.ErrWrongPassphrase) {
		t.Errorf("old passphrase after re-proof: %v, want ErrWrongPassphrase", err)
	}
	nu, err := h.unlock(p, rc.code)
	if err != nil {
		t.Fatalf("new passphrase and code: %v", err)
	}
	k, _ := key.FromSeed(nu.Contents.Key)
	if !k.Public().Equal(rec.Key) {
		t.Error("the new wallet's key is not the key the ledger bound")
	}
	if len(nu.Contents.Credentials) != 1 || nu.Contents.Credentials[0].Type != credential.TypeResidentIdentity {
		t.Fatalf("new wallet credentials = %+v, want one identity credential", nu.Contents.Credentials)
	}
	if st := h.portal.liveStatus(&nu.Contents.Credentials[0], h.clock.now()); st != "valid" {
		t.Errorf("the new identity credential is %s, want valid", st)
	}
	if claimsOf(t, nu.Contents, credential.TypeResidentIdentity, h.clock.now())["given_name"] != "桂兰" {
		t.Error("the new identity credential does not carry the card's details")
	}
	if !strings.Contains(h.log.String(), "resident re-proofed") {
		t.Error("no log line says a resident was re-proofed")
	}

	// A number with no wallet here is refused before anything is written.
	height := h.chain.Height()
	nobody := h.newPerson("赵", "敏", "female", 1970, 2, 2)
	res, body = clerk.submit("/counter/reproof", "/counter/reproof", nobody.form())
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "没有此身份证号码的钱包") || h.chain.Height() != height {
		t.Errorf("re-proof of an unknown number: %d, height %d → %d\n%s", res.StatusCode, height, h.chain.Height(), body)
	}
}

// TestCounterReproofsAResidentRegisteredElsewhere re-proofs residents
// who registered with the command-line wallet or at another node, so have
// no hosted wallet here: the ledger's index of uniqueness tags finds the
// DID, and the counter makes them a hosted wallet.
func TestCounterReproofsAResidentRegisteredElsewhere(t *testing.T) {
	h := newHarness(t)
	clerk := h.clerk()
	// write commits body signed by the registrar, as imi does from the
	// command line.
	write := func(body tx.Body) {
		t.Helper()
		x, err := tx.New(harnessChainID, h.dids[psbID], 0, h.app.NextSeq(h.dids[psbID], 0), body)
		if err != nil {
			t.Fatal(err)
		}
		x.Sign(h.keys[psbID])
		if res, err := h.chain.Submit(context.Background(), x.Encode()); err != nil || res.Code != 0 {
			t.Fatalf("%T: %v, %+v", body, err, res)
		}
	}
	// anchor registers p on the ledger with no hosted wallet here.
	anchor := func(p *person) string {
		t.Helper()
		k, _ := key.Generate()
		rk, _ := key.Generate()
		d := did.FromKey(k.Public()).String()
		write(&tx.RegisterResident{DID: d, Key: k.Public(), RecoveryHash: key.RecoveryHash(rk.Public()),
			UniquenessTag: idnumber.UniquenessTag(h.uniq, p.number), Assurance: "high"})
		return d
	}

	p := h.newPerson("吴", "建国", "male", 1962, 4, 18)
	d := anchor(p)
	before, _, err := h.app.ResidentRecord(d, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.portal.wallets.ByNumber(p.number); !errors.Is(err, hosted.ErrNoAccount) {
		t.Fatalf("a hosted wallet exists before the re-proof: %v", err)
	}
	res, body := clerk.submit("/counter/reproof", "/counter/reproof", p.form())
	if res.StatusCode != http.StatusOK {
		t.Fatalf("re-proof: %d\n%s", res.StatusCode, body)
	}
	rc := readReceipt(t, body)
	if rc.did != d || rc.code == "" {
		t.Errorf("re-proof receipt: DID %s, code %q; want %s and a code", rc.did, rc.code, d)
	}
	for _, want := range []string{"您原来的钱包", "请向原签发机构申请重新签发"} {
		if !strings.Contains(body, want) {
			t.Errorf("the receipt does not say %q", want)
		}
	}

	// The ledger binds a new key, attested by this counter.
	rec, _, err := h.app.ResidentRecord(d, 0)
	if err != nil || rec.Key.Equal(before.Key) || rec.KeyVersion != before.KeyVersion+1 || rec.Attestation.Registrar != h.dids[psbID] {
		t.Fatalf("resident record after re-proof = %+v, %v; want a new key", rec, err)
	}
	// A hosted wallet exists now; the new passphrase and the code open it,
	// and it holds the new key and a fresh identity credential.
	if a, err := h.portal.wallets.ByNumber(p.number); err != nil || a.DID != d {
		t.Fatalf("hosted account = %+v, %v; want one for %s", a, err, d)
	}
	u, err := h.unlock(p, rc.code)
	if err != nil {
		t.Fatalf("new passphrase and code: %v", err)
	}
	if k, err := key.FromSeed(u.Contents.Key); err != nil || !k.Public().Equal(rec.Key) {
		t.Errorf("the new wallet's key is not the key the ledger bound (%v)", err)
	}
	if rk, err := key.FromSeed(u.Contents.RecoveryKey); err != nil || tx.Hash32(key.RecoveryHash(rk.Public())) != rec.RecoveryHash {
		t.Errorf("the new wallet's recovery key is not the one the ledger committed to (%v)", err)
	}
	if len(u.Contents.Credentials) != 1 || u.Contents.Credentials[0].Type != credential.TypeResidentIdentity {
		t.Fatalf("new wallet credentials = %+v, want one identity credential", u.Contents.Credentials)
	}
	if st := h.portal.liveStatus(&u.Contents.Credentials[0], h.clock.now()); st != "valid" {
		t.Errorf("the new identity credential is %s, want valid", st)
	}
	if got := claimsOf(t, u.Contents, credential.TypeResidentIdentity, h.clock.now())["given_name"]; got != "建国" {
		t.Errorf("given_name = %v, want the card's", got)
	}
	if logs := h.log.String(); !strings.Contains(logs, "resident re-proofed") || strings.Contains(logs, d) {
		t.Errorf("the log does not say a resident was re-proofed, or names them:\n%s", logs)
	}

	// From now on the hosted wallet is what a re-proof replaces.
	p.passphrase = "yet another passphrase"
	res, body = clerk.submit("/counter/reproof", "/counter/reproof", p.form())
	if res.StatusCode != http.StatusOK || strings.Contains(body, "您原来的钱包") {
		t.Errorf("second re-proof: %d, want 200 without the old-wallet notice\n%s", res.StatusCode, body)
	}

	// Refused, each before anything is written.
	deceased := h.newPerson("吴", "老", "male", 1930, 1, 1)
	write(&tx.Deactivate{DID: anchor(deceased), Reason: ledger.ReasonDeceased})
	for _, c := range []struct {
		name, wantZH, wantEN string
		p                    *person
	}{
		{"not registered", "此人尚未登记", "This person is not registered", h.newPerson("赵", "敏", "female", 1970, 2, 2)},
		{"deactivated", "已注销", "was deactivated", deceased},
	} {
		t.Run(c.name, func(t *testing.T) {
			for lang, want := range map[string]string{"zh": c.wantZH, "en": c.wantEN} {
				clerk.get("/counter?lang=" + lang)
				height, residents := h.chain.Height(), h.residentsOnLedger()
				res, body := clerk.submit("/counter/reproof", "/counter/reproof", c.p.form())
				if res.StatusCode != http.StatusConflict || !strings.Contains(body, want) || !strings.Contains(body, `id="id_number_error"`) {
					t.Errorf("%s: %d, want 409 saying %q next to the number\n%s", lang, res.StatusCode, want, body)
				}
				if h.chain.Height() != height || h.residentsOnLedger() != residents {
					t.Errorf("%s: something was written to the ledger", lang)
				}
				if _, err := h.portal.wallets.ByNumber(c.p.number); !errors.Is(err, hosted.ErrNoAccount) {
					t.Errorf("%s: a hosted wallet was made: %v", lang, err)
				}
			}
		})
	}
	clerk.get("/counter?lang=zh")

	// One who moved away and came back is re-activated, as the ledger
	// allows in person.
	back := h.newPerson("吴", "归", "female", 1988, 9, 9)
	backDID := anchor(back)
	write(&tx.Deactivate{DID: backDID, Reason: ledger.ReasonMovedAway})
	if res, body := clerk.submit("/counter/reproof", "/counter/reproof", back.form()); res.StatusCode != http.StatusOK {
		t.Fatalf("re-proof of a resident who moved away: %d\n%s", res.StatusCode, body)
	}
	if rec, _, err := h.app.ResidentRecord(backDID, 0); err != nil || rec.Deactivated {
		t.Errorf("resident who moved away, after re-proof = %+v, %v; want active", rec, err)
	}
}

func TestCounterRecordsAGuardian(t *testing.T) {
	h := newHarness(t)
	clerk := h.clerk()
	parent := h.newPerson("林", "海", "male", 1984, 6, 1)
	child := h.newPerson("林", "小雨", "female", 2016, 5, 1)
	elder := h.newPerson("林", "德", "male", 1940, 1, 1)
	pr, cr, er := h.register(clerk, parent), h.register(clerk, child), h.register(clerk, elder)

	guardianForm := func(g, w *person, edit func(url.Values)) url.Values {
		v := url.Values{"guardian_id": {g.number.String()}, "ward_id": {w.number.String()}, "basis": {tx.BasisMinor},
			"reference": {"CC/2026/0042"}, "scope": {"chosen"}, "service": {service.MedicalEnrol}, "days": {""}, "guardian_consent": {"yes"}}
		if edit != nil {
			edit(v)
		}
		return v
	}
	_, form := clerk.get("/counter/guardian")
	for _, want := range []string{`<legend>法律依据</legend>`, `name="basis" value="minor"`, `value="` + service.MedicalEnrol + `"`, `data-idcheck="ward_id_check"`} {
		if !strings.Contains(form, want) {
			t.Errorf("the guardian form lacks %s", want)
		}
	}

	// Refusals, each before anything is written.
	unknown := h.newPerson("林", "无", "male", 2018, 1, 1)
	for _, c := range []struct {
		name, want string
		g, w       *person
		edit       func(url.Values)
	}{
		{"ward without a wallet", "没有此身份证号码的钱包", parent, unknown, nil},
		{"same person", "不能是同一人", parent, parent, nil},
		{"minor basis for an adult", "已年满18周岁", parent, elder, nil},
		{"helper cannot consent for the ward", "老人自行同意", parent, elder, func(v url.Values) { v.Set("basis", tx.BasisAdultAssisted) }},
		{"a child as guardian", "监护人须年满18周岁", child, elder, func(v url.Values) { v.Set("basis", tx.BasisAdultAssisted); v.Del("guardian_consent") }},
		{"no service ticked", "至少一项业务", parent, child, func(v url.Values) { v.Del("service") }},
		{"free text reference", "档案编号只能使用", parent, child, func(v url.Values) { v.Set("reference", "林海 户口簿") }},
		{"no basis", "请选择法律依据", parent, child, func(v url.Values) { v.Del("basis") }},
		{"days for an adult", "1至6588", parent, elder, func(v url.Values) { v.Set("basis", tx.BasisAdultAssisted); v.Del("guardian_consent") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			height := h.chain.Height()
			res, body := clerk.submit("/counter/guardian", "/counter/guardian", guardianForm(c.g, c.w, c.edit))
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, c.want) || !strings.Contains(body, "未记录监护关系") {
				t.Errorf("%d, want 400 saying %q\n%s", res.StatusCode, c.want, body)
			}
			if h.chain.Height() != height {
				t.Error("something was written to the ledger")
			}
		})
	}

	// A parent for a ten-year-old, for medical insurance, until she is 18.
	res, body := clerk.submit("/counter/guardian", "/counter/guardian", guardianForm(parent, child, nil))
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "监护关系已记录在区块链上") {
		t.Fatalf("guardian: %d\n%s", res.StatusCode, body)
	}
	ds, _, err := h.app.Delegations(cr.did, 0)
	if err != nil || len(ds) != 1 {
		t.Fatalf("delegations of the ward = %+v, %v; want one", ds, err)
	}
	d := ds[0]
	if d.Guardian != pr.did || d.Basis != tx.BasisMinor || !d.GuardianConsent || d.Reference != "CC/2026/0042" ||
		!slices.Equal(d.Scope, []string{service.MedicalEnrol}) || d.Registrar != psbID {
		t.Errorf("delegation = %+v", d)
	}
	if adult := time.Date(2034, 5, 1, 0, 0, 0, 0, cst); d.Until.After(adult) || d.Until.Before(adult.Add(-48*time.Hour)) {
		t.Errorf("delegation ends %s, want on the day before her 18th birthday", d.Until)
	}
	if !strings.Contains(body, d.ID) || !strings.Contains(body, (&page{}).Date(d.Until)) {
		t.Errorf("the confirmation does not show the delegation id %s and its end", d.ID)
	}

	// An adult child helping an elderly parent with every service.
	res, body = clerk.submit("/counter/guardian", "/counter/guardian", guardianForm(parent, elder, func(v url.Values) {
		v.Set("basis", tx.BasisAdultAssisted)
		v.Set("scope", "all")
		v.Set("days", "365")
		v.Del("guardian_consent")
	}))
	if res.StatusCode != http.StatusOK {
		t.Fatalf("helper of an elderly parent: %d\n%s", res.StatusCode, body)
	}
	if ds, _, _ := h.app.Delegations(er.did, 0); len(ds) != 1 || ds[0].GuardianConsent || !slices.Equal(ds[0].Scope, []string{"*"}) {
		t.Errorf("elderly parent's delegations = %+v", ds)
	}
	logs := h.log.String()
	if !strings.Contains(logs, "guardian delegation recorded") || strings.Contains(logs, cr.did) || strings.Contains(logs, child.number.String()) {
		t.Errorf("the log does not say a delegation was recorded, or names someone:\n%s", logs)
	}
}

// TestCounterPagesLabelEveryInput checks, on every counter form, that each
// input has a label, that help and errors are tied to their fields, and
// that no script runs inline (the policy would block it).
func TestCounterPagesLabelEveryInput(t *testing.T) {
	h := newHarness(t)
	clerk := h.clerk()
	input := regexp.MustCompile(`<(input|select)\b[^>]*>`)
	attr := func(tag, name string) string {
		m := regexp.MustCompile(`\s` + name + `="([^"]*)"`).FindStringSubmatch(tag)
		if m == nil {
			return ""
		}
		return m[1]
	}
	res, script := clerk.get("/assets/idcheck.js")
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), "javascript") || !strings.Contains(script, "data-idcheck") {
		t.Errorf("/assets/idcheck.js: %d, %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, lang := range []string{"zh", "en"} {
		clerk.get("/counter?lang=" + lang)
		for _, path := range []string{"/counter", "/counter/register", "/counter/reproof", "/counter/guardian"} {
			res, body := clerk.get(path)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d", path, res.StatusCode)
			}
			if strings.Contains(body, "<script>") || regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
				t.Errorf("%s has inline script", path)
			}
			if regexp.MustCompile(`\b(counter|err)\.[a-z_]+\b`).MatchString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(body, "")) {
				t.Errorf("%s (%s) shows an untranslated key", path, lang)
			}
			for _, loc := range input.FindAllStringIndex(body, -1) {
				tag := body[loc[0]:loc[1]]
				if attr(tag, "type") == "hidden" {
					continue
				}
				id := attr(tag, "id")
				wrapped := strings.HasSuffix(body[:loc[0]], "<label>")
				if id == "" || !wrapped && !strings.Contains(body, `<label for="`+id+`">`) {
					t.Errorf("%s: %s has no label", path, tag)
				}
				for _, ref := range strings.Fields(attr(tag, "aria-describedby")) {
					if !strings.Contains(body, `id="`+ref+`"`) {
						t.Errorf("%s: %s is described by a missing %s", path, id, ref)
					}
				}
			}
		}
	}
}

// TestIDCheckScript runs assets/idcheck.js in Node.js against a minimal
// page, typing as a clerk does, and reads what the live region says.
func TestIDCheckScript(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("Node.js is needed to test assets/idcheck.js (apt-get install nodejs): ", err)
	}
	n, err := idnumber.Example("440604", 1955, 3, 7, 2)
	if err != nil {
		t.Fatal(err)
	}
	good := n.String()
	bad := good[:17] + map[bool]string{true: "1", false: "2"}[good[17] != '1']
	script, err := os.ReadFile(filepath.Join("assets", "idcheck.js"))
	if err != nil {
		t.Fatal(err)
	}
	// A page of two fields: one naming its region (with words from the
	// catalogue), one bare, for which the script makes a region.
	harness := `
"use strict";
function el(tag) {
  const e = {tagName: tag, attrs: {}, listeners: {}, textContent: "", className: "", value: "", parentNode: null, id: "",
    getAttribute(n) { return n in this.attrs ? this.attrs[n] : null; },
    setAttribute(n, v) { this.attrs[n] = String(v); if (n === "id") this.id = String(v); },
    removeAttribute(n) { delete this.attrs[n]; },
    addEventListener(ev, f) { (this.listeners[ev] = this.listeners[ev] || []).push(f); },
    insertBefore(child) { child.parentNode = this; page.push(child); },
  };
  return e;
}
const page = [];
const parent = el("div");
const named = el("input"); named.setAttribute("id", "id_number"); named.setAttribute("data-idcheck", "id_number_check"); named.parentNode = parent;
const region = el("p"); region.setAttribute("id", "id_number_check"); region.setAttribute("data-ok", "OK-FROM-CATALOGUE");
const bare = el("input"); bare.setAttribute("id", "other"); bare.setAttribute("data-idcheck", ""); bare.setAttribute("aria-describedby", "other_help"); bare.parentNode = parent;
page.push(parent, named, region, bare);
global.document = {
  documentElement: {getAttribute: () => "en"},
  getElementById: (id) => page.find((e) => e.id === id) || null,
  createElement: el,
  querySelectorAll: () => [named, bare],
};
` + string(script) + `
function type(input, text) { input.value = text; input.listeners.input.forEach((f) => f()); }
function leave(input) { input.listeners.blur.forEach((f) => f()); }
const out = {};
type(named, "44060419");             out.partial = region.textContent;
leave(named);                        out.partialLeft = region.textContent;
type(named, "4406041955030700");     out.typing = region.textContent;
type(named, "` + good + `");         out.good = region.textContent; out.goodInvalid = named.getAttribute("aria-invalid");
type(named, "` + bad + `");          out.bad = region.textContent; out.badInvalid = named.getAttribute("aria-invalid");
type(named, "44060419A5");           out.letters = region.textContent;
type(named, "44060419551307001X");   out.month = region.textContent;
const made = page.find((e) => e.id === "other_check");
type(bare, "` + strings.ToLower(good[:17]) + `");
type(bare, "` + bad + `");            out.bare = made ? made.textContent : "no region";
out.bareLive = made ? made.getAttribute("aria-live") : "";
out.bareDescribed = bare.getAttribute("aria-describedby");
console.log(JSON.stringify(out));
`
	f := filepath.Join(t.TempDir(), "idcheck_test.js")
	if err := os.WriteFile(f, []byte(harness), 0o600); err != nil {
		t.Fatal(err)
	}
	outb, err := exec.Command(nodeBin, f).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, outb)
	}
	out := string(outb)
	for _, want := range []string{
		`"partial":""`,
		`"partialLeft":"A resident ID number has 18 characters."`,
		`"typing":""`,
		`"good":"OK-FROM-CATALOGUE"`,
		`"bad":"The check digit does not match: the number was probably mistyped."`,
		`"badInvalid":"true"`,
		`"letters":"A resident ID number is 17 digits followed by a digit or X."`,
		`"month":"The birth date in the number is not a real date."`,
		`"bare":"The check digit does not match: the number was probably mistyped."`,
		`"bareLive":"polite"`,
		`"bareDescribed":"other_help other_check"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("idcheck.js: want %s in %s", want, out)
		}
	}
	if strings.Contains(out, `"goodInvalid":"true"`) {
		t.Errorf("a good number is marked invalid: %s", out)
	}
}
