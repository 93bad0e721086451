package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// The guardian's journey: the counter records a parent as the guardian of
// a ten-year-old for her medical insurance, with the rule that she may not
// consent alone; the parent acts for her in the portal, and every act is
// the ward's, co-signed by the guardian and marked in her log.

// recordGuardian has the clerk record g as the guardian of the minor w for
// services (every service when none are named), with w unable to consent
// alone.
func recordGuardian(h *harness, clerk *browserless, g, w *person, services ...string) {
	h.t.Helper()
	v := url.Values{"guardian_id": {g.number.String()}, "ward_id": {w.number.String()}, "basis": {tx.BasisMinor},
		"reference": {"CC/2026/0100"}, "scope": {"all"}, "days": {""}, "guardian_consent": {"yes"}}
	if len(services) > 0 {
		v.Set("scope", "chosen")
		v["service"] = services
	}
	res, body := clerk.submit("/counter/guardian", "/counter/guardian", v)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "监护关系已记录在区块链上") {
		h.t.Fatalf("recording a guardian: %d\n%s", res.StatusCode, body)
	}
}

// failures is how many wrong sign-ins in a row p's hosted wallet has
// counted, and whether it was ever opened.
func failures(t *testing.T, h *harness, p *person) (int, bool) {
	t.Helper()
	a, err := h.portal.wallets.ByNumber(p.number)
	if err != nil {
		t.Fatal(err)
	}
	return a.Failures, a.Activated
}

func TestGuardianActsForAWard(t *testing.T) {
	h := newHarness(t)
	var shown []shownPage
	clerk := h.clerk()
	parent := h.newPerson("林", "海", "male", 1984, 6, 1)
	child := h.newPerson("林", "小雨", "female", 2015, 4, 10)
	neighbour := h.newPerson("陈", "伟", "male", 1980, 2, 3)
	other := h.newPerson("陈", "乐乐", "male", 2016, 9, 9)
	g, grc := residentIn(h, clerk, parent, &shown)
	crc := h.register(clerk, child)
	h.register(clerk, neighbour)
	orc := h.register(clerk, other)
	recordGuardian(h, clerk, parent, child, service.MedicalEnrol)
	recordGuardian(h, clerk, neighbour, other)

	// The parent sees the one delegation that names them.
	res, body := g.get("/me/wards")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/me/wards: %d", res.StatusCode)
	}
	for _, want := range []string{"城乡居民医疗保险参保登记", "被监护人不能单独同意", `<span class="tag valid">有效</span>`, `action="/me/wards/act"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the wards page lacks %q", want)
		}
	}
	if n := strings.Count(body, "<tr><td>"); n != 1 || strings.Contains(body, "全部业务") {
		t.Errorf("the wards page lists %d delegations, or another guardian's; want the parent's one", n)
	}

	// Refusals before acting. Someone else's ward, even with their right
	// passphrase and code: refused before their wallet is tried, so
	// nothing is unlocked, no failure counted and the code still unused.
	act := func(n, passphrase, code string) (*http.Response, string) {
		t.Helper()
		return g.submit("/me/wards", "/me/wards/act", url.Values{"id_number": {n}, "passphrase": {passphrase}, "activation": {code}})
	}
	for _, c := range []struct {
		name, number, passphrase, code string
		status                         int
		want                           string
	}{
		{"another guardian's ward", other.number.String(), other.passphrase, orc.code, http.StatusForbidden, "您不是该居民在册的有效监护人"},
		{"another guardian's ward, guessing", other.number.String(), "a guess at the passphrase", "", http.StatusForbidden, "您不是该居民在册的有效监护人"},
		{"the other guardian", neighbour.number.String(), neighbour.passphrase, "", http.StatusForbidden, "您不是该居民在册的有效监护人"},
		{"nobody with a wallet", h.number(2014, 1, 1, "male").String(), "whatever it is", "", http.StatusForbidden, "您不是该居民在册的有效监护人"},
		{"not an ID number", "44060420150410123", child.passphrase, crc.code, http.StatusBadRequest, "身份证号码格式或校验位不正确"},
		{"the ward, wrong passphrase", child.number.String(), "not her passphrase", crc.code, http.StatusUnauthorized, "身份证号码或密码不正确"},
		{"the ward, no activation code", child.number.String(), child.passphrase, "", http.StatusUnauthorized, "首次登录需要输入回执上的激活码"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, body := act(c.number, c.passphrase, c.code)
			if res.StatusCode != c.status || !strings.Contains(body, c.want) {
				t.Errorf("%d, want %d saying %q", res.StatusCode, c.status, c.want)
			}
			if strings.Contains(body, `class="acting"`) {
				t.Error("the page says the guardian is acting")
			}
		})
	}
	if n, activated := failures(t, h, other); n != 0 || activated {
		t.Errorf("the other ward's wallet counted %d failures (activated %v); want it untouched", n, activated)
	}
	if n, activated := failures(t, h, child); n != 1 || activated {
		t.Errorf("the ward's wallet counted %d failures (activated %v); want the one wrong passphrase", n, activated)
	}
	if _, body := g.get("/me"); strings.Contains(body, `class="acting"`) || !strings.Contains(body, parent.address) {
		t.Error("after the refusals the parent is not in their own wallet")
	}
	// The other ward's code was never used: it still opens her wallet.
	ob := watch(h.browser(), &shown)
	if res, _ := ob.submit("/signin", "/signin", url.Values{"id_number": {other.number.String()}, "passphrase": {other.passphrase}, "activation": {orc.code}}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("the other ward's first sign-in with the receipt's code: %d, want 303", res.StatusCode)
	}

	// Acting for the ward: her passphrase and, the first time, her code.
	res, _ = act(child.number.String(), child.passphrase, crc.code)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/me" {
		t.Fatalf("acting for the ward: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if n, activated := failures(t, h, child); n != 0 || !activated {
		t.Errorf("after acting, the ward's wallet has %d failures (activated %v); want 0 and activated", n, activated)
	}
	_, body = g.get("/me")
	for _, want := range []string{"您现在以监护人身份代为办理", `class="acting"`, "您正在以监护人身份代办", "<strong>林小雨</strong>",
		`action="/me/wards/stop"`, `<span class="who">林海</span>`, "2015-04-10", child.address, child.number.String()} {
		if !strings.Contains(body, want) {
			t.Errorf("while acting, /me lacks %q", want)
		}
	}
	if strings.Contains(body, parent.address) || strings.Contains(body, "1984-06-01") {
		t.Error("while acting, /me shows the guardian's own credential")
	}
	if _, body := g.get("/me/wards"); strings.Contains(body, `action="/me/wards/act"`) || !strings.Contains(body, `class="acting"`) {
		t.Error("while acting, the wards page offers to act again or drops the banner")
	}

	// She applies, through her guardian, for the service the delegation
	// covers. The grant is hers, co-signed under the guardian's pseudonym.
	page := startApplication(t, g, service.MedicalEnrol)
	if _, body := g.get(page); !strings.Contains(body, "小雨") || !strings.Contains(body, "2015-04-10") || strings.Contains(body, parent.address) {
		t.Error("the form is not filled from the ward's wallet")
	}
	res, body = g.submit(page, page, medicalApproval())
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "申请已提交") {
		t.Fatalf("applying for the ward: %d\n%s", res.StatusCode, body)
	}
	wardPsn, guardianPsn := pseudonymTowards(t, h, child, hsbID), pseudonymTowards(t, h, parent, hsbID)
	app, err := h.desk.Get(strings.TrimPrefix(page, "/me/applications/"))
	if err != nil || app.Status != service.StatusReceived || !app.Guardian || app.Subject != wardPsn {
		t.Fatalf("application = %+v, %v; want received from the ward, by her guardian", app, err)
	}
	var given any
	for _, v := range app.Values {
		if v.Name == "given_name" {
			given = v.Value
		}
	}
	if given != child.given {
		t.Errorf("the authority received given name %v, want the ward's", given)
	}
	c, _, err := h.app.Consent(wardPsn, service.MedicalEnrol, 0)
	if err != nil || c.ByGuardian != guardianPsn || c.Status != ledger.ConsentActive {
		t.Fatalf("the ward's consent = %+v, %v; want active, by the guardian's pseudonym %s", c, err, guardianPsn)
	}
	if wardPsn == guardianPsn {
		t.Fatal("the guardian acted under the ward's pseudonym")
	}
	acc, _, err := h.app.AccessLog(wardPsn, 0)
	if err != nil || len(acc) != 1 || acc[0].ByGuardian != guardianPsn || acc[0].Outcome != tx.OutcomeAllowed {
		t.Errorf("the ward's access records = %+v, %v; want one allowed, marked by the guardian", acc, err)
	}
	_, body = g.get("/me/log")
	if !strings.Contains(body, "<dt>监护人代办</dt><dd>此操作由您登记的监护人代为完成。</dd>") || !strings.Contains(body, "禅城区医疗保障局") {
		t.Errorf("the ward's data log does not mark the guardian's act:\n%s", body)
	}
	if _, body := g.get("/me/consents"); !strings.Contains(body, `<span class="tag">监护人代办</span>`) {
		t.Error("the ward's consents do not mark the guardian's grant")
	}

	// A service the delegation does not cover: the desk refuses in words,
	// and nothing is granted. The refusal is not an access, so the ward's
	// log records none.
	height := h.chain.Height()
	upage := startApplication(t, g, service.UtilityAccount)
	res, body = g.submit(upage, upage, url.Values{"action": {"approve"}, "mode": {tx.ModeOneTime}, "agree": {"yes"}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "该居民须由登记的监护人共同同意") {
		t.Errorf("acting for a service outside the delegation: %d, want 409 in the desk's words\n%s", res.StatusCode, body)
	}
	utilPsn := pseudonymTowards(t, h, child, utilityID)
	if _, _, err := h.app.Consent(utilPsn, service.UtilityAccount, 0); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("a consent to the uncovered service stands on the ledger: %v", err)
	}
	if acc, _, _ := h.app.AccessLog(utilPsn, 0); len(acc) != 0 || h.chain.Height() != height {
		t.Errorf("the refusal wrote to the ledger: %d records, height %d → %d", len(acc), height, h.chain.Height())
	}
	if a, _ := h.desk.Get(strings.TrimPrefix(upage, "/me/applications/")); a == nil || a.Status != service.StatusOpen {
		t.Error("the refused application was not left open")
	}
	g.get("/me?lang=en")
	res, body = g.submit(upage, upage, url.Values{"action": {"approve"}, "mode": {tx.ModeOneTime}, "agree": {"yes"}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "this resident can consent only together with a registered guardian") {
		t.Errorf("the refusal in English: %d", res.StatusCode)
	}
	g.get("/me?lang=zh")

	// The guardian withdraws the ward's consent: the ledger says who did.
	res, _ = g.submit("/me/consents", "/me/consents/revoke", url.Values{"service": {service.MedicalEnrol}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("withdrawing for the ward: %d", res.StatusCode)
	}
	c, _, err = h.app.Consent(wardPsn, service.MedicalEnrol, 0)
	if err != nil || c.Status != ledger.ConsentRevoked || c.EndedByGuardian != guardianPsn || c.ByGuardian != guardianPsn {
		t.Fatalf("the ward's consent after the withdrawal = %+v, %v; want revoked by the guardian", c, err)
	}

	// Stopping: back in the guardian's own wallet, where there is no such
	// consent to withdraw.
	res, _ = g.submit("/me", "/me/wards/stop", nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/me" {
		t.Fatalf("stopping: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	_, body = g.get("/me")
	if !strings.Contains(body, "已结束代办") || strings.Contains(body, `class="acting"`) || !strings.Contains(body, parent.address) || strings.Contains(body, child.address) {
		t.Error("after stopping, /me is not the guardian's own")
	}
	if res, body := g.post("/me/consents/revoke", url.Values{"csrf": {g.anyToken("/me/consents")}, "service": {service.MedicalEnrol}}); res.StatusCode != http.StatusConflict || !strings.Contains(body, "没有可撤回的有效授权") {
		t.Errorf("withdrawing from the guardian's own wallet: %d, want 409", res.StatusCode)
	}

	// The ward alone: she may not consent without her guardian, and the
	// desk says so; her consent stays as her guardian left it.
	height = h.chain.Height()
	w := watch(h.browser(), &shown)
	if res, _ := w.submit("/signin", "/signin", url.Values{"id_number": {child.number.String()}, "passphrase": {child.passphrase}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the ward's own sign-in: %d", res.StatusCode)
	}
	if _, body := w.get("/me/wards"); !strings.Contains(body, "您没有登记为任何人的监护人") {
		t.Error("the ward is shown as someone's guardian")
	}
	wpage := startApplication(t, w, service.MedicalEnrol)
	res, body = w.submit(wpage, wpage, medicalApproval())
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "该居民须由登记的监护人共同同意") {
		t.Errorf("the ward applying alone: %d, want 409 in the desk's words\n%s", res.StatusCode, body)
	}
	if c, _, err := h.app.Consent(wardPsn, service.MedicalEnrol, 0); err != nil || c.Status != ledger.ConsentRevoked || h.chain.Height() != height {
		t.Errorf("the ward's refused grant changed the ledger: %+v, %v", c, err)
	}
	// Her own log shows what her guardian did, in either language.
	if _, body := w.get("/me/log"); !strings.Contains(body, "此操作由您登记的监护人代为完成") {
		t.Error("the ward's own data log does not show her guardian's act")
	}
	w.get("/me/log?lang=en")
	if _, body := w.get("/me/log"); !strings.Contains(body, "<dt>By guardian</dt><dd>Your registered guardian did this for you.</dd>") {
		t.Error("the ward's English data log does not show her guardian's act")
	}

	if !strings.Contains(h.log.String(), "a guardian is acting for a ward") {
		t.Error("no log line says a guardian acted")
	}
	checkNumberShownOnlyToOwner(t, shown, parent.number.String())
	checkNumberShownOnlyToOwner(t, shown, child.number.String())
	checkNumberShownOnlyToOwner(t, shown, other.number.String())
	checkLogSaysNothingPersonal(t, h, parent.number.String(), child.number.String(), other.number.String(), neighbour.number.String(),
		"林海", "小雨", "乐乐", parent.address, child.address, parent.passphrase, child.passphrase, other.passphrase, grc.code, crc.code, orc.code)
}
