package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/imi-city/imi/internal/idnumber"
)

// portalIdle is the portal's idle timeout in these tests: long enough for a
// page's steps, short enough to wait out.
const portalIdle = 20 * time.Second

// portal is a demo district started with imi up, seen through its portal.
type portal struct {
	base    string
	staff   map[string]string // account → passphrase, from demo-staff.txt
	home    string
	logPath string
	node    *proc

	mu     sync.Mutex
	people []person // everyone the counter registered
	codes  []string // their activation codes
}

// startPortal starts the demo district the way a new user does (imi up)
// with a short portal idle timeout, and reads the demo staff passphrases.
func startPortal(t *testing.T, ctx context.Context) *portal {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	addr := initNode(t, home)
	cfg := filepath.Join(home, "imi.toml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), `portal_idle_timeout = ""`, fmt.Sprintf("portal_idle_timeout = %q", portalIdle), 1))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	logf, logPath := nodeLog(t, dir)
	nd := startProc(t, logf, "up", "--home", home)
	t.Cleanup(nd.kill)
	if _, err := newAPI(addr).waitReady(ctx, nd, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if out := nd.stdout.String(); !strings.Contains(out, "portal     http://"+addr+"/") {
		t.Errorf("imi up did not print the portal's address:\n%s", out)
	}
	p := &portal{base: "http://" + addr, staff: map[string]string{}, home: home, logPath: logPath, node: nd}
	f, err := os.Open(filepath.Join(home, "demo-staff.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) == 4 && !strings.HasPrefix(fs[0], "#") {
			p.staff[fs[0]] = fs[3]
		}
	}
	if len(p.staff) != 4 {
		t.Fatalf("demo-staff.txt lists %d accounts, want 4", len(p.staff))
	}
	return p
}

// person is a resident as the counter clerk reads their ID card.
type person struct {
	number                     idnumber.Number
	family, given, sex, ethnic string
	address                    string
	passphrase                 string
}

func newPerson(t *testing.T, seq int, family, given string) person {
	t.Helper()
	n, err := idnumber.Example("440604", 1952, 3, 14, seq)
	if err != nil {
		t.Fatal(err)
	}
	// The ID number's 17th character is odd for a man, even for a woman.
	sex := "female"
	if seq%2 == 1 {
		sex = "male"
	}
	return person{number: n, family: family, given: given, sex: sex, ethnic: "汉族",
		address: "佛山市禅城区祖庙路" + fmt.Sprint(seq) + "号", passphrase: "平安喜乐 spring " + fmt.Sprint(seq)}
}

// words is what a journey expects to read, in one language.
type words struct {
	lang, identity, insurance, psb, hrss, received, revoked, withdrew, denied, allowed string
}

var zhWords = words{lang: "zh", identity: "居民身份", insurance: "社会保险", psb: "佛山市公安局禅城分局",
	hrss: "禅城区人力资源和社会保障局", received: "申请已提交", revoked: "已撤回授权", withdrew: "居民已撤回同意", denied: "已拒绝", allowed: "已允许"}
var enWords = words{lang: "en", identity: "Resident identity", insurance: "Social insurance", psb: "Chancheng Branch of the Foshan Public Security Bureau",
	hrss: "Chancheng Human Resources and Social Security Bureau", received: "Submitted", revoked: "Consent withdrawn", withdrew: "the resident withdrew the consent", denied: "denied", allowed: "allowed"}

func (p *portal) staffSignIn(t *testing.T, b *browser, account string) {
	t.Helper()
	b.navigate(t, p.base+"/staff/signin")
	b.run(t, chromedp.SendKeys(chromedp.CSS("#account"), account), chromedp.SendKeys(chromedp.CSS("#passphrase"), p.staff[account]))
	if code := b.clickAndLoad(t, "main form button[type=submit]"); code != http.StatusOK {
		t.Fatalf("staff sign-in as %s: status %d", account, code)
	}
}

func (p *portal) signOut(t *testing.T, b *browser) {
	t.Helper()
	b.clickAndLoad(t, "form.signout button")
}

// register has the counter register pe and returns the activation code on
// the receipt.
func (p *portal) register(t *testing.T, b *browser, pe person, check bool) string {
	t.Helper()
	p.staffSignIn(t, b, "psb-counter")
	b.navigate(t, p.base+"/counter/register")
	b.run(t,
		chromedp.SendKeys(chromedp.CSS("#id_number"), pe.number.String()),
		chromedp.SendKeys(chromedp.CSS("#family_name"), pe.family),
		chromedp.SendKeys(chromedp.CSS("#given_name"), pe.given),
		chromedp.SetValue(chromedp.CSS("#sex"), pe.sex),
		chromedp.SendKeys(chromedp.CSS("#ethnicity"), pe.ethnic),
		chromedp.SendKeys(chromedp.CSS("#registered_address"), pe.address),
		chromedp.SendKeys(chromedp.CSS("#passphrase"), pe.passphrase),
		chromedp.SendKeys(chromedp.CSS("#passphrase2"), pe.passphrase),
	)
	if check {
		b.shot(t, "counter-register")
		b.axe(t, b.test, "counter-register")
	}
	if code := b.clickAndLoad(t, "main form button[type=submit]"); code != http.StatusOK {
		t.Fatalf("registering at the counter: status %d", code)
	}
	code := b.textOf(t, ".receipt .code")
	if !regexp.MustCompile(`^[2-9A-HJ-NP-Z-]{10,12}$`).MatchString(code) {
		t.Fatalf("the receipt's activation code is %q", code)
	}
	p.mu.Lock()
	p.people, p.codes = append(p.people, pe), append(p.codes, code)
	p.mu.Unlock()
	if check {
		b.shot(t, "receipt")
		b.axe(t, b.test, "receipt")
	}
	p.signOut(t, b)
	return code
}

// issueInsurance has the pension bureau's caseworker issue a social
// insurance credential to pe; it reaches pe's hosted wallet's inbox.
func (p *portal) issueInsurance(t *testing.T, b *browser, pe person) {
	t.Helper()
	p.staffSignIn(t, b, "hrss-caseworker")
	b.navigate(t, p.base+"/console/issue?type=social_insurance")
	b.run(t,
		chromedp.SendKeys(chromedp.CSS("#id_number"), pe.number.String()),
		chromedp.SendKeys(chromedp.CSS("#claim_insurance_number"), "SI-"+pe.number.String()[10:]),
		chromedp.SendKeys(chromedp.CSS("#claim_pension_status"), "contributing"),
		chromedp.SendKeys(chromedp.CSS("#claim_contribution_years"), "32"),
	)
	if code := b.clickAndLoad(t, "form:has(#claim_insurance_number) button[type=submit]"); code != http.StatusOK {
		t.Fatalf("issuing social insurance: status %d", code)
	}
	b.waitVisible(t, ".flash")
	p.signOut(t, b)
}

func (p *portal) residentSignIn(t *testing.T, b *browser, pe person, activation string) int64 {
	t.Helper()
	b.navigate(t, p.base+"/signin")
	b.run(t,
		chromedp.SendKeys(chromedp.CSS("#id_number"), pe.number.String()),
		chromedp.SendKeys(chromedp.CSS("#passphrase"), pe.passphrase),
	)
	if activation != "" {
		b.run(t, chromedp.SendKeys(chromedp.CSS("#activation"), activation))
	}
	return b.clickAndLoad(t, "main form button[type=submit]")
}

func (p *portal) mustSignIn(t *testing.T, b *browser, pe person, activation string) {
	t.Helper()
	if code := p.residentSignIn(t, b, pe, activation); code != http.StatusOK {
		t.Fatalf("resident sign-in: status %d", code)
	}
}

// backOfficeRead has the pension bureau's caseworker read the resident's
// data again from the registrar under the consent; it returns the page's
// answer.
func (p *portal) backOfficeRead(t *testing.T, b *browser) string {
	t.Helper()
	p.staffSignIn(t, b, "hrss-caseworker")
	b.navigate(t, p.base+"/console")
	b.clickAndLoad(t, "main table a[href^='/console/applications/']")
	b.clickAndLoad(t, "form[action$='/read'] button[type=submit]")
	out := b.textOf(t, "main")
	b.shot(t, "back-office-read")
	p.signOut(t, b)
	return out
}

// journey is the whole path of issue 5 in one language.
func (p *portal) journey(t *testing.T, ctx context.Context, w words, pe person) {
	b := newBrowser(t, ctx, desktopViewport)
	b.navigate(t, p.base+"/?lang="+w.lang)
	b.shot(t, "home")
	b.axe(t, ctx, "home")

	code := p.register(t, b, pe, true)
	p.issueInsurance(t, b, pe)

	p.mustSignIn(t, b, pe, code)
	b.waitText(t, "main", w.identity)
	got := b.textOf(t, "main")
	for _, want := range []string{w.identity, w.insurance, pe.family, pe.address, w.psb} {
		if !strings.Contains(got, want) {
			t.Errorf("my credentials page does not show %q:\n%s", want, got)
		}
	}
	b.shot(t, "credentials")
	b.axe(t, ctx, "credentials")

	b.navigate(t, p.base+"/me/services")
	b.axe(t, ctx, "services")
	b.clickAndLoad(t, "form:has(input[value=pension_application]) button")
	form := b.textOf(t, "main")
	for _, want := range []string{pe.family, pe.given, pe.address, w.psb, w.hrss} {
		if !strings.Contains(form, want) {
			t.Errorf("the pension form is not filled with %q:\n%s", want, form)
		}
	}
	b.shot(t, "pension-form")
	b.axe(t, ctx, "pension-form")
	// The same form on a phone (the tab shares the session).
	ph := b.phone(t)
	ph.navigate(t, runValue(t, b, "read the form's address", chromedp.Location()))
	ph.waitVisible(t, "input[name=agree]")
	if w := runValue(t, ph, "measure the page", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > int(phoneViewport.width) {
		t.Errorf("on a phone the form is %d px wide, wider than the %d px screen", w, phoneViewport.width)
	}
	ph.shot(t, "pension-form-phone")
	ph.axe(t, ctx, "pension-form-phone")
	b.run(t,
		chromedp.Click(chromedp.CSS("input[name=sensitive_ok]")),
		chromedp.Click(chromedp.CSS("input[name=mode][value=standing]")),
		chromedp.Click(chromedp.CSS("input[name=agree]")),
	)
	b.clickAndLoad(t, "button[name=action][value=approve]")
	b.waitText(t, "main", w.received)
	b.shot(t, "received")

	b.navigate(t, p.base+"/me/log")
	entry := b.waitText(t, ".timeline li.allowed", w.hrss)
	if !strings.Contains(entry, w.allowed) {
		t.Errorf("the log entry does not say allowed: %s", entry)
	}
	b.shot(t, "log-allowed")
	b.axe(t, ctx, "log")

	b.navigate(t, p.base+"/me/consents")
	b.axe(t, ctx, "consents")
	b.clickAndLoad(t, "form[action='/me/consents/revoke'] button")
	b.waitText(t, ".flash", w.revoked)
	b.shot(t, "revoked")
	b.clickAndLoad(t, "form.signout button")

	if answer := p.backOfficeRead(t, b); !strings.Contains(answer, w.withdrew) {
		t.Errorf("the back-office read after the revocation was not refused for the withdrawal:\n%s", answer)
	}

	p.mustSignIn(t, b, pe, "")
	b.navigate(t, p.base+"/me/log")
	denied := b.waitText(t, ".timeline li.denied", w.withdrew)
	if !strings.Contains(denied, w.hrss) || !strings.Contains(denied, w.denied) {
		t.Errorf("the denial in the log does not say who and what: %s", denied)
	}
	b.shot(t, "log-denied")
	ph.navigate(t, p.base+"/me/log")
	ph.shot(t, "log-phone")
	ph.axe(t, ctx, "log-phone")
	// The refused read answers 403, which Chromium reports; nothing else
	// may go wrong in the page.
	for _, e := range b.console.errors() {
		if !strings.Contains(e, "status of 403") || !strings.Contains(e, "/read") {
			t.Errorf("console error: %s", e)
		}
	}
}

// TestPortal runs issue 5's journeys in a real headless Chromium against a
// real imi node started with imi up.
func TestPortal(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	p := startPortal(t, ctx)

	// Given names of two characters: the scan at the end looks for each as
	// bytes, and three bytes (one character) turn up by chance in the
	// block store's signatures and hashes.
	t.Run("journey in Chinese", func(t *testing.T) { p.journey(t, ctx, zhWords, newPerson(t, 11, "陈", "美玲")) })
	t.Run("journey in English", func(t *testing.T) { p.journey(t, ctx, enWords, newPerson(t, 12, "李", "伟明")) })
	t.Run("keyboard only", func(t *testing.T) { p.keyboard(t, ctx, newPerson(t, 13, "王", "芳华")) })
	t.Run("refusals", func(t *testing.T) { p.refusals(t, ctx, newPerson(t, 14, "张", "志强")) })
	t.Run("every page passes axe", func(t *testing.T) { p.everyPage(t, ctx, newPerson(t, 15, "刘", "海洋")) })
	t.Run("nothing personal on the chain or in the log", func(t *testing.T) { p.scan(t) })
}

// scan stops the node and looks through its files. Names, addresses and ID
// numbers may be only in the off-chain store (the registrar's register and
// the received applications); passphrases and activation codes nowhere.
func (p *portal) scan(t *testing.T) {
	if code, took, err := p.node.interrupt(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("stopping the node: exit %d after %v: %v", code, took, err)
	}
	all := filesUnder(t, p.home)
	logb, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, scanTarget{name: "node log", b: logb})
	var chain []scanTarget
	for _, f := range all {
		if !strings.Contains(f.name, string(filepath.Separator)+"offchain"+string(filepath.Separator)) {
			chain = append(chain, f)
		}
	}
	// Controls: the scan reads what the portal wrote.
	if len(hits(needle{"service id", []byte("pension_application")}, chain)) == 0 {
		t.Error("scan control: no consent to the pension is in the chain data")
	}
	if len(p.people) < 4 {
		t.Fatalf("only %d residents were registered", len(p.people))
	}
	for i, pe := range p.people {
		for name, v := range map[string]string{"given name": pe.given, "address": pe.address} {
			if w := hits(needle{name, []byte(v)}, chain); len(w) > 0 {
				t.Errorf("PERSONAL DATA: %s of resident %d found in %s", name, i, strings.Join(w, ", "))
			}
		}
		for _, nd := range idNeedles(pe.number.String()) {
			if w := hits(nd, chain); len(w) > 0 {
				t.Errorf("PERSONAL DATA: ID number form %s found in %s", nd.name, strings.Join(w, ", "))
			}
		}
		for name, v := range map[string]string{"passphrase": pe.passphrase, "activation code": p.codes[i], "activation code without dashes": strings.ReplaceAll(p.codes[i], "-", "")} {
			if w := hits(needle{name, []byte(v)}, all); len(w) > 0 {
				t.Errorf("SECRET: the %s of resident %d found in %s", name, i, strings.Join(w, ", "))
			}
		}
	}
	// The demo's staff passphrases belong in demo-staff.txt, and only there.
	var notDemo []scanTarget
	for _, f := range all {
		if filepath.Base(f.name) != "demo-staff.txt" {
			notDemo = append(notDemo, f)
		}
	}
	for account, pass := range p.staff {
		if w := hits(needle{"staff passphrase", []byte(pass)}, notDemo); len(w) > 0 {
			t.Errorf("SECRET: %s's passphrase found in %s", account, strings.Join(w, ", "))
		}
	}
}

// keyboard goes through the application form with the keyboard alone:
// every control is reached with Tab in reading order, ticked with Space and
// sent with Enter.
func (p *portal) keyboard(t *testing.T, ctx context.Context, pe person) {
	b := newBrowser(t, ctx, desktopViewport)
	code := p.register(t, b, pe, false)
	p.issueInsurance(t, b, pe)
	p.mustSignIn(t, b, pe, code)
	b.navigate(t, p.base+"/me/services")

	// Tab until the pension's Apply button has the focus, then Enter.
	tabTo := func(want string, limit int) []string {
		t.Helper()
		var seen []string
		for i := 0; i < limit; i++ {
			b.run(t, chromedp.KeyEvent("\t"))
			f := b.focused(t)
			seen = append(seen, f)
			if strings.Contains(f, want) {
				return seen
			}
		}
		t.Fatalf("Tab never reached %s; focus went %q", want, seen)
		return nil
	}
	first := tabTo("a.skip", 1)
	if len(first) != 1 {
		t.Fatalf("the first Tab does not reach the skip link")
	}
	for {
		tabTo("button", 40)
		if runValue(t, b, "is it the pension", chromedp.Evaluate[bool](`!!(document.activeElement.form && document.activeElement.form.service && document.activeElement.form.service.value === "pension_application")`)) {
			break
		}
	}
	if _, err := chromedp.RunResponse(b.ctx, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	b.waitVisible(t, "input[name=sensitive_ok]")
	b.shot(t, "form-by-keyboard")

	order := tabTo("input[name=sensitive_ok]", 60)
	b.run(t, chromedp.KeyEvent(" "))
	order = append(order, tabTo("[name=mode]", 5)...)
	// Arrow keys move between radio buttons; standing is the second.
	b.run(t, chromedp.KeyEvent(kb.ArrowDown))
	order = append(order, tabTo("input#days", 3)...)
	order = append(order, tabTo("input[name=agree]", 3)...)
	b.run(t, chromedp.KeyEvent(" "))
	order = append(order, tabTo("button", 3)...)
	if f := b.focused(t); !strings.Contains(f, "button") {
		t.Fatalf("after agree the focus is on %s, not the approve button", f)
	}
	t.Logf("focus order through the form: %s", strings.Join(order, " → "))
	if ok := runValue(t, b, "ticked by keyboard", chromedp.Evaluate[bool](`document.querySelector("input[name=sensitive_ok]").checked && document.querySelector("input[name=agree]").checked && document.querySelector("input[name=mode][value=standing]").checked`)); !ok {
		t.Fatal("Space and the arrow keys did not tick the boxes and choose standing consent")
	}
	if _, err := chromedp.RunResponse(b.ctx, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	b.waitText(t, "main", zhWords.received)
	b.shot(t, "received-by-keyboard")
}

// textOfValue returns the value of the form control sel (CSS).
func (b *browser) textOfValue(t *testing.T, sel string) string {
	t.Helper()
	return runValue(t, b, "read the value of "+sel, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).value`, sel)))
}

// refusals: a wrong passphrase, an expired session, a forged form token and
// a replayed form are each refused with words a resident can act on.
func (p *portal) refusals(t *testing.T, ctx context.Context, pe person) {
	b := newBrowser(t, ctx, desktopViewport)
	code := p.register(t, b, pe, false)

	wrong := pe
	wrong.passphrase = "not the passphrase"
	if status := p.residentSignIn(t, b, wrong, code); status != http.StatusUnauthorized {
		t.Errorf("a wrong passphrase: status %d, want 401", status)
	}
	b.waitText(t, "[role=alert]", "身份证号码或密码不正确")
	b.shot(t, "wrong-passphrase")

	if status := p.residentSignIn(t, b, pe, ""); status != http.StatusUnauthorized {
		t.Errorf("a first sign-in without the activation code: status %d, want 401", status)
	}
	b.waitText(t, "[role=alert]", "激活码")
	p.mustSignIn(t, b, pe, code)
	b.waitText(t, "h1", "我的证照")

	// A forged token: the form's hidden value changed in the page.
	b.navigate(t, p.base+"/me/services")
	b.run(t, chromedp.Evaluate[chromedp.Void](`document.querySelector("form:has(input[value=pension_application]) input[name=csrf]").value = "forged"`))
	b.clickAndLoad(t, "form:has(input[value=pension_application]) button")
	b.waitText(t, "[role=alert]", "伪造")
	b.shot(t, "forged-token")

	// A replayed form: the same token sent twice.
	b.navigate(t, p.base+"/me/services")
	tok := b.textOfValue(t, "form:has(input[value=pension_application]) input[name=csrf]")
	b.clickAndLoad(t, "form:has(input[value=pension_application]) button")
	b.waitVisible(t, "input[name=agree]")
	b.navigate(t, p.base+"/me/services")
	b.run(t, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector("form:has(input[value=pension_application]) input[name=csrf]").value = %q`, tok)))
	b.clickAndLoad(t, "form:has(input[value=pension_application]) button")
	b.waitText(t, "[role=alert]", "已经提交过一次")
	b.shot(t, "replayed-form")

	// An expired session: the page stays open longer than the idle timeout.
	b.navigate(t, p.base+"/me/consents")
	select {
	case <-time.After(portalIdle + 2*time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	b.navigate(t, p.base+"/me/log")
	b.waitText(t, "[role=alert]", "会话已过期")
	b.shot(t, "expired-session")
	b.axe(t, ctx, "expired-session")
}

// everyPage runs axe on the pages the journeys do not pass through, in both
// languages: sign-in pages, the counter's other forms, every console page,
// a guardian's page and an error page.
func (p *portal) everyPage(t *testing.T, ctx context.Context, pe person) {
	b := newBrowser(t, ctx, desktopViewport)
	code := p.register(t, b, pe, false)
	for _, lang := range []string{"zh", "en"} {
		b.navigate(t, p.base+"/?lang="+lang)
		for _, page := range []string{"/signin", "/staff/signin"} {
			b.navigate(t, p.base+page)
			b.axe(t, ctx, lang+page)
		}
		p.staffSignIn(t, b, "psb-counter")
		for _, page := range []string{"/counter", "/counter/reproof", "/counter/guardian", "/console", "/console/issue", "/console/issue?type=household_registration", "/console/revoke", "/console/access", "/console/services"} {
			if code := b.navigate(t, p.base+page); code != http.StatusOK {
				t.Errorf("%s: status %d", page, code)
			}
			b.axe(t, ctx, lang+page)
		}
		b.shot(t, lang+"-console-services")
		p.signOut(t, b)
		activation := ""
		if lang == "zh" {
			activation = code
		}
		p.mustSignIn(t, b, pe, activation)
		for _, page := range []string{"/me/wards", "/me/passphrase", "/me/erase"} {
			b.navigate(t, p.base+page)
			b.axe(t, ctx, lang+page)
		}
		if code := b.navigate(t, p.base+"/me/applications/no-such-application"); code != http.StatusNotFound {
			t.Errorf("an unknown application: status %d, want 404", code)
		}
		b.axe(t, ctx, lang+"-error")
		p.signOut(t, b)
	}
}
