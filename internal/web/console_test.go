package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/tx"
)

// The console's tests run the caseworker's pages against the harness's
// node: a real ledger, the node's API and its desk.

// consoleTestLane is the lane the tests sign their own transactions on, so
// they never take a sequence number the pages expect.
const consoleTestLane uint32 = 250

var (
	appLinkRE    = regexp.MustCompile(`href="/console/applications/([A-Za-z0-9_-]+)"`)
	statusListRE = regexp.MustCompile(`<dt>状态列表编号</dt><dd>([0-9]+)</dd>`)
	statusIdxRE  = regexp.MustCompile(`<dt>状态序号</dt><dd>([0-9]+)</dd>`)
	downloadRE   = regexp.MustCompile(`name="credential" value="([A-Za-z0-9_-]+)"`)
)

// caseworker is a browser signed in as the social insurance bureau's
// caseworker.
func (h *harness) caseworker() *browserless { return h.staff(caseworkerAccount, caseworkerPass) }

// consoleResident registers p at the counter and signs them in to their
// hosted wallet.
func consoleResident(h *harness, clerk *browserless, p *person) (*browserless, *receipt) {
	h.t.Helper()
	rc := h.register(clerk, p)
	b := h.browser()
	res, body := b.submit("/signin", "/signin", url.Values{"id_number": {p.number.String()}, "passphrase": {p.passphrase}, "activation": {rc.code}})
	if res.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("resident sign-in: %d\n%s", res.StatusCode, body)
	}
	return b, rc
}

// signInAgain signs a resident in once more, which collects their inbox.
func signInAgain(h *harness, p *person) *browserless {
	h.t.Helper()
	b := h.browser()
	res, body := b.submit("/signin", "/signin", url.Values{"id_number": {p.number.String()}, "passphrase": {p.passphrase}})
	if res.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("resident sign-in: %d\n%s", res.StatusCode, body)
	}
	return b
}

// issueSocialInsurance has the caseworker issue a social insurance
// credential, naming the resident by ID number or DID, and returns the
// result page with its status list and index.
func issueSocialInsurance(h *harness, cw *browserless, resident url.Values) (string, uint32, uint32) {
	h.t.Helper()
	form := url.Values{"type": {credential.TypeSocialInsurance}, "claim_insurance_number": {"440604195803140021"},
		"claim_pension_status": {"参保缴费"}, "claim_contribution_years": {"32"}, "days": {"366"}, "keep": {"yes"}}
	for k, v := range resident {
		form[k] = v
	}
	res, body := cw.submit("/console/issue?type="+credential.TypeSocialInsurance, "/console/issue", form)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "证照已签发") {
		h.t.Fatalf("issuing: %d\n%s", res.StatusCode, body)
	}
	l, i := statusListRE.FindStringSubmatch(body), statusIdxRE.FindStringSubmatch(body)
	if l == nil || i == nil {
		h.t.Fatalf("the result shows no status list and index:\n%s", body)
	}
	list, _ := strconv.ParseUint(l[1], 10, 32)
	idx, _ := strconv.ParseUint(i[1], 10, 32)
	return body, uint32(list), uint32(idx)
}

// applyForPension has a signed-in resident apply for the pension with a
// standing consent and returns the application id.
func applyForPension(h *harness, resident *browserless) string {
	h.t.Helper()
	res, _ := resident.submit("/me/services", "/me/services/apply", url.Values{"service": {service.Pension}})
	to := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(to, "/me/applications/") {
		h.t.Fatalf("opening an application: %d to %q", res.StatusCode, to)
	}
	res, body := resident.submit(to, to, url.Values{"action": {"approve"}, "mode": {tx.ModeStanding}, "days": {"30"},
		"sensitive_ok": {"yes"}, "share_contribution_years": {"yes"}, "typed_bank_account": {"6222 0000 1111 2222"}, "agree": {"yes"}})
	if res.StatusCode != http.StatusOK {
		h.t.Fatalf("applying: %d\n%s", res.StatusCode, body)
	}
	return strings.TrimPrefix(to, "/me/applications/")
}

func TestConsoleCaseworkerJourney(t *testing.T) {
	h := newHarness(t)
	clerk := h.clerk()
	wang := h.newPerson("王", "秀英", "female", 1958, 3, 14)
	_, rc := consoleResident(h, clerk, wang)
	cw := h.caseworker()

	// Issue by ID number: the resident has a hosted wallet here, so the
	// credential goes to its inbox and nothing is offered for download.
	body, list, idx := issueSocialInsurance(h, cw, url.Values{"id_number": {wang.number.String()}})
	if !strings.Contains(body, "收件箱") || strings.Contains(body, `action="/console/issue/download"`) {
		t.Errorf("the result does not say the credential went to the inbox, or offers a download:\n%s", body)
	}
	if e, _, err := h.app.Status(hrssID, list, idx, 0); err != nil || e.Type != credential.TypeSocialInsurance || e.Status != ledger.StatusValid {
		t.Fatalf("status entry %d/%d: %+v, %v", list, idx, e, err)
	}
	resident := signInAgain(h, wang)
	if _, body := resident.get("/me"); !strings.Contains(body, "社会保险") || !strings.Contains(body, "参保缴费") {
		t.Fatalf("after sign-in the wallet lacks the delivered credential:\n%s", body)
	}

	// The resident applies; the caseworker sees the application, its
	// verified values with their sources and the standing consent.
	appID := applyForPension(h, resident)
	_, body = cw.get("/console")
	if m := appLinkRE.FindStringSubmatch(body); m == nil || m[1] != appID || !strings.Contains(body, "养老金申领") || !strings.Contains(body, "长期") {
		t.Fatalf("the console does not list the application %s as a standing consent:\n%s", appID, body)
	}
	page := "/console/applications/" + appID
	res, body := cw.get(page)
	a, _ := h.desk.Get(appID)
	c, _, err := h.app.Consent(a.Subject, service.Pension, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"王", "秀英", "32", "禅城区公安分局", "禅城区人力资源和社会保障局", "居民自填，未经核验", "6222 0000 1111 2222", c.ID, "有效", `name="source" value="cc-psb"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the application page lacks %q", want)
		}
	}
	if res.StatusCode != http.StatusOK || t.Failed() {
		t.Fatalf("application page: %d\n%s", res.StatusCode, body)
	}
	if strings.Contains(body, `name="source" value="cc-hrss"`) {
		t.Error("the page offers to read from the caseworker's own authority")
	}

	// A back-office read under the standing consent is answered.
	res, body = cw.submit(page, page+"/read", url.Values{"source": {psbID}})
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "数据来源机构已提供以下信息") || !strings.Contains(body, wang.address) {
		t.Fatalf("back-office read: %d\n%s", res.StatusCode, body)
	}

	// The resident withdraws the consent; the next read is denied, in the
	// ledger's words, and the denial stands in the resident's log.
	res, _ = resident.submit("/me/consents", "/me/consents/revoke", url.Values{"service": {service.Pension}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("withdrawing the consent: %d", res.StatusCode)
	}
	res, body = cw.submit(page, page+"/read", url.Values{"source": {psbID}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "居民已撤回同意") || !strings.Contains(body, "已记录在区块链上") || strings.Contains(body, "数据来源机构已提供以下信息") {
		t.Fatalf("read after withdrawal: %d, want 403 in the ledger's words\n%s", res.StatusCode, body)
	}
	cw.get("/?lang=en")
	if res, body = cw.submit(page, page+"/read", url.Values{"source": {psbID}}); !strings.Contains(body, "the resident withdrew the consent") {
		t.Errorf("in English the denial reads otherwise: %d\n%s", res.StatusCode, body)
	}
	cw.get("/?lang=zh")
	log, _, err := h.app.AccessLog(a.Subject, 0)
	if err != nil {
		t.Fatal(err)
	}
	var allowed, denied int
	for _, r := range log {
		if r.Channel != tx.ChannelBackOffice || r.Reader != hrssID || r.Source != psbID {
			continue
		}
		switch {
		case r.Outcome == tx.OutcomeAllowed:
			allowed++
		case r.Reason == ledger.DenyRevoked:
			denied++
		}
	}
	if allowed != 1 || denied != 2 {
		t.Errorf("the resident's access log has %d allowed and %d denied back-office reads, want 1 and 2", allowed, denied)
	}
	if _, body := resident.get("/me/log"); !strings.Contains(body, "居民已撤回同意") {
		t.Error("the resident's data log does not show the denied read")
	}

	// The access page lists both, newest first.
	_, body = cw.get("/console/access")
	for _, want := range []string{"已允许", "已拒绝", "居民已撤回同意", "机构间后台调取", "居民本人出示", a.Subject[:16]} {
		if !strings.Contains(body, want) {
			t.Errorf("the access page lacks %q", want)
		}
	}
	if strings.Index(body, "已拒绝") > strings.Index(body, "已允许") {
		t.Error("the access page does not show the newest record first")
	}

	// Revoke by status list and index; un-revoking is refused in the
	// ledger's words.
	ref := url.Values{"list": {strconv.Itoa(int(list))}, "index": {strconv.Itoa(int(idx))}}
	revokePage := "/console/revoke?list=" + ref.Get("list") + "&index=" + ref.Get("index")
	for _, step := range []struct {
		action string
		want   byte
	}{{"suspend", ledger.StatusSuspended}, {"unsuspend", ledger.StatusValid}} {
		res, _ = cw.submit(revokePage, "/console/revoke", url.Values{"list": ref["list"], "index": ref["index"], "action": {step.action}})
		if e, _, err := h.app.Status(hrssID, list, idx, 0); res.StatusCode != http.StatusSeeOther || err != nil || e.Status != step.want {
			t.Fatalf("%s: %d, entry %+v, %v", step.action, res.StatusCode, e, err)
		}
	}
	res, body = cw.submit(revokePage, "/console/revoke", url.Values{"list": ref["list"], "index": ref["index"], "action": {"revoke"}})
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "撤销前请勾选确认") {
		t.Errorf("revoking without the confirmation: %d, want 400", res.StatusCode)
	}
	res, _ = cw.submit(revokePage, "/console/revoke", url.Values{"list": ref["list"], "index": ref["index"], "action": {"revoke"}, "confirm": {"yes"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != revokePage {
		t.Fatalf("revoking: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if e, _, err := h.app.Status(hrssID, list, idx, 0); err != nil || e.Status != ledger.StatusInvalid {
		t.Fatalf("after revoking, the entry is %+v, %v", e, err)
	}
	if _, body = cw.get(revokePage); !strings.Contains(body, "证照已撤销") || !strings.Contains(body, `id="entry-state">已撤销`) {
		t.Errorf("the revoke page does not show the revocation:\n%s", body)
	}
	res, body = cw.submit(revokePage, "/console/revoke", url.Values{"list": ref["list"], "index": ref["index"], "action": {"unsuspend"}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, ledger.CodeStatusFinal.MessageZH()) {
		t.Errorf("un-revoking: %d, want 409 in the ledger's words\n%s", res.StatusCode, body)
	}
	if _, body := resident.get("/me"); !strings.Contains(body, "已撤销") {
		t.Error("the resident does not see the credential as revoked")
	}

	// Nothing personal reached the log.
	logged := h.log.String()
	for _, secret := range []string{wang.number.String(), wang.given, wang.address, "440604195803140021", "6222 0000", rc.code} {
		if strings.Contains(logged, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

func TestConsoleIsScopedToTheCaseworkersAuthority(t *testing.T) {
	h := newHarness(t)
	clerk := h.clerk()
	li := h.newPerson("李", "建国", "male", 1960, 1, 2)
	consoleResident(h, clerk, li)
	issueSocialInsurance(h, h.caseworker(), url.Values{"id_number": {li.number.String()}})
	appID := applyForPension(h, signInAgain(h, li))

	// The clerk is the public security bureau's, with a console account:
	// the pension bureau's application is not theirs to see.
	res, body := clerk.get("/console")
	if res.StatusCode != http.StatusOK || strings.Contains(body, appID) {
		t.Errorf("another authority's console lists the application: %d", res.StatusCode)
	}
	if res, _ := clerk.get("/console/applications/" + appID); res.StatusCode != http.StatusNotFound {
		t.Errorf("another authority opens the application: %d, want 404", res.StatusCode)
	}
	tok := formToken(t, body, "/staff/signout")
	if res, _ := clerk.post("/console/applications/"+appID+"/read", url.Values{"csrf": {tok}, "source": {hrssID}}); res.StatusCode != http.StatusNotFound {
		t.Errorf("another authority reads under the consent: %d, want 404", res.StatusCode)
	}
	if _, body := clerk.get("/console/services"); strings.Contains(body, service.Pension) || !strings.Contains(body, service.HouseholdCert) {
		t.Error("the services page does not show exactly the clerk's authority's services")
	}

	// A counter-only account is refused every console page.
	counterOnly, err := NewStaffAccount("counteronly", psbID, []string{RoleCounter}, "only the counter passphrase")
	if err != nil {
		t.Fatal(err)
	}
	h.portal.cfg.Staff = append(h.portal.cfg.Staff, counterOnly)
	b := h.staff("counteronly", "only the counter passphrase")
	for _, page := range []string{"/console", "/console/applications/" + appID, "/console/issue", "/console/revoke", "/console/access", "/console/services"} {
		if res, body := b.get(page); res.StatusCode != http.StatusForbidden || !strings.Contains(body, "无权") {
			t.Errorf("a counter-only account at %s: %d, want 403", page, res.StatusCode)
		}
	}
	_, body = b.get("/counter")
	tok = formToken(t, body, "/staff/signout")
	if res, _ := b.post("/console/revoke", url.Values{"csrf": {tok}, "list": {"0"}, "index": {"1"}, "action": {"revoke"}, "confirm": {"yes"}}); res.StatusCode != http.StatusForbidden {
		t.Errorf("a counter-only account revoking: %d, want 403", res.StatusCode)
	}

	// Nobody signed in is sent to the staff sign-in.
	if res, _ := h.browser().get("/console/access"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/staff/signin" {
		t.Errorf("the console without a session: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
}

// registerElsewhere anchors a resident on the ledger without a hosted
// wallet here, as a registrar's other office would, and returns the DID.
func registerElsewhere(h *harness, n idnumber.Number) string {
	h.t.Helper()
	k, rk, err := newResidentKeys()
	if err != nil {
		h.t.Fatal(err)
	}
	d := did.FromKey(k.Public()).String()
	if _, err := h.portal.sign(context.Background(), psbID, consoleTestLane, &tx.RegisterResident{DID: d, Key: k.Public(),
		RecoveryHash: key.RecoveryHash(rk.Public()), UniquenessTag: idnumber.UniquenessTag(h.uniq, n), Assurance: counterAssurance}); err != nil {
		h.t.Fatal(err)
	}
	return d
}

func TestConsoleOffersTheCredentialFileWithoutAHostedWallet(t *testing.T) {
	h := newHarness(t)
	d := registerElsewhere(h, h.number(1970, 5, 6, "male"))
	cw := h.caseworker()

	// An ID number with no hosted wallet here cannot name anyone.
	res, body := cw.submit("/console/issue", "/console/issue", url.Values{"type": {credential.TypeSocialInsurance},
		"id_number": {h.number(1971, 1, 1, "female").String()}, "claim_insurance_number": {"1"}, "claim_pension_status": {"x"},
		"claim_contribution_years": {"3"}, "days": {"30"}})
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body, "没有该身份证号码的托管钱包") {
		t.Errorf("an ID number without a hosted wallet: %d", res.StatusCode)
	}
	// Typed-in numbers must be digits, and every claim is needed.
	res, body = cw.submit("/console/issue", "/console/issue", url.Values{"type": {credential.TypeSocialInsurance}, "did": {d},
		"claim_insurance_number": {"1"}, "claim_contribution_years": {"thirty"}, "days": {"30"}})
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "养老保险状态") {
		t.Errorf("a missing claim: %d, want 400 naming it", res.StatusCode)
	}
	res, body = cw.submit("/console/issue", "/console/issue", url.Values{"type": {credential.TypeSocialInsurance}, "did": {d},
		"claim_insurance_number": {"1"}, "claim_pension_status": {"x"}, "claim_contribution_years": {"thirty"}, "days": {"30"}})
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "缴费年限") {
		t.Errorf("a number that is not digits: %d, want 400 naming it", res.StatusCode)
	}

	body, list, idx := issueSocialInsurance(h, cw, url.Values{"did": {d}})
	m := downloadRE.FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, "没有托管钱包") {
		t.Fatalf("no download is offered for a resident without a hosted wallet:\n%s", body)
	}
	tok := formToken(t, body, "/console/issue/download")
	res, file := cw.post("/console/issue/download", url.Values{"csrf": {tok}, "credential": {m[1]}})
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Disposition"), "attachment") ||
		res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("download: %d, %q, %q", res.StatusCode, res.Header.Get("Content-Disposition"), res.Header.Get("Cache-Control"))
	}
	var is credential.Issued
	if err := json.Unmarshal([]byte(file), &is); err != nil || is.SDJWT == "" || is.Issuer != hrssID || is.StatusIdx != idx || !strings.HasSuffix(is.StatusURI, "/"+strconv.Itoa(int(list))) {
		t.Fatalf("the file is not the issued credential: %v\n%s", err, file)
	}
	// The kept record answers back-office reads: it is in the desk's register.
	if !strings.Contains(body, "已保存为本机构的登记记录") {
		t.Error("the register record was not kept")
	}
	// The sealed file opens in this session only.
	other := h.caseworker()
	_, page := other.get("/console/issue")
	if res, _ := other.post("/console/issue/download", url.Values{"csrf": {formToken(t, page, "/staff/signout")}, "credential": {m[1]}}); res.StatusCode != http.StatusGone {
		t.Errorf("another session downloads the file: %d, want 410", res.StatusCode)
	}
	if strings.Contains(h.log.String(), is.SDJWT[:40]) {
		t.Error("the credential reached the log")
	}
}

func TestConsolePublishesANewServiceVersion(t *testing.T) {
	h := newHarness(t)
	cw := h.caseworker()
	_, body := cw.get("/console/services")
	if !strings.Contains(body, "养老金申领") || strings.Contains(body, service.MedicalEnrol) {
		t.Fatalf("the services page does not show exactly the pension bureau's services:\n%s", body)
	}
	old, _, err := h.app.Service(service.Pension, 0)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"service": {service.Pension}, "purpose_zh": {old.PurposeZH}, "purpose_en": {old.PurposeEN},
		"retention_days": {strconv.Itoa(int(old.RetentionDays))}, "max_standing_days": {strconv.Itoa(int(old.MaxStandingDays))}, "confirm": {"yes"}}
	if res, body := cw.submit("/console/services", "/console/services", form); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "没有任何修改") {
		t.Errorf("publishing nothing new: %d, want 400", res.StatusCode)
	}
	form.Set("retention_days", "0")
	form.Set("purpose_en", "To decide pension entitlement\r\nand to pay it monthly")
	if res, _ := cw.submit("/console/services", "/console/services", form); res.StatusCode != http.StatusBadRequest {
		t.Errorf("zero days of retention: %d, want 400", res.StatusCode)
	}
	form.Set("retention_days", "4000")
	form.Del("confirm")
	if res, _ := cw.submit("/console/services", "/console/services", form); res.StatusCode != http.StatusBadRequest {
		t.Errorf("publishing without the confirmation: %d, want 400", res.StatusCode)
	}
	form.Set("confirm", "yes")
	if res, body := cw.submit("/console/services", "/console/services", form); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("publishing: %d\n%s", res.StatusCode, body)
	}
	s, _, err := h.app.Service(service.Pension, 0)
	if err != nil || s.Version != old.Version+1 || s.RetentionDays != 4000 || s.PurposeEN != "To decide pension entitlement and to pay it monthly" ||
		!slices.Equal(s.Required, old.Required) || len(s.Form) != len(old.Form) {
		t.Fatalf("after publishing: %+v, %v", s, err)
	}
	if _, body := cw.get("/console/services"); !strings.Contains(body, "新版本已发布") || !strings.Contains(body, "4000") {
		t.Error("the services page does not show the new version")
	}
	// Another authority's service cannot be changed from here.
	form.Set("service", service.MedicalEnrol)
	if res, _ := cw.submit("/console/services", "/console/services", form); res.StatusCode != http.StatusNotFound {
		t.Errorf("changing another authority's service: %d, want 404", res.StatusCode)
	}
}

// TestConsoleAccessPagesNewestFirst pages through an authority's access
// records, one block holding more records than a page, and checks every
// record is shown once, newest first.
func TestConsoleAccessPagesNewestFirst(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	subject := func(i int) string {
		k, err := pseudonym.Derive([]byte(strings.Repeat("s", 32)), strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		return pseudonym.FromKey(k.Public()).String()
	}
	record := func(n int) {
		var rs []tx.AccessRecord
		for i := 0; i < n; i++ {
			id := make([]byte, 16)
			copy(id, strconv.Itoa(int(h.chain.Height()))+"-"+strconv.Itoa(i))
			rs = append(rs, tx.AccessRecord{ID: id, Subject: subject(i), Reader: hrssID, Source: psbID, Service: service.Pension,
				Claims: []tx.ClaimRef{{Type: credential.TypeResidentIdentity, Claim: "family_name"}}, Channel: tx.ChannelBackOffice,
				Outcome: tx.OutcomeDenied, Reason: ledger.DenyNoConsent})
		}
		if _, err := h.portal.sign(ctx, psbID, consoleTestLane, &tx.RecordAccess{Records: rs}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{1, 2, 5, 1, 3, 1} {
		record(n)
	}
	all, _, err := h.app.AuthorityAccess(hrssID, 0, 1000, 0)
	if err != nil || len(all) != 13 {
		t.Fatalf("%d records, %v", len(all), err)
	}
	key := func(a ledger.Access) string { return a.Subject + string(a.ID) }
	for _, n := range []int{1, 2, 3, 4, 50} {
		var got []ledger.Access
		before, after := int64(0), ""
		for pages := 0; pages < 20; pages++ {
			var rows []ledger.Access
			var older int64
			var more string
			if after != "" {
				rows, older, more, err = h.portal.accessBlock(hrssID, after, n)
			} else {
				rows, older, more, err = h.portal.accessPage(hrssID, before, n)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) > n && more == "" && after == "" {
				// Only a page of one block may run over, and then it
				// follows the cursor.
				t.Errorf("page size %d: a page of %d records", n, len(rows))
			}
			got = append(got, rows...)
			switch {
			case more != "":
				after = more
			case older != 0:
				before, after = older, ""
			default:
				pages = 20
			}
		}
		if len(got) != len(all) {
			t.Errorf("page size %d: %d records shown, want %d", n, len(got), len(all))
			continue
		}
		seen := map[string]bool{}
		for i, a := range got {
			if seen[key(a)] {
				t.Errorf("page size %d: a record shown twice", n)
			}
			seen[key(a)] = true
			if i > 0 && a.At.Height > got[i-1].At.Height {
				t.Errorf("page size %d: record %d is newer than the one before it", n, i)
			}
		}
	}

	// The page itself: the newest block first, and a link on.
	cw := h.caseworker()
	res, body := cw.get("/console/access")
	if res.StatusCode != http.StatusOK || strings.Count(body, "<tr>") != 14 {
		t.Errorf("access page: %d with %d rows, want 13 records and the header", res.StatusCode, strings.Count(body, "<tr>")-1)
	}
	if res, _ := cw.get("/console/access?after=" + url.QueryEscape("zz")); res.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad cursor: %d, want 400", res.StatusCode)
	}
}

// TestConsoleTexts checks the keys the console's templates build with
// printf, which the catalogue test cannot find.
func TestConsoleTexts(t *testing.T) {
	for _, k := range []string{"console.channel_presentation", "console.channel_back_office"} {
		if v, ok := catalogue[k]; !ok || v[0] == "" || v[1] == "" {
			t.Errorf("the catalogue lacks %q", k)
		}
	}
	for _, c := range []struct {
		name, kind string
	}{
		{"contribution_years", kindNumber}, {"age_over_60", kindBool}, {"pension_status", kindText}, {"insurance_number", kindText},
	} {
		if got := claimKind(c.name); got != c.kind {
			t.Errorf("claimKind(%q) = %q, want %q", c.name, got, c.kind)
		}
	}
}
