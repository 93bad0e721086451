// Package web is the node's portal: server-rendered pages for residents (the
// hosted wallet), for the clerk at a service-centre counter and for an
// authority's caseworkers.
//
// The portal is a client of the node like the command line is: what it
// writes goes through the node's own API as transactions signed with keys
// it holds (the resident's, unlocked for a session, or the authority's), so
// nothing a page does bypasses the ledger's checks or the access log. Pages
// are plain HTML forms that work without JavaScript; one small script adds
// the ID-number check as a clerk types.
//
// Safety: sessions live in server memory behind a Secure, HttpOnly,
// SameSite=Strict cookie whose id changes at sign-in and which expires after
// IdleTimeout; every form carries a one-time token, so a forged or replayed
// form is refused; every page is no-store with a strict Content-Security-
// Policy; sign-in is rate-limited per address and per account. Nothing
// personal goes into a URL or a log line.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/hosted"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/service"
	"github.com/imi-city/imi/internal/wallet"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Config is the portal's configuration.
type Config struct {
	// App answers reads from the committed state.
	App *ledger.App
	// Node is a client of this node's own API; every write goes through it.
	Node *client.Client
	// Desk is the node's service desk (applications, back-office reads).
	Desk *service.Desk
	// Store is the node's off-chain store: hosted wallets live there.
	Store service.Store
	// Keys are the authority keys this node holds, by authority id.
	Keys map[string]key.Private
	// UniquenessKey is the registrars' HMAC key for the duplicate check; a
	// node without it runs no counter.
	UniquenessKey *key.HMAC
	// LookupKey keys the hash under which a hosted wallet is found from an
	// ID number; it never leaves this node.
	LookupKey key.HMAC
	// Staff are the accounts of counter clerks and caseworkers; StaffFile,
	// when set, is read at each staff sign-in instead, so an operator adds
	// an account (imi staff add) without restarting the node.
	Staff     []StaffAccount
	StaffFile string
	// WalletParams are the Argon2id costs of new hosted wallets.
	WalletParams wallet.Params
	// BehindProxy says the node is reached through a reverse proxy that
	// appends the client's address to X-Forwarded-For; rate limits then
	// count by that address instead of the proxy's.
	BehindProxy bool
	// IdleTimeout signs a session out after this long without a request.
	IdleTimeout time.Duration
	// Now is the wall clock, injected for tests (session expiry and rate
	// limits only; consent expiry is block time, on the ledger).
	Now func() time.Time
	Log *slog.Logger
}

// Portal serves the pages.
type Portal struct {
	cfg      Config
	log      *slog.Logger
	pages    map[string]*template.Template
	mux      *http.ServeMux
	wallets  *hosted.Wallets
	sessions *sessions
	limits   *limiter
	unlocks  chan struct{}
	tries    *tries
	assets   http.Handler

	mu sync.Mutex // serialises the counter's registrations

	staffCache staffCache

	dirMu     sync.Mutex
	dir       *directory // as of dirHeight
	dirHeight int64
}

// New builds the portal.
func New(cfg Config) (*Portal, error) {
	if cfg.App == nil || cfg.Node == nil || cfg.Store == nil {
		return nil, errors.New("web: App, Node and Store are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.WalletParams == (wallet.Params{}) {
		cfg.WalletParams = wallet.DefaultParams
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p := &Portal{cfg: cfg, log: cfg.Log, mux: http.NewServeMux(), wallets: &hosted.Wallets{Store: hosted.NewStore(cfg.Store), LookupKey: cfg.LookupKey, Params: cfg.WalletParams, Now: cfg.Now, MaxFailures: accountTries}}
	p.sessions = newSessions(cfg.Now, cfg.IdleTimeout)
	p.limits = newLimiter(cfg.Now)
	p.unlocks = make(chan struct{}, maxUnlocks)
	p.tries = &tries{now: cfg.Now, m: map[string]*tryCount{}}
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, err
	}
	p.assets = http.StripPrefix("/assets/", http.FileServer(http.FS(sub)))
	if p.pages, err = parsePages(); err != nil {
		return nil, err
	}
	p.routes()
	return p, nil
}

// parsePages parses each page with the shared layout and the partials:
// templates/_*.html hold blocks that several pages draw (each file one
// {{define}}), parsed into every page.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	partials, err := fs.Glob(templateFS, "templates/_*.html")
	if err != nil {
		return nil, err
	}
	shared, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, append([]string{"templates/layout.html"}, partials...)...)
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || strings.HasPrefix(base, "_") {
			continue
		}
		t, err := shared.Clone()
		if err == nil {
			t, err = t.ParseFS(templateFS, n)
		}
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", n, err)
		}
		out[base] = t
	}
	return out, nil
}

// route is one page handler and who may see it.
type route struct {
	pattern string
	who     role
	h       func(p *Portal, w http.ResponseWriter, r *request)
}

type role uint8

const (
	anyone role = iota
	resident
	counterStaff
	caseworker
)

var routeTable []route

func (p *Portal) routes() {
	p.mux.Handle("GET /assets/", p.assets)
	for _, rt := range routeTable {
		p.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, hr *http.Request) { p.serve(w, hr, rt) })
	}
}

// maxForm bounds a form body: the largest page form is well under it.
const maxForm = 64 << 10

// ServeHTTP serves the portal.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if !strings.HasPrefix(r.URL.Path, "/assets/") {
		h.Set("Cache-Control", "no-store")
	}
	p.mux.ServeHTTP(w, r)
}

// request is one page request with what the portal knows about its sender.
type request struct {
	*http.Request
	lang    string
	sess    *session
	key     []byte // the cookie's half of the session, opens the hosted wallet
	expired bool   // a session cookie came, but its session is gone
}

func (p *Portal) serve(w http.ResponseWriter, hr *http.Request, rt route) {
	r := &request{Request: hr, lang: langOf(hr)}
	if q := hr.URL.Query().Get("lang"); q == "zh" || q == "en" {
		// A link switches the language: remember it, and drop it from the URL.
		http.SetCookie(w, &http.Cookie{Name: langCookie, Value: q, Path: "/", MaxAge: 365 * 24 * 3600, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
		u := *hr.URL
		qs := u.Query()
		qs.Del("lang")
		u.RawQuery = qs.Encode()
		http.Redirect(w, hr, u.RequestURI(), http.StatusSeeOther)
		return
	}
	r.sess, r.key, r.expired = p.sessions.fromRequest(hr)
	if hr.Method == http.MethodPost {
		hr.Body = http.MaxBytesReader(w, hr.Body, maxForm)
		if err := hr.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				p.fail(w, r, http.StatusRequestEntityTooLarge, say("err.too_big"))
				return
			}
			p.fail(w, r, http.StatusBadRequest, say("err.bad_form"))
			return
		}
		if !sameOrigin(hr) {
			p.fail(w, r, http.StatusForbidden, say("err.cross_site"))
			return
		}
		if r.sess == nil {
			if r.expired {
				p.fail(w, r, http.StatusUnauthorized, say("err.session_expired"))
				return
			}
			p.fail(w, r, http.StatusForbidden, say("err.no_session"))
			return
		}
		switch r.sess.useToken(hr.PostFormValue("csrf")) {
		case tokenReplayed:
			p.fail(w, r, http.StatusConflict, say("err.replayed"))
			return
		case tokenUnknown:
			p.fail(w, r, http.StatusForbidden, say("err.forged"))
			return
		}
	}
	switch rt.who {
	case resident:
		if r.sess == nil || r.sess.resident == nil {
			p.needSignIn(w, r, "/signin")
			return
		}
	case counterStaff, caseworker:
		if r.sess != nil && r.sess.staff != nil && !p.stillStaff(r.sess.staff) {
			p.log.Info("a staff session ended: its account was removed or changed", "account", r.sess.staff.Name)
			p.sessions.end(w, r.sess)
			r.sess = nil
			p.fail(w, r, http.StatusUnauthorized, say("err.staff_changed"))
			return
		}
		if r.sess == nil || r.sess.staff == nil || !r.sess.staff.may(rt.who) {
			if r.sess != nil && r.sess.staff != nil {
				p.fail(w, r, http.StatusForbidden, say("err.not_your_role"))
				return
			}
			p.needSignIn(w, r, "/staff/signin")
			return
		}
	}
	rt.h(p, w, r)
}

// needSignIn shows the sign-in page, saying why when a session ran out.
func (p *Portal) needSignIn(w http.ResponseWriter, r *request, to string) {
	if r.expired {
		p.fail(w, r, http.StatusUnauthorized, say("err.session_expired"))
		return
	}
	http.Redirect(w, r.Request, to, http.StatusSeeOther)
}

// sameOrigin refuses a form posted from another site: SameSite cookies and
// the one-time token already stop it; this is a cheap third line. A browser
// that says where the request came from (Sec-Fetch-Site) is believed;
// otherwise the Origin, when sent, must be this host.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	return strings.TrimPrefix(strings.TrimPrefix(o, "http://"), "https://") == r.Host
}

// background is for ledger writes a page waits on: they must not be cut
// short when the browser gives up, or a resident could be told nothing
// happened while a consent commits.
func background(r *request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), 60*time.Second)
}

// client names the sender of r for rate limits: the address the reverse
// proxy saw when there is one, and an IPv6 client by its /64, which one
// household or phone holds whole.
func (p *Portal) client(r *request) string {
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	if p.cfg.BehindProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			addr = strings.TrimSpace(parts[len(parts)-1])
		}
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	if ip.Is6() && !ip.Is4In6() {
		if pfx, err := ip.Prefix(64); err == nil {
			return pfx.String()
		}
	}
	return ip.Unmap().String()
}
