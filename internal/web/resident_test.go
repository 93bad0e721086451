package web

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// The resident's own pages, driven as a browser drives them against the
// harness's node. Every page a resident's browser is shown is kept, so a
// test can check at the end what none of them says.

// shownPage is one page a resident's browser was shown.
type shownPage struct {
	method, path string
	status       int
	body         string
}

// watched is a resident's browser that keeps every page it is shown.
type watched struct {
	*browserless
	shown *[]shownPage
}

func watch(b *browserless, shown *[]shownPage) *watched { return &watched{b, shown} }

func (w *watched) get(path string) (*http.Response, string) {
	w.t.Helper()
	res, body := w.browserless.get(path)
	*w.shown = append(*w.shown, shownPage{http.MethodGet, path, res.StatusCode, body})
	return res, body
}

func (w *watched) post(path string, form url.Values) (*http.Response, string) {
	w.t.Helper()
	res, body := w.browserless.post(path, form)
	*w.shown = append(*w.shown, shownPage{http.MethodPost, path, res.StatusCode, body})
	return res, body
}

// submit is browserless.submit, keeping both pages.
func (w *watched) submit(page, action string, form url.Values) (*http.Response, string) {
	w.t.Helper()
	res, body := w.get(page)
	if res.StatusCode != http.StatusOK {
		w.t.Fatalf("GET %s: %d", page, res.StatusCode)
	}
	v := url.Values{}
	for k, vs := range form {
		v[k] = vs
	}
	v.Set("csrf", formToken(w.t, body, action))
	return w.post(action, v)
}

// anyToken is a fresh one-time token from the sign-out form of page: a
// token is the session's, not one form's, so it serves to send any form
// again as a person with a second tab open would.
func (w *watched) anyToken(page string) string {
	w.t.Helper()
	_, body := w.get(page)
	return formToken(w.t, body, "/signout")
}

// residentIn registers p at the counter and signs them in for the first
// time, with the receipt's activation code.
func residentIn(h *harness, clerk *browserless, p *person, shown *[]shownPage) (*watched, *receipt) {
	h.t.Helper()
	rc := h.register(clerk, p)
	b := watch(h.browser(), shown)
	res, body := b.submit("/signin", "/signin", url.Values{"id_number": {p.number.String()}, "passphrase": {p.passphrase}, "activation": {rc.code}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/me" {
		h.t.Fatalf("resident sign-in: %d to %q\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	return b, rc
}

// startApplication opens an application for svc from the services page and
// returns the application's page.
func startApplication(t *testing.T, b *watched, svc string) string {
	t.Helper()
	res, body := b.submit("/me/services", "/me/services/apply", url.Values{"service": {svc}})
	to := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(to, "/me/applications/") {
		t.Fatalf("opening an application for %s: %d to %q\n%s", svc, res.StatusCode, to, body)
	}
	return to
}

// medicalApproval approves the medical insurance enrolment with a standing
// consent of 30 days: every box a resident ticks to send it.
func medicalApproval() url.Values {
	return url.Values{"action": {"approve"}, "mode": {tx.ModeStanding}, "days": {"30"}, "sensitive_ok": {"yes"}, "agree": {"yes"}}
}

// pseudonymTowards is p's pseudonym towards authority, derived from the
// secret in p's hosted wallet.
func pseudonymTowards(t *testing.T, h *harness, p *person, authority string) string {
	t.Helper()
	u, err := h.unlock(p, "")
	if err != nil {
		t.Fatalf("opening a wallet: %v", err)
	}
	defer u.Contents.Wipe()
	secret, ok := pseudonymSecret(u.Contents)
	if !ok {
		t.Fatal("the wallet has no pseudonym secret")
	}
	psn, err := pseudonymOf(secret, authority)
	if err != nil {
		t.Fatal(err)
	}
	return psn
}

// hasPseudonymSecret reports whether p's wallet has made its pseudonym
// secret yet: until it has, nothing can stand on the ledger under p's
// pseudonyms.
func hasPseudonymSecret(t *testing.T, h *harness, p *person) bool {
	t.Helper()
	u, err := h.unlock(p, "")
	if err != nil {
		t.Fatalf("opening a wallet: %v", err)
	}
	defer u.Contents.Wipe()
	_, ok := pseudonymSecret(u.Contents)
	return ok
}

var (
	credentialStateRE = regexp.MustCompile(`(?s)<section class="credential" aria-labelledby="cred-([^"]+)">.*?<span class="tag ([a-z]+)">([^<]*)</span>`)
	sensitiveSetRE    = regexp.MustCompile(`(?s)<fieldset class="sensitive">.*?</fieldset>`)
	formTableRE       = regexp.MustCompile(`(?s)<legend>[^<]*</legend>\s*<table>.*?</table>`)
	missingListRE     = regexp.MustCompile(`(?s)<div class="error" role="alert"><p>[^<]*</p><ul>(.*?)</ul></div>`)
)

// credentialStates reads /me: the status class and words of each credential
// type shown.
func credentialStates(body string) map[string][2]string {
	out := map[string][2]string{}
	for _, m := range credentialStateRE.FindAllStringSubmatch(body, -1) {
		out[m[1]] = [2]string{m[2], m[3]}
	}
	return out
}

// checkNumberShownOnlyToOwner checks that no page shows the resident ID
// number n except where the resident's own credentials are: /me, and the
// sensitive items of an application form, which the resident consents to
// separately.
func checkNumberShownOnlyToOwner(t *testing.T, shown []shownPage, n string) {
	t.Helper()
	for _, pg := range shown {
		if !strings.Contains(pg.body, n) {
			continue
		}
		switch {
		case pg.method == http.MethodGet && pg.path == "/me":
		case strings.HasPrefix(pg.path, "/me/applications/") && !strings.Contains(sensitiveSetRE.ReplaceAllString(pg.body, ""), n):
		default:
			t.Errorf("%s %s (%d) shows the resident ID number", pg.method, pg.path, pg.status)
		}
	}
}

// checkLogSaysNothingPersonal checks the node's log for each of secrets.
func checkLogSaysNothingPersonal(t *testing.T, h *harness, secrets ...string) {
	t.Helper()
	logged := h.log.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(logged, s) {
			t.Errorf("the node's log holds %q", s)
		}
	}
}

// TestResidentSeesCredentialsWithTheirStatus: /me lists each credential
// with its issuer, its claims (sensitive ones marked) and its live status,
// and a revocation at the console shows there at once.
func TestResidentSeesCredentialsWithTheirStatus(t *testing.T) {
	h := newHarness(t)
	var shown []shownPage
	clerk := h.clerk()
	wang := h.newPerson("王", "秀英", "female", 1958, 3, 14)
	b, rc := residentIn(h, clerk, wang, &shown)

	res, body := b.get("/me")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/me: %d", res.StatusCode)
	}
	if got, want := credentialStates(body), map[string][2]string{credential.TypeResidentIdentity: {"valid", "有效"}}; len(got) != 1 || got[credential.TypeResidentIdentity] != want[credential.TypeResidentIdentity] {
		t.Errorf("credentials on /me = %v, want %v", got, want)
	}
	for _, want := range []string{"居民身份", "禅城区公安分局", "王", "秀英", "1958-03-14", wang.address, wang.number.String(), rc.did,
		`<dt>公民身份号码 <span class="tag">敏感</span></dt>`, `<dt>民族 <span class="tag">敏感</span></dt>`, `<dt>姓</dt>`} {
		if !strings.Contains(body, want) {
			t.Errorf("/me lacks %q", want)
		}
	}
	if !strings.Contains(body, `<span class="who">王秀英</span>`) {
		t.Error("the header does not name the signed-in resident")
	}

	// The pension bureau issues a social insurance credential to her
	// inbox; her next sign-in collects it.
	_, list, idx := issueSocialInsurance(h, h.caseworker(), url.Values{"id_number": {wang.number.String()}})
	b = watch(signInAgain(h, wang), &shown)
	_, body = b.get("/me")
	got := credentialStates(body)
	if got[credential.TypeSocialInsurance] != [2]string{"valid", "有效"} || got[credential.TypeResidentIdentity] != [2]string{"valid", "有效"} {
		t.Fatalf("after the pension bureau issued one, credentials = %v, want both valid", got)
	}
	if !strings.Contains(body, "禅城区人力资源和社会保障局") || !strings.Contains(body, "参保缴费") {
		t.Error("/me does not show the social insurance credential's issuer and claims")
	}

	// The caseworker revokes it: /me reads the status from the ledger.
	revokePage := "/console/revoke?list=" + strconv.Itoa(int(list)) + "&index=" + strconv.Itoa(int(idx))
	res, _ = h.caseworker().submit(revokePage, "/console/revoke", url.Values{"list": {strconv.Itoa(int(list))}, "index": {strconv.Itoa(int(idx))},
		"action": {"revoke"}, "confirm": {"yes"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoking at the console: %d", res.StatusCode)
	}
	_, body = b.get("/me")
	got = credentialStates(body)
	if got[credential.TypeSocialInsurance] != [2]string{"revoked", "已撤销"} || got[credential.TypeResidentIdentity] != [2]string{"valid", "有效"} {
		t.Errorf("after the revocation, credentials = %v, want social insurance revoked and identity valid", got)
	}
	b.get("/me?lang=en")
	_, body = b.get("/me")
	got = credentialStates(body)
	if got[credential.TypeSocialInsurance] != [2]string{"revoked", "revoked"} || got[credential.TypeResidentIdentity] != [2]string{"valid", "valid"} ||
		!strings.Contains(body, "Social insurance") || !strings.Contains(body, "Chancheng Public Security Bureau") {
		t.Errorf("in English, credentials = %v", got)
	}

	checkNumberShownOnlyToOwner(t, shown, wang.number.String())
	checkLogSaysNothingPersonal(t, h, wang.number.String(), wang.given, wang.family+wang.given, wang.address, wang.passphrase, rc.code, rc.did)
}

// TestResidentApplicationForm walks the application form: verified values
// with their sources, sensitive items apart, and every way of sending it
// wrongly refused with nothing on the ledger.
func TestResidentApplicationForm(t *testing.T) {
	h := newHarness(t)
	var shown []shownPage
	clerk := h.clerk()
	wang := h.newPerson("王", "秀英", "female", 1958, 3, 14)
	b, rc := residentIn(h, clerk, wang, &shown)

	// Every service of the district is listed with its authority, and this
	// node takes applications for all of them.
	res, body := b.get("/me/services")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/me/services: %d", res.StatusCode)
	}
	for _, want := range []string{"养老金申领", "城乡居民医疗保险参保登记", "开立水电账户", "户籍证明开具", "禅城区医疗保障局", "禅城区水务电力公司",
		`name="service" value="` + service.MedicalEnrol + `"`, `name="service" value="` + service.HouseholdCert + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("/me/services lacks %q", want)
		}
	}
	if res, body := b.submit("/me/services", "/me/services/apply", url.Values{"service": {"no_such_service"}}); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "没有这项业务") {
		t.Errorf("applying for a service that does not exist: %d, want 400", res.StatusCode)
	}

	page := startApplication(t, b, service.MedicalEnrol)
	id := strings.TrimPrefix(page, "/me/applications/")
	res, body = b.get(page)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("the application form: %d", res.StatusCode)
	}
	table := formTableRE.FindString(body)
	sensitive := sensitiveSetRE.FindString(body)
	if table == "" || sensitive == "" {
		t.Fatalf("the form has no table of fields or no separate sensitive items:\n%s", body)
	}
	// Verified values with their source, in the table.
	for _, want := range []string{"王", "秀英", "1958-03-14", wang.address, "禅城区公安分局", "已核验"} {
		if !strings.Contains(table, want) {
			t.Errorf("the form's table lacks %q", want)
		}
	}
	// The household number has no verified value: she may type it.
	if !strings.Contains(table, `name="typed_household_number"`) {
		t.Error("the optional household number cannot be typed in")
	}
	// The ID number is sensitive: only in its own fieldset, with its
	// source and a separate box.
	if strings.Contains(table, wang.number.String()) || !strings.Contains(sensitive, "公民身份号码: "+wang.number.String()) ||
		!strings.Contains(sensitive, "(禅城区公安分局)") || !strings.Contains(sensitive, `name="sensitive_ok" value="yes"`) {
		t.Errorf("the ID number is not set apart as a sensitive item with its source:\n%s", sensitive)
	}
	for _, want := range []string{"办理城乡居民基本医疗保险参保登记", "社会保险法》第二十五条", "3660 天", `max="366"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the form does not say %q (purpose, legal basis, retention, longest standing consent)", want)
		}
	}

	// Refusals: each is shown on the form again, and nothing is written.
	height := h.chain.Height()
	for _, c := range []struct {
		name   string
		edit   func(url.Values)
		status int
		want   string
	}{
		{"sensitive items not consented", func(v url.Values) { v.Del("sensitive_ok") }, http.StatusBadRequest, "该业务必须使用上述敏感信息"},
		{"confirmation not ticked", func(v url.Values) { v.Del("agree") }, http.StatusBadRequest, "请勾选确认后再提交"},
		{"no mode", func(v url.Values) { v.Del("mode") }, http.StatusBadRequest, "请选择同意方式"},
		{"a mode the service lacks", func(v url.Values) { v.Set("mode", "forever") }, http.StatusBadRequest, "请选择同意方式"},
		{"zero days", func(v url.Values) { v.Set("days", "0") }, http.StatusBadRequest, "请填写有效的长期同意天数"},
		{"more days than the service allows", func(v url.Values) { v.Set("days", "367") }, http.StatusBadRequest, "请填写有效的长期同意天数"},
		{"days not a number", func(v url.Values) { v.Set("days", "thirty") }, http.StatusBadRequest, "请填写有效的长期同意天数"},
		{"negative days", func(v url.Values) { v.Set("days", "-1") }, http.StatusBadRequest, "请填写有效的长期同意天数"},
		{"typed value too long", func(v url.Values) { v.Set("typed_household_number", strings.Repeat("1", maxTyped+1)) }, http.StatusBadRequest, "自行填写的内容过长"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := medicalApproval()
			c.edit(v)
			res, body := b.submit(page, page, v)
			if res.StatusCode != c.status || !strings.Contains(body, c.want) || !strings.Contains(body, `role="alert"`) {
				t.Errorf("%d, want %d saying %q", res.StatusCode, c.status, c.want)
			}
			if !strings.Contains(body, `action="`+page+`"`) {
				t.Error("the form is not shown again")
			}
		})
	}
	if h.chain.Height() != height {
		t.Errorf("refused answers wrote to the ledger: height %d → %d", height, h.chain.Height())
	}
	if hasPseudonymSecret(t, h, wang) {
		t.Error("a refused answer made the wallet's pseudonym secret, so a pseudonym could have been used")
	}
	if a, err := h.desk.Get(id); err != nil || a.Status != service.StatusOpen {
		t.Fatalf("after the refusals the application is %+v, %v; want it still open", a, err)
	}
	// In English, the refusal reads in English.
	b.get(page + "?lang=en")
	v := medicalApproval()
	v.Del("sensitive_ok")
	if res, body := b.submit(page, page, v); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "The service needs the sensitive items above") {
		t.Errorf("English refusal: %d", res.StatusCode)
	}
	b.get(page + "?lang=zh")

	// Approved properly, it is received: the consent is on the ledger
	// under her pseudonym towards the authority, for exactly the items.
	res, body = b.submit(page, page, medicalApproval())
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "申请已提交") {
		t.Fatalf("approving: %d\n%s", res.StatusCode, body)
	}
	a, err := h.desk.Get(id)
	if err != nil || a.Status != service.StatusReceived || a.Guardian {
		t.Fatalf("the application is %+v, %v; want received, not by a guardian", a, err)
	}
	psn := pseudonymTowards(t, h, wang, hsbID)
	c, _, err := h.app.Consent(psn, service.MedicalEnrol, 0)
	if err != nil || a.Subject != psn || c.ID != a.Consent || c.Mode != tx.ModeStanding || c.Status != ledger.ConsentActive || c.ByGuardian != "" ||
		len(c.Sensitive) != 1 || c.Sensitive[0].Claim != "resident_id_number" {
		t.Fatalf("consent of her pseudonym = %+v, %v; want the application's standing consent with the ID number as its one sensitive item", c, err)
	}
	if !strings.Contains(body, c.ID) {
		t.Error("the result does not show the consent's id")
	}

	// Answering it again with a fresh token is refused; so is the very
	// same form sent twice.
	height = h.chain.Height()
	again := medicalApproval()
	again.Set("csrf", b.anyToken("/me"))
	if res, body := b.post(page, again); res.StatusCode != http.StatusConflict || !strings.Contains(body, "该申请已经处理完毕") {
		t.Errorf("answering a received application again: %d, want 409 err.application_done", res.StatusCode)
	}
	if res, body := b.post(page, again); res.StatusCode != http.StatusConflict || !strings.Contains(body, "该表单已经提交过一次") {
		t.Errorf("replaying the same form: %d, want 409 err.replayed", res.StatusCode)
	}
	decline := url.Values{"action": {"decline"}, "csrf": {b.anyToken("/me")}}
	if res, _ := b.post(page, decline); res.StatusCode != http.StatusConflict {
		t.Errorf("declining a received application: %d, want 409", res.StatusCode)
	}
	if got, _ := h.desk.Get(id); got == nil || got.Status != service.StatusReceived || h.chain.Height() != height {
		t.Error("answering again changed the application or the ledger")
	}
	// Its page now shows the result, and no form.
	if _, body := b.get(page); !strings.Contains(body, "申请已提交") || strings.Contains(body, `action="`+page+`"`) {
		t.Error("the received application's page does not show its result alone")
	}

	// Declining an open one forgets it: the desk keeps nothing, and an
	// answer after that finds no application.
	page2 := startApplication(t, b, service.MedicalEnrol)
	id2 := strings.TrimPrefix(page2, "/me/applications/")
	res, _ = b.submit(page2, page2, url.Values{"action": {"decline"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/me/services" {
		t.Fatalf("declining: %d to %q, want 303 to the services", res.StatusCode, res.Header.Get("Location"))
	}
	if _, body := b.get("/me/services"); !strings.Contains(body, "已拒绝该申请，未提供任何信息") {
		t.Error("no word that the application was declined")
	}
	if _, err := h.desk.Get(id2); !errors.Is(err, service.ErrNoApplication) {
		t.Errorf("the declined application is still kept: %v", err)
	}
	answer := medicalApproval()
	answer.Set("csrf", b.anyToken("/me"))
	if res, body := b.post(page2, answer); res.StatusCode != http.StatusNotFound || !strings.Contains(body, "找不到该申请") {
		t.Errorf("answering a declined application: %d, want 404 err.no_application", res.StatusCode)
	}
	if h.chain.Height() != height {
		t.Error("declining wrote to the ledger")
	}

	// A service that needs a credential she does not hold: the form names
	// what is missing, approving is not offered, and is refused if sent.
	page3 := startApplication(t, b, service.HouseholdCert)
	res, body = b.get(page3)
	m := missingListRE.FindStringSubmatch(body)
	if res.StatusCode != http.StatusOK || m == nil || !strings.Contains(m[1], "<li>户号</li>") || !strings.Contains(m[1], "<li>户籍地址</li>") ||
		!strings.Contains(body, "您的钱包缺少以下已核验信息") {
		t.Fatalf("the form does not list the missing household items:\n%s", body)
	}
	if !regexp.MustCompile(`name="action" value="approve" disabled`).MatchString(body) {
		t.Error("approving is offered though items are missing")
	}
	res, body = b.submit(page3, page3, url.Values{"action": {"approve"}, "mode": {tx.ModeOneTime}, "sensitive_ok": {"yes"}, "agree": {"yes"}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "您的钱包缺少以下已核验信息") || h.chain.Height() != height {
		t.Errorf("approving with items missing: %d, height %d → %d; want 409 and nothing written", res.StatusCode, height, h.chain.Height())
	}

	// An application id that is not one.
	if res, body := b.get("/me/applications/not-an-application"); res.StatusCode != http.StatusNotFound || !strings.Contains(body, "找不到该申请") {
		t.Errorf("an unknown application: %d, want 404", res.StatusCode)
	}

	checkNumberShownOnlyToOwner(t, shown, wang.number.String())
	checkLogSaysNothingPersonal(t, h, wang.number.String(), wang.given, wang.family+wang.given, wang.address, wang.passphrase, rc.code, rc.did)
}

// TestResidentConsentsAndDataLog: a consent is listed and withdrawn in one
// click, the withdrawal stands on the ledger, and the data log shows the
// reads it allowed and the one it then denied, in either language.
func TestResidentConsentsAndDataLog(t *testing.T) {
	h := newHarness(t)
	var shown []shownPage
	clerk := h.clerk()
	li := h.newPerson("李", "建国", "male", 1960, 1, 2)
	_, rc := residentIn(h, clerk, li, &shown)
	cw := h.caseworker()
	issueSocialInsurance(h, cw, url.Values{"id_number": {li.number.String()}})
	b := watch(signInAgain(h, li), &shown)

	if _, body := b.get("/me/consents"); !strings.Contains(body, "您还没有给出任何授权") {
		t.Error("the consents page of a new resident does not say there are none")
	}
	if _, body := b.get("/me/log"); !strings.Contains(body, "还没有任何读取记录") {
		t.Error("the data log of a new resident does not say there is nothing")
	}

	// She applies for the pension with a standing consent; the caseworker
	// checks her address with the public security bureau under it.
	appID := applyForPension(h, b.browserless)
	casePage := "/console/applications/" + appID
	if res, _ := cw.submit(casePage, casePage+"/read", url.Values{"source": {psbID}}); res.StatusCode != http.StatusOK {
		t.Fatalf("back-office read: %d", res.StatusCode)
	}
	psn := pseudonymTowards(t, h, li, hrssID)

	_, body := b.get("/me/consents")
	for _, want := range []string{"养老金申领", "禅城区人力资源和社会保障局", `<span class="tag active">有效</span>`, `name="service" value="` + service.Pension + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the consents page lacks %q", want)
		}
	}

	// Withdraw it.
	res, _ := b.submit("/me/consents", "/me/consents/revoke", url.Values{"service": {service.Pension}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/me/consents" {
		t.Fatalf("withdrawing: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	c, _, err := h.app.Consent(psn, service.Pension, 0)
	if err != nil || c.Status != ledger.ConsentRevoked || c.Ended.Height == 0 || c.EndedByGuardian != "" {
		t.Fatalf("the consent on the ledger = %+v, %v; want revoked by her", c, err)
	}
	_, body = b.get("/me/consents")
	if !strings.Contains(body, "已撤回授权") || !strings.Contains(body, `<span class="tag revoked">已撤回</span>`) ||
		strings.Contains(body, `action="/me/consents/revoke"`) {
		t.Errorf("after withdrawing, the consents page does not say so, or still offers it:\n%s", body)
	}
	// Withdrawing again, or a service with no consent, is refused with
	// nothing written; so is a service that does not exist.
	height := h.chain.Height()
	for _, c := range []struct {
		svc    string
		status int
		want   string
	}{
		{service.Pension, http.StatusConflict, "您对该业务没有可撤回的有效授权"},
		{service.UtilityAccount, http.StatusConflict, "您对该业务没有可撤回的有效授权"},
		{"no_such_service", http.StatusBadRequest, "没有这项业务"},
	} {
		if res, body := b.post("/me/consents/revoke", url.Values{"csrf": {b.anyToken("/me/consents")}, "service": {c.svc}}); res.StatusCode != c.status || !strings.Contains(body, c.want) {
			t.Errorf("withdrawing %s: %d, want %d saying %q", c.svc, res.StatusCode, c.status, c.want)
		}
	}
	if h.chain.Height() != height {
		t.Error("a refused withdrawal wrote to the ledger")
	}

	// The caseworker's next read is denied and recorded.
	if res, _ := cw.submit(casePage, casePage+"/read", url.Values{"source": {psbID}}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("back-office read after the withdrawal: %d, want 403", res.StatusCode)
	}

	// The data log: her own presentation and the back-office read
	// allowed, the last read denied with its reason, newest first.
	_, body = b.get("/me/log")
	entries := regexp.MustCompile(`(?s)<li class="(allowed|denied)">.*?</li>`).FindAllStringSubmatch(body, -1)
	var kinds []string
	for _, e := range entries {
		kinds = append(kinds, e[1])
	}
	if strings.Join(kinds, " ") != "denied allowed allowed" {
		t.Fatalf("the data log's entries are %v, want the denied read first, then two allowed", kinds)
	}
	denied, read, presented := entries[0][0], entries[1][0], entries[2][0]
	for _, c := range []struct {
		name, entry string
		want        []string
	}{
		{"denied read", denied, []string{"已拒绝", "禅城区人力资源和社会保障局", "禅城区公安分局", "养老金申领", "机构间后台调取", "拒绝原因", "居民已撤回同意"}},
		{"allowed read", read, []string{"已允许", "禅城区人力资源和社会保障局", "禅城区公安分局", "养老金申领", "机构间后台调取", "户籍地址"}},
		{"presentation", presented, []string{"已允许", "禅城区人力资源和社会保障局", "养老金申领", "您本人出示", "社会保障号码"}},
	} {
		for _, want := range c.want {
			if !strings.Contains(c.entry, want) {
				t.Errorf("the %s in the log lacks %q:\n%s", c.name, want, c.entry)
			}
		}
	}
	if strings.Contains(read, "拒绝原因") || strings.Contains(body, "监护人代办") {
		t.Error("an allowed read shows a refusal reason, or an entry claims a guardian")
	}
	logged, _, err := h.app.AccessLog(psn, 0)
	if err != nil || len(logged) != 3 {
		t.Errorf("the ledger holds %d access records of her pseudonym (%v), want the 3 the log shows", len(logged), err)
	}

	// The English switch.
	if res, _ := b.get("/me/log?lang=en"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/me/log" {
		t.Errorf("?lang=en: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	_, body = b.get("/me/log")
	for _, want := range []string{`lang="en"`, "Every read of your data", "allowed", "denied", "Chancheng Human Resources and Social Security Bureau",
		"Pension application", "Back-office request between authorities", "You presented it", "the resident withdrew the consent", "Why refused"} {
		if !strings.Contains(body, want) {
			t.Errorf("the English data log lacks %q", want)
		}
	}
	for _, zh := range []string{"已拒绝", "养老金申领", "禅城区人力资源和社会保障局", "居民已撤回同意"} {
		if strings.Contains(body, zh) {
			t.Errorf("the English data log still says %q", zh)
		}
	}

	checkNumberShownOnlyToOwner(t, shown, li.number.String())
	checkLogSaysNothingPersonal(t, h, li.number.String(), li.given, li.family+li.given, li.address, li.passphrase, rc.code, rc.did,
		"440604195803140021", "6222 0000")
}

// TestApplicationsAreBearerByID documents what an application id gives:
// it is random and names nobody, and the portal does not tie it to the
// resident who opened it. Another resident who has the id sees the form
// filled from their own wallet, never the first resident's data, and may
// answer it, which closes it for the first. Nothing of one resident
// reaches the other.
func TestApplicationsAreBearerByID(t *testing.T) {
	h := newHarness(t)
	var shown []shownPage
	clerk := h.clerk()
	wang := h.newPerson("王", "秀英", "female", 1958, 3, 14)
	zhou := h.newPerson("周", "明", "male", 1962, 7, 8)
	a, _ := residentIn(h, clerk, wang, &shown)
	b, _ := residentIn(h, clerk, zhou, &shown)

	page := startApplication(t, a, service.MedicalEnrol)
	if len(strings.TrimPrefix(page, "/me/applications/")) < 22 {
		t.Errorf("the application id %q is short enough to guess", page)
	}
	res, body := b.get(page)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "周") || !strings.Contains(body, zhou.address) {
		t.Fatalf("another resident opening the id: %d; want the form filled from their own wallet", res.StatusCode)
	}
	for _, s := range []string{"秀英", wang.address, wang.number.String()} {
		if strings.Contains(body, s) {
			t.Errorf("another resident's view of the application shows %q", s)
		}
	}
	// Nobody signed in gets nothing.
	if res, _ := h.browser().get(page); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/signin" {
		t.Errorf("the application without a session: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}

	// The other resident's answer takes the application: it is theirs now,
	// and the first resident's answer is refused.
	if res, _ := b.submit(page, page, medicalApproval()); res.StatusCode != http.StatusOK {
		t.Fatalf("another resident answering: %d", res.StatusCode)
	}
	app, _ := h.desk.Get(strings.TrimPrefix(page, "/me/applications/"))
	if app == nil || app.Subject != pseudonymTowards(t, h, zhou, hsbID) {
		t.Fatal("the application was not received under the answering resident's pseudonym")
	}
	for _, v := range app.Values {
		if v.Value == wang.given || v.Value == wang.number.String() {
			t.Errorf("the received application holds the opener's %s", v.Name)
		}
	}
	res, body = a.post(page, func() url.Values { v := medicalApproval(); v.Set("csrf", a.anyToken("/me")); return v }())
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "该申请已经处理完毕") {
		t.Errorf("the opener answering after another resident did: %d, want 409", res.StatusCode)
	}
	if hasPseudonymSecret(t, h, wang) {
		t.Error("the opener's wallet was used")
	}
	checkNumberShownOnlyToOwner(t, shown, wang.number.String())
	checkNumberShownOnlyToOwner(t, shown, zhou.number.String())
}
