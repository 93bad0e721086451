package web

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/wallet"
)

// clock is a settable clock for session expiry and rate limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)} }
func (c *clock) String() string      { return c.now().String() }
func cheapParams() wallet.Params     { return wallet.Params{Time: 1, MemoryKiB: 8 << 10, Threads: 1} }
func mustRead(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// bare is a portal over an empty ledger: enough for what does not touch the
// chain (sessions, forms, staff sign-in, headers).
func bare(t *testing.T, staff ...StaffAccount) (*httptest.Server, *clock) {
	t.Helper()
	app, err := ledger.OpenMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := service.OpenStore("")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	c := newClock()
	p, err := New(Config{App: app, Node: cl, Store: st, Staff: staff, Now: c.now, WalletParams: cheapParams(), IdleTimeout: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv, c
}

type browserless struct {
	t     *testing.T
	base  string
	c     *http.Client
	extra http.Header // sent with every request (X-Forwarded-For, say)
}

func newBrowserless(t *testing.T, base string) *browserless {
	jar, _ := cookiejar.New(nil)
	return &browserless{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var tokenRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browserless) get(path string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	for k, v := range b.extra {
		req.Header[k] = v
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	return res, mustRead(b.t, res.Body)
}

// token GETs path and returns the first form token on it.
func (b *browserless) token(path string) string {
	b.t.Helper()
	_, body := b.get(path)
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("%s has no form token", path)
	}
	return m[1]
}

func (b *browserless) post(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.base)
	for k, v := range b.extra {
		req.Header[k] = v
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	return res, mustRead(b.t, res.Body)
}

func staffFixture(t *testing.T) StaffAccount {
	a, err := NewStaffAccount("clerk", "cc-psb", []string{RoleCounter, RoleConsole}, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestPagesAreNoStoreWithAStrictPolicy(t *testing.T) {
	srv, _ := bare(t)
	b := newBrowserless(t, srv.URL)
	res, body := b.get("/")
	for h, want := range map[string]string{
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'",
	} {
		if got := res.Header.Get(h); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", h, got, want)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") || strings.Contains(body, "style=\"") {
		t.Error("a page has inline script or style, which the policy blocks")
	}
	if len(res.Cookies()) != 0 {
		t.Error("the start page set a cookie: a page without a form must not start a session")
	}
	res, _ = b.get("/staff/signin")
	var sc *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			sc = c
		}
	}
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict", sc)
	}
	if !strings.Contains(body, `lang="zh-Hans"`) {
		t.Error("the default page is not in Chinese")
	}
}

func TestLanguageSwitchIsRemembered(t *testing.T) {
	srv, _ := bare(t)
	b := newBrowserless(t, srv.URL)
	res, _ := b.get("/staff/signin?lang=en")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/staff/signin" {
		t.Fatalf("?lang=en: %d to %q, want 303 to the same page without the parameter", res.StatusCode, res.Header.Get("Location"))
	}
	_, body := b.get("/staff/signin")
	if !strings.Contains(body, "Staff sign-in") || !strings.Contains(body, `lang="en"`) {
		t.Error("after switching, the page is not in English")
	}
	b.get("/?lang=zh")
	if _, body := b.get("/staff/signin"); !strings.Contains(body, "工作人员登录") {
		t.Error("switching back to Chinese did not stick")
	}
}

func TestFormsRefuseForgedAndReplayedTokens(t *testing.T) {
	staff := staffFixture(t)
	srv, _ := bare(t, staff)
	b := newBrowserless(t, srv.URL)
	tok := b.token("/staff/signin")

	res, body := b.post("/staff/signin", url.Values{"csrf": {"forged-" + tok}, "account": {"clerk"}, "passphrase": {"correct horse battery"}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "伪造") {
		t.Errorf("forged token: %d, want 403 saying it may be forged", res.StatusCode)
	}
	res, _ = b.post("/staff/signin", url.Values{"csrf": {tok}, "account": {"clerk"}, "passphrase": {"correct horse battery"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in with a good token: %d, want 303", res.StatusCode)
	}
	res, body = b.post("/staff/signin", url.Values{"csrf": {tok}, "account": {"clerk"}, "passphrase": {"correct horse battery"}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, "已经提交过") {
		t.Errorf("replayed form: %d, want 409 saying it was already sent", res.StatusCode)
	}
	// A form posted by another site is refused even with a token.
	tok = b.token("/")
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/staff/signout", strings.NewReader(url.Values{"csrf": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	res2, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site post: %d, want 403", res2.StatusCode)
	}
	// No session at all.
	fresh := newBrowserless(t, srv.URL)
	res, body = fresh.post("/staff/signin", url.Values{"csrf": {"x"}})
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Cookie") {
		t.Errorf("post without a session: %d, want 403 about cookies", res.StatusCode)
	}
}

func TestSignInGivesANewSessionAndIdleSessionsExpire(t *testing.T) {
	staff := staffFixture(t)
	srv, clk := bare(t, staff)
	b := newBrowserless(t, srv.URL)
	tok := b.token("/staff/signin")
	u, _ := url.Parse(srv.URL)
	before := b.c.Jar.Cookies(u)
	res, _ := b.post("/staff/signin", url.Values{"csrf": {tok}, "account": {"clerk"}, "passphrase": {"correct horse battery"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/counter" {
		t.Fatalf("sign-in: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	after := b.c.Jar.Cookies(u)
	if len(before) == 0 || len(after) == 0 || before[0].Value == after[0].Value {
		t.Fatal("the session id did not change at sign-in")
	}
	// The pre-sign-in session is gone: a fixed session is worthless.
	old := newBrowserless(t, srv.URL)
	old.c.Jar.SetCookies(u, before)
	if res, _ := old.get("/me"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("the old session id still works: %d", res.StatusCode)
	}

	tok = b.token("/staff/signin")
	clk.add(14 * time.Minute)
	if res, _ := b.get("/"); res.StatusCode != http.StatusOK {
		t.Fatalf("after 14 idle minutes: %d", res.StatusCode)
	}
	clk.add(15 * time.Minute)
	res, body := b.post("/staff/signout", url.Values{"csrf": {tok}})
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "会话已过期") {
		t.Errorf("a form after 15 idle minutes: %d, want 401 saying the session expired", res.StatusCode)
	}
}

func TestStaffSignInIsRateLimitedAndSaysLittle(t *testing.T) {
	staff := staffFixture(t)
	srv, clk := bare(t, staff)
	b := newBrowserless(t, srv.URL)
	var last *http.Response
	var body string
	for i := 0; i < 30; i++ {
		tok := b.token("/staff/signin")
		name := "clerk"
		if i%2 == 1 {
			name = "nobody"
		}
		last, body = b.post("/staff/signin", url.Values{"csrf": {tok}, "account": {name}, "passphrase": {"wrong passphrase!"}})
		if last.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "账号或密码不正确") {
			t.Fatalf("attempt %d: %d, want 401 with one message for a wrong name or passphrase", i, last.StatusCode)
		}
	}
	tok := b.token("/staff/signin")
	last, body = b.post("/staff/signin", url.Values{"csrf": {tok}, "account": {"clerk"}, "passphrase": {"correct horse battery"}})
	if last.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "过于频繁") {
		t.Fatalf("31st attempt in a burst: %d, want 429", last.StatusCode)
	}
	clk.add(2 * time.Second)
	tok = b.token("/staff/signin")
	if last, _ = b.post("/staff/signin", url.Values{"csrf": {tok}, "account": {"clerk"}, "passphrase": {"correct horse battery"}}); last.StatusCode != http.StatusSeeOther {
		t.Errorf("after a minute: %d, want a sign-in", last.StatusCode)
	}
}

func TestRolesAndOversizedForms(t *testing.T) {
	cw, err := NewStaffAccount("case", "cc-hrss", []string{RoleConsole}, "another long passphrase")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := bare(t, cw)
	b := newBrowserless(t, srv.URL)
	if res, _ := b.get("/me"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/signin" {
		t.Errorf("resident page without a session: %d to %q, want the sign-in page", res.StatusCode, res.Header.Get("Location"))
	}
	tok := b.token("/staff/signin")
	b.post("/staff/signin", url.Values{"csrf": {tok}, "account": {"case"}, "passphrase": {"another long passphrase"}})
	if res, body := b.get("/counter"); res.StatusCode != http.StatusForbidden || !strings.Contains(body, "无权") {
		t.Errorf("a caseworker at the counter: %d, want 403", res.StatusCode)
	}
	if res, _ := b.get("/me"); res.StatusCode != http.StatusSeeOther {
		t.Errorf("a caseworker on a resident page: %d, want a redirect to resident sign-in", res.StatusCode)
	}
	res, body := b.post("/staff/signout", url.Values{"csrf": {tok}, "pad": {strings.Repeat("x", maxForm)}})
	if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "太大") {
		t.Errorf("oversized form: %d, want 413", res.StatusCode)
	}
}

func TestAFloodOfVisitorsEvictsVisitorsFirst(t *testing.T) {
	clk := newClock()
	ss := newSessions(clk.now, 15*time.Minute)
	ss.max = 100
	w := httptest.NewRecorder()
	var known []*session
	for i := 0; i < 10; i++ {
		s, _, _ := ss.start(w, nil, func(s *session, _ []byte) error { s.staff = &StaffAccount{Name: "clerk"}; return nil })
		known = append(known, s)
		clk.add(time.Second)
	}
	var anon []*session
	for i := 0; i < 300; i++ {
		s, _, _ := ss.start(w, nil, nil)
		anon = append(anon, s)
		clk.add(time.Second)
	}
	if n := len(ss.m); n > ss.max {
		t.Fatalf("%d sessions kept, over the cap of %d", n, ss.max)
	}
	for i, s := range known {
		if ss.m[s.id] == nil {
			t.Errorf("signed-in session %d was evicted by anonymous ones", i)
		}
	}
	if ss.m[anon[0].id] != nil || ss.m[anon[len(anon)-1].id] == nil {
		t.Error("the oldest visitor was kept, or the newest dropped")
	}
}

func TestAStaffAccountRemovedEndsItsSessions(t *testing.T) {
	a := staffFixture(t)
	file := filepath.Join(t.TempDir(), "staff.json")
	if err := WriteStaff(file, []StaffAccount{a}); err != nil {
		t.Fatal(err)
	}
	srv, _ := bare(t)
	srv.Config.Handler.(*Portal).cfg.StaffFile = file
	b := newBrowserless(t, srv.URL)
	tok := b.token("/staff/signin")
	if res, _ := b.post("/staff/signin", url.Values{"csrf": {tok}, "account": {"clerk"}, "passphrase": {"correct horse battery"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", res.StatusCode)
	}
	if res, _ := b.get("/counter"); res.StatusCode != http.StatusOK {
		t.Fatalf("the counter after sign-in: %d", res.StatusCode)
	}
	if err := WriteStaff(file, nil); err != nil {
		t.Fatal(err)
	}
	if res, body := b.get("/counter"); res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "停用") {
		t.Errorf("the counter after the account was removed: %d, want 401", res.StatusCode)
	}
	if res, _ := b.get("/counter"); res.StatusCode == http.StatusOK {
		t.Error("the session still works")
	}
}
