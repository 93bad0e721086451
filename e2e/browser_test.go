package e2e

// Browser tests drive Debian's Chromium, headless, through the DevTools
// protocol (github.com/chromedp/chromedp: it speaks the protocol over a pipe
// to the browser it starts, with no driver binary and no download of its own
// browser, which this closed network would refuse). Pages are checked for
// accessibility with axe-core, pinned in e2e/axe and injected into the page.
//
// Like Node.js for the interop tests, a missing Chromium or npm is a failure,
// never a skip: the test installs what it can and fails with a clear message
// otherwise.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	// browserStartTimeout bounds Chromium's start, up to its first tab.
	browserStartTimeout = time.Minute
	// browserStepTimeout is the default bound of one step (an action, a wait,
	// an axe run) on a tab; see browser.timeout.
	browserStepTimeout = 30 * time.Second
	// chromiumInstallTimeout bounds apt-get when Chromium is missing.
	chromiumInstallTimeout = 10 * time.Minute
)

// viewport is the size of a tab's page area, in CSS pixels.
type viewport struct {
	name          string
	width, height int64
	// mobile is a phone: mobile layout (meta viewport honoured) and touch.
	mobile bool
}

var (
	desktopViewport = viewport{name: "desktop", width: 1280, height: 800}
	phoneViewport   = viewport{name: "phone", width: 390, height: 844, mobile: true}
)

// browser is one tab of a headless Chromium started for one test. Every
// method bounds its work by timeout and by the test's context; a failure
// fails the test with the tab's URL and a screenshot named "failure".
type browser struct {
	// ctx is the chromedp context of this tab; it lives until the test's
	// cleanup, even after the test's own context has ended, so that a
	// failure can still be photographed.
	ctx context.Context
	// test is the test's context: when it ends, steps end.
	test context.Context
	vp   viewport
	// timeout bounds one step; a journey may raise it for a slow page.
	timeout time.Duration
	proc    *browserProc
	console *consoleLog
}

// browserProc is the Chromium process shared by a test's tabs.
type browserProc struct {
	// ctx is the first tab's context, the parent of further tabs.
	ctx context.Context
	// out is Chromium's stdout and stderr, and chromedp's own log.
	out *chromiumOutput
}

// chromiumOutput is what Chromium and chromedp print.
type chromiumOutput struct{ lockedBuffer }

// dbusNoise matches the lines a headless Chromium prints at every start in
// a container without D-Bus; they would hide the lines that matter.
var dbusNoise = regexp.MustCompile(`(?m)^.*:ERROR:dbus/.*\n`)

// tail is the end of the output, without the D-Bus noise.
func (o *chromiumOutput) tail() string {
	return string(tail(dbusNoise.ReplaceAll([]byte(o.String()), nil), 4000))
}

// chromium is the result of finding (or installing) Chromium, once per test
// binary.
var chromium struct {
	once sync.Once
	path string
	err  error
}

// chromiumPath returns the Chromium binary: $IMI_CHROMIUM when set, else
// /usr/bin/chromium, chromium or chromium-browser on PATH. When there is none
// it installs Debian's chromium package with apt-get (through sudo -n when
// not root), as the README's test command installs what it needs, and fails
// the test if that does not work.
func chromiumPath(t *testing.T) string {
	t.Helper()
	chromium.once.Do(func() {
		if p := os.Getenv("IMI_CHROMIUM"); p != "" {
			// An explicit choice that is wrong is the operator's to fix,
			// not a reason to install something else.
			chromium.path, chromium.err = exec.LookPath(p)
			if chromium.err != nil {
				chromium.err = fmt.Errorf("IMI_CHROMIUM=%s: %w", p, chromium.err)
			}
			return
		}
		if p := findChromium(); p != "" {
			chromium.path = p
			return
		}
		chromium.path, chromium.err = installChromium()
	})
	if chromium.err != nil {
		t.Fatalf("the browser tests need Chromium: %v\n"+
			"Install Debian's chromium package (apt-get install chromium; .ci/run does) "+
			"or set IMI_CHROMIUM to a Chromium or Chrome binary.", chromium.err)
	}
	return chromium.path
}

func findChromium() string {
	if fileExists("/usr/bin/chromium") {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// installChromium runs apt-get install chromium. A lock file serialises it
// across the test binaries go test runs in parallel (dpkg would refuse a
// second one); whoever comes second finds Chromium installed.
func installChromium() (string, error) {
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "imi-chromium-install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", fmt.Errorf("couldn't lock the install: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("couldn't lock the install: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if p := findChromium(); p != "" {
		return p, nil
	}

	var prefix []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return "", errors.New("not root, and no sudo to run apt-get with")
		}
		// -n: fail rather than wait for a password nobody will type.
		prefix = []string{"sudo", "-n"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), chromiumInstallTimeout)
	defer cancel()
	for _, args := range [][]string{
		{"apt-get", "update", "-qq"},
		// With recommends, as .ci/run: they bring fonts-liberation.
		{"apt-get", "install", "-y", "-qq", "chromium", "fonts-noto-cjk"},
	} {
		args = append(prefix, args...)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, tail(out, 3000))
		}
	}
	if p := findChromium(); p != "" {
		return p, nil
	}
	return "", errors.New("apt-get installed chromium, but no chromium binary is on PATH")
}

// tail is the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// newBrowser starts a headless Chromium for this test and returns its first
// tab, sized to vp. The browser and its fresh, empty profile directory are
// gone when the test's cleanup ends. If the test fails, the tail of
// Chromium's output and the pages' console messages are logged.
func newBrowser(t *testing.T, ctx context.Context, vp viewport) *browser {
	t.Helper()
	path := chromiumPath(t)
	out := new(chromiumOutput)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.CombinedOutput(out),
		chromedp.WindowSize(int(vp.width), int(vp.height)),
		// The flags this machine's network needs: without the background
		// networking flags Chromium's own connections (updates, QUIC
		// probes, sync) are refused by the closed network, many at a time,
		// and slow every start.
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // as root in a container there is no sandbox
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// No user-data-dir: the allocator makes a fresh, empty one for each
		// browser, and removes it (and any leftover child process) when the
		// browser ends.
	)
	// The browser outlives the test's context, until cleanup: a test that
	// times out still gets its failure screenshot.
	startCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(startCtx, opts...)
	t.Cleanup(func() { abort(); cancelAlloc() })
	logf := func(format string, args ...any) { fmt.Fprintf(out, "chromedp: "+format+"\n", args...) }
	tabCtx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(logf), chromedp.WithErrorf(logf))
	t.Cleanup(cancelTab)

	// The first Do starts the browser and binds it to tabCtx, so it gets no
	// timeout of its own; a timer aborts a start that hangs.
	timer := time.AfterFunc(browserStartTimeout, abort)
	err := chromedp.Do(tabCtx)
	if !timer.Stop() {
		err = fmt.Errorf("not started within %v", browserStartTimeout)
	}
	if err != nil {
		t.Fatalf("couldn't start %s: %v\nChromium's output:\n%s", path, err, out.tail())
	}
	p := &browserProc{ctx: tabCtx, out: out}
	b := p.tab(t, ctx, tabCtx, vp)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tail of Chromium's output:\n%s", out.tail())
		}
	})
	return b
}

// newTab opens another tab of the same browser, sized to vp; it closes when
// the test ends. Tabs share cookies, as tabs of one browser do.
func (b *browser) newTab(t *testing.T, vp viewport) *browser {
	t.Helper()
	tabCtx, cancel := chromedp.NewContext(b.proc.ctx)
	t.Cleanup(cancel)
	// As for the browser, the first Do on a tab binds the tab to its
	// context: it must be the tab's own, with no timeout; a timer closes a
	// tab that does not open.
	timer := time.AfterFunc(browserStartTimeout, cancel)
	err := chromedp.Do(tabCtx)
	if !timer.Stop() {
		err = fmt.Errorf("not open within %v", browserStartTimeout)
	}
	if err != nil {
		t.Fatalf("couldn't open a %s tab: %v", vp.name, err)
	}
	return b.proc.tab(t, b.test, tabCtx, vp)
}

// phone opens another tab of the same browser as a phone (390x844, mobile,
// touch).
func (b *browser) phone(t *testing.T) *browser {
	t.Helper()
	return b.newTab(t, phoneViewport)
}

// tab sets up a new tab: its viewport and its console log.
func (p *browserProc) tab(t *testing.T, test, tabCtx context.Context, vp viewport) *browser {
	t.Helper()
	b := &browser{ctx: tabCtx, test: test, vp: vp, timeout: browserStepTimeout, proc: p, console: new(consoleLog)}
	opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if vp.mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	b.run(t, chromedp.EmulateViewport(vp.width, vp.height, opts...))
	// Subscribe now, so the messages of the first page are kept; the
	// subscription ends when the tab's context does.
	msgs := chromedp.Console(tabCtx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.console.add(m)
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			if s := b.console.String(); s != "" {
				t.Logf("console of the %s tab:\n%s", vp.name, s)
			}
		}
	})
	return b
}

// consoleLog keeps what a tab's pages wrote to the console, and the
// exceptions nothing caught.
type consoleLog struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func (c *consoleLog) add(m chromedp.ConsoleMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
}

// errors returns the console errors and uncaught exceptions so far.
func (c *consoleLog) errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []string
	for _, m := range c.msgs {
		if m.IsException() || m.Type == chromedp.ConsoleError {
			errs = append(errs, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
		}
	}
	return errs
}

func (c *consoleLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s strings.Builder
	for _, m := range c.msgs {
		fmt.Fprintf(&s, "%s\n", m)
	}
	return s.String()
}

// stepCtx is the context of one step: the tab's, bounded by b.timeout and
// by the test's context.
func (b *browser) stepCtx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	stop := context.AfterFunc(b.test, cancel)
	return ctx, func() { stop(); cancel() }
}

// run runs actions in order on the tab, each bounded by b.timeout. The
// first that fails fails the test, saying which step and where.
func (b *browser) run(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	for i, a := range actions {
		if err := b.do(a); err != nil {
			b.fail(t, fmt.Sprintf("step %d of %d", i+1, len(actions)), err)
		}
	}
}

func (b *browser) do(a chromedp.Action[chromedp.Void]) error {
	ctx, cancel := b.stepCtx()
	defer cancel()
	_, err := chromedp.Run(ctx, a)
	return err
}

// runValue runs one action that returns a value, bounded by b.timeout, and
// fails the test if it fails. what names it in the failure.
func runValue[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(t, what, err)
	}
	return v
}

// fail fails the test for a step that went wrong, with the tab's URL and a
// screenshot of the page as it is.
func (b *browser) fail(t *testing.T, what string, err error) {
	t.Helper()
	switch {
	case b.test.Err() != nil:
		err = fmt.Errorf("the test's context ended (%v): %w", context.Cause(b.test), err)
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("not done within %v: %w", b.timeout, err)
	}
	// The step's context may be the one that ended; the tab's still works.
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	where, lerr := chromedp.Run(ctx, chromedp.Location())
	if lerr != nil {
		where = fmt.Sprintf("(unknown URL: %v)", lerr)
	}
	shot, serr := b.saveShot(ctx, t, "failure")
	if serr != nil {
		shot = fmt.Sprintf("(none: %v)", serr)
	}
	t.Fatalf("browser (%s): %s failed at %s: %v\nscreenshot: %s", b.vp.name, what, where, err, shot)
}

// navigate loads url and waits for the page's load event; it returns the
// HTTP status of the document.
func (b *browser) navigate(t *testing.T, url string) int64 {
	t.Helper()
	resp := runValue(t, b, "navigate to "+url, chromedp.NavigateResponse(url))
	return resp.Status
}

// clickAndLoad clicks the element sel (CSS) — a link or a form's submit
// button — and waits for the page that loads; it returns its HTTP status.
func (b *browser) clickAndLoad(t *testing.T, sel string) int64 {
	t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.fail(t, "click "+sel+" and wait for the next page", err)
	}
	return resp.Status
}

// textOf waits for the element sel (CSS) and returns its rendered text
// (innerText), trimmed.
func (b *browser) textOf(t *testing.T, sel string) string {
	t.Helper()
	return strings.TrimSpace(runValue(t, b, "read the text of "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// waitVisible waits until the element sel (CSS) is visible.
func (b *browser) waitVisible(t *testing.T, sel string) {
	t.Helper()
	if err := b.do(chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		b.fail(t, "wait for "+sel+" to be visible", err)
	}
}

// waitGone waits until no element matches sel (CSS).
func (b *browser) waitGone(t *testing.T, sel string) {
	t.Helper()
	if err := b.do(chromedp.WaitNotPresent(chromedp.CSS(sel))); err != nil {
		b.fail(t, "wait for "+sel+" to be gone", err)
	}
}

// waitText waits until the rendered text of sel (CSS) contains want, and
// returns the whole text.
func (b *browser) waitText(t *testing.T, sel, want string) string {
	t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	var last string
	var err error
	for {
		last, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err == nil && strings.Contains(last, want) {
			return strings.TrimSpace(last)
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	b.fail(t, fmt.Sprintf("wait for %s to say %q", sel, want), fmt.Errorf("last text %q: %w", last, err))
	return ""
}

// focused describes the element that has the keyboard focus, as
// tag#id.class[name=…] ("body" when nothing does).
func (b *browser) focused(t *testing.T) string {
	t.Helper()
	return runValue(t, b, "read the focused element", chromedp.Evaluate[string](`(() => {
		const e = document.activeElement;
		if (!e) return "";
		let s = e.tagName.toLowerCase();
		if (e.id) s += "#" + e.id;
		for (const c of e.classList) s += "." + c;
		const n = e.getAttribute("name");
		if (n) s += "[name=" + n + "]";
		return s;
	})()`))
}

// shots numbers the screenshots of each test.
var shots struct {
	mu sync.Mutex
	n  map[string]int
}

// shot saves a full-page PNG screenshot of the tab as
// <artifacts>/<TestName>/NN-name.png and returns its path. The artifacts
// directory is $IMI_ARTIFACTS, or artifacts/browser at the repository's
// root; a test's directory is emptied at its first screenshot of the run.
func (b *browser) shot(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := b.stepCtx()
	defer cancel()
	p, err := b.saveShot(ctx, t, name)
	if err != nil {
		b.fail(t, "screenshot "+name, err)
	}
	return p
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (b *browser) saveShot(ctx context.Context, t *testing.T, name string) (string, error) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 is PNG
	if err != nil {
		return "", err
	}
	base := os.Getenv("IMI_ARTIFACTS")
	if base == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		base = filepath.Join(root, "artifacts", "browser")
	}
	test := unsafeName.ReplaceAllString(t.Name(), "_")
	dir := filepath.Join(base, test)
	shots.mu.Lock()
	if shots.n == nil {
		shots.n = make(map[string]int)
	}
	if shots.n[t.Name()] == 0 {
		// Last run's pictures would pass for this run's.
		_ = os.RemoveAll(dir)
	}
	shots.n[t.Name()]++
	n := shots.n[t.Name()]
	shots.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, fmt.Sprintf("%02d-%s.png", n, unsafeName.ReplaceAllString(name, "_")))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		return "", err
	}
	t.Logf("screenshot (%s): %s", b.vp.name, p)
	return p, nil
}

// repoRoot is the directory holding go.mod, above the working directory.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; {
		if fileExists(filepath.Join(d, "go.mod")) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
		d = parent
	}
}

// axeViolation is one rule axe-core found broken, with the elements that
// break it.
type axeViolation struct {
	ID      string `json:"id"`
	Impact  string `json:"impact"` // minor, moderate, serious or critical
	Help    string `json:"help"`
	HelpURL string `json:"helpUrl"`
	Nodes   []struct {
		Target  []string `json:"target"` // CSS selectors, one per frame
		HTML    string   `json:"html"`
		Summary string   `json:"failureSummary"`
	} `json:"nodes"`
}

// blocking reports whether the violation fails a page: serious or critical
// (or an impact axe did not name, to be safe).
func (v axeViolation) blocking() bool {
	return v.Impact != "minor" && v.Impact != "moderate"
}

func (v axeViolation) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s (%s): %s <%s>", v.ID, v.Impact, v.Help, v.HelpURL)
	for i, n := range v.Nodes {
		if i == 3 {
			fmt.Fprintf(&s, "\n\t… and %d more", len(v.Nodes)-i)
			break
		}
		fmt.Fprintf(&s, "\n\tat %s", strings.Join(n.Target, " >>> "))
	}
	return s.String()
}

// axeTags are the rule sets a page must pass: WCAG 2.0 and 2.1, A and AA.
var axeTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa"}

// axe checks the tab's current page with axe-core against WCAG 2.1 A and
// AA. It fails the test for any serious or critical violation, listing the
// rule, its help and the first elements; it logs moderate and minor ones.
// page names the page in messages and in the screenshot taken on failure.
func (b *browser) axe(t *testing.T, ctx context.Context, page string) []axeViolation {
	t.Helper()
	vs, err := b.axeRun(ctx)
	if err != nil {
		b.fail(t, "axe on "+page, err)
	}
	var blocking []string
	for _, v := range vs {
		if v.blocking() {
			blocking = append(blocking, v.String())
		} else {
			t.Logf("axe on %s (%s), not blocking: %s", page, b.vp.name, v)
		}
	}
	if len(blocking) > 0 {
		sctx, cancel := b.stepCtx()
		defer cancel()
		shot, err := b.saveShot(sctx, t, "axe-"+page)
		if err != nil {
			shot = fmt.Sprintf("(none: %v)", err)
		}
		t.Fatalf("axe on %s (%s): %d serious or critical WCAG 2.1 AA violations:\n%s\nscreenshot: %s",
			page, b.vp.name, len(blocking), strings.Join(blocking, "\n"), shot)
	}
	return vs
}

// axeRun injects axe-core into the tab's current page (once per page) and
// returns every violation of axeTags, whatever its impact.
func (b *browser) axeRun(ctx context.Context) ([]axeViolation, error) {
	src, err := axeSource(ctx)
	if err != nil {
		return nil, err
	}
	sctx, cancel := b.stepCtx()
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	// Runtime.evaluate runs outside the page's Content-Security-Policy, as
	// the DevTools console does, so a strict policy does not stop axe.
	loaded, err := chromedp.Run(sctx, chromedp.Evaluate[bool](`typeof window.axe === "object"`))
	if err != nil {
		return nil, fmt.Errorf("axe: %w", err)
	}
	if !loaded {
		if _, err := chromedp.Run(sctx, chromedp.Evaluate[chromedp.Void](src)); err != nil {
			return nil, fmt.Errorf("axe: injecting axe.min.js: %w", err)
		}
	}
	tags, _ := json.Marshal(axeTags)
	vs, err := chromedp.Run(sctx, chromedp.Evaluate[[]axeViolation](`axe.run(document, {
		runOnly: {type: "tag", values: `+string(tags)+`},
		resultTypes: ["violations"],
	}).then(r => r.violations.map(v => ({
		id: v.id, impact: v.impact || "", help: v.help, helpUrl: v.helpUrl,
		nodes: v.nodes.map(n => ({
			target: n.target.map(s => Array.isArray(s) ? s.join(" >>> ") : String(s)),
			html: n.html, failureSummary: n.failureSummary || "",
		})),
	})))`, chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, fmt.Errorf("axe: axe.run: %w", err)
	}
	return vs, nil
}

// axeScript is axe.min.js, read once per test binary.
var axeScript struct {
	mu  sync.Mutex
	src string
}

// axeSource returns axe.min.js from e2e/axe/node_modules, running
// `npm ci --no-audit --no-fund` there first when node_modules is missing or
// older than package-lock.json. As in internal/tsinterop, a lock file
// serialises the install across parallel test binaries, and a missing npm is
// an error.
func axeSource(ctx context.Context) (string, error) {
	axeScript.mu.Lock()
	defer axeScript.mu.Unlock()
	if axeScript.src != "" {
		return axeScript.src, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("axe: %w", err)
	}
	dir := filepath.Join(root, "e2e", "axe")
	lock, err := os.OpenFile(filepath.Join(dir, ".ensure.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("axe: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("axe: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	lockInfo, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return "", fmt.Errorf("axe: %w", err)
	}
	// npm writes node_modules/.package-lock.json last on every install.
	stamp, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil || stamp.ModTime().Before(lockInfo.ModTime()) {
		if _, err := exec.LookPath("npm"); err != nil {
			return "", fmt.Errorf("axe: npm is not on PATH; the browser tests install axe-core with Node.js (v20) and npm: %w", err)
		}
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("axe: npm ci in %s: %w\n%s", dir, err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		return "", fmt.Errorf("axe: %w", err)
	}
	axeScript.src = string(b)
	return axeScript.src, nil
}

// harnessPages are the self-test's pages: one that passes WCAG 2.1 AA and
// one with an unlabelled field and grey-on-white text. They are served with
// a strict Content-Security-Policy, as a resident portal's would be.
var harnessPages = map[string]string{
	"/good": `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Harness: good</title><link rel="stylesheet" href="/style.css"></head>
<body><main>
<h1>Register a resident</h1>
<form method="post" action="/good">
<label for="name">Full name</label>
<input id="name" name="name" autocomplete="name">
<button type="submit">Register</button>
</form>
<p id="note">All fields are kept off the chain.</p>
</main></body></html>`,
	"/bad": `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Harness: bad</title><link rel="stylesheet" href="/style.css"></head>
<body><main>
<h1>Register a resident</h1>
<form method="post" action="/bad">
<input id="name" name="name">
<button type="submit">Register</button>
</form>
<p class="faint">All fields are kept off the chain.</p>
</main></body></html>`,
	"/style.css": `body { font: 16px/1.5 sans-serif; color: #1a1a1a; background: #fff; margin: 1rem; }
input, button { font: inherit; padding: .5rem; margin: .25rem 0; display: block; }
.faint { color: #c8c8c8; }
`,
}

func harnessServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			w.WriteHeader(http.StatusNoContent) // not a console error
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == "/good" {
			// Post, redirect, get: as the portal's forms answer.
			http.Redirect(w, r, "/done?name="+url.QueryEscape(r.PostFormValue("name")), http.StatusSeeOther)
			return
		}
		if r.URL.Path == "/done" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Done</title></head>
<body><main><h1>Registered</h1><p id="who">%s is registered.</p></main></body></html>`, html.EscapeString(r.FormValue("name")))
			return
		}
		body, ok := harnessPages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		ct := "text/html; charset=utf-8"
		if strings.HasSuffix(r.URL.Path, ".css") {
			ct = "text/css; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Security-Policy", "default-src 'self'; form-action 'self'; frame-ancestors 'none'")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestBrowserHarness checks the browser helpers themselves: Chromium starts,
// pages load, screenshots are PNG files, axe passes an accessible page and
// catches an inaccessible one, the keyboard moves the focus, a form posts and
// follows its redirect, and a phone tab has a phone's width.
func TestBrowserHarness(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := harnessServer(t)
	b := newBrowser(t, ctx, desktopViewport)

	if code := b.navigate(t, srv.URL+"/good"); code != http.StatusOK {
		t.Fatalf("GET /good: status %d", code)
	}
	if got, want := b.textOf(t, "h1"), "Register a resident"; got != want {
		t.Errorf("h1 = %q, want %q", got, want)
	}
	p := b.shot(t, "good")
	if png, err := os.ReadFile(p); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot %s is not a PNG file (%v)", p, err)
	}
	b.axe(t, ctx, "good")

	before := b.focused(t)
	b.run(t, chromedp.KeyEvent("\t"))
	after := b.focused(t)
	if after == before {
		t.Errorf("Tab left the focus on %s", before)
	}
	if want := "input#name[name=name]"; after != want {
		t.Errorf("after one Tab the focus is on %s, want %s (the first field)", after, want)
	}

	b.run(t, chromedp.SendKeys(chromedp.CSS("#name"), "Ada Lovelace"))
	if code := b.clickAndLoad(t, "button[type=submit]"); code != http.StatusOK {
		t.Errorf("submitting the form: status %d", code)
	}
	if got, want := b.waitText(t, "#who", "is registered"), "Ada Lovelace is registered."; got != want {
		t.Errorf("after the form: %q, want %q", got, want)
	}
	b.waitGone(t, "form")

	b.navigate(t, srv.URL+"/bad")
	vs, err := b.axeRun(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, v := range vs {
		if v.blocking() {
			found[v.ID] = true
		}
	}
	for _, rule := range []string{"label", "color-contrast"} {
		if !found[rule] {
			t.Errorf("axe did not report %s as serious or critical on /bad; it reported %v", rule, vs)
		}
	}

	ph := b.phone(t)
	ph.navigate(t, srv.URL+"/good")
	ph.waitVisible(t, "#name")
	ph.waitText(t, "#note", "off the chain")
	if w := runValue(t, ph, "read the width", chromedp.Evaluate[int](`window.innerWidth`)); w != int(phoneViewport.width) {
		t.Errorf("phone tab is %d px wide, want %d", w, phoneViewport.width)
	}
	ph.shot(t, "good-phone")
	ph.axe(t, ctx, "good-phone")
	if errs := append(b.console.errors(), ph.console.errors()...); len(errs) > 0 {
		t.Errorf("console errors: %q", errs)
	}
}
