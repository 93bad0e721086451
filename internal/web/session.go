package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

const (
	sessionCookie = "__Host-imi_session"
	langCookie    = "imi_lang"
	// maxSessions bounds the memory sessions take; the oldest idle ones go
	// first when it is reached.
	maxSessions = 200_000
	// formsPerSession bounds the open one-time form tokens of one session
	// (tabs left open); the oldest are forgotten first.
	formsPerSession = 64
	idLen           = 16
	keyLen          = 32
)

// session is one browser's session. A resident's unlocked wallet is kept
// sealed under a key only the browser's cookie carries, so the node's memory
// alone does not open it.
type session struct {
	mu       sync.Mutex
	id       string
	seen     time.Time
	forms    []string        // open one-time form tokens, oldest first
	used     map[string]bool // spent tokens, to tell a replay from a forgery
	usedList []string
	flash    string // a catalogue key shown once on the next page
	opened   int    // applications this session opened

	resident *residentSession
	staff    *StaffAccount
}

type tokenState uint8

const (
	tokenOK tokenState = iota
	tokenUnknown
	tokenReplayed
)

// newToken issues a one-time form token.
func (s *session) newToken() string {
	t := randomText(16)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.forms) >= formsPerSession {
		s.forms = s.forms[1:]
	}
	s.forms = append(s.forms, t)
	return t
}

// useToken spends t. Comparing in constant time keeps a token from being
// guessed a byte at a time.
func (s *session) useToken(t string) tokenState {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.forms {
		if subtle.ConstantTimeCompare([]byte(f), []byte(t)) == 1 {
			s.forms = append(s.forms[:i:i], s.forms[i+1:]...)
			if s.used == nil {
				s.used = map[string]bool{}
			}
			if len(s.usedList) >= formsPerSession*4 {
				delete(s.used, s.usedList[0])
				s.usedList = s.usedList[1:]
			}
			s.used[t] = true
			s.usedList = append(s.usedList, t)
			return tokenOK
		}
	}
	if t != "" && s.used[t] {
		return tokenReplayed
	}
	return tokenUnknown
}

func (s *session) setFlash(k string) { s.mu.Lock(); s.flash = k; s.mu.Unlock() }

func (s *session) takeFlash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = ""
	return f
}

// sessions is the in-memory session table. A node restart signs everyone
// out, which is the safe direction.
type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	now  func() time.Time
	idle time.Duration
	max  int // maxSessions; smaller in tests
}

func newSessions(now func() time.Time, idle time.Duration) *sessions {
	return &sessions{m: map[string]*session{}, now: now, idle: idle, max: maxSessions}
}

// fromRequest finds the session the cookie names. expired says a cookie
// came whose session is gone, so the page can say why.
func (ss *sessions) fromRequest(r *http.Request) (s *session, k []byte, expired bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(raw) != idLen+keyLen {
		return nil, nil, true
	}
	id := string(raw[:idLen])
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s = ss.m[id]
	if s == nil {
		return nil, nil, true
	}
	if now.Sub(s.seen) >= ss.idle {
		delete(ss.m, id)
		s.wipe()
		return nil, nil, true
	}
	s.seen = now
	return s, raw[idLen:], false
}

// start makes a new session, ending old (its id is never reused, so a
// session fixed before sign-in is worthless after it), and sets its cookie.
// init, when given, fills the new session (who signed in) before any other
// request can see it, so those fields never change afterwards; if it fails,
// nothing is started. Everything the old session knew is dropped but its
// form tokens, so a page that was open in another tab can still be sent
// once, and a form sent again is still recognised as a replay.
func (ss *sessions) start(w http.ResponseWriter, old *session, init func(s *session, key []byte) error) (*session, []byte, error) {
	raw := make([]byte, idLen+keyLen)
	if _, err := rand.Read(raw); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	s := &session{id: string(raw[:idLen]), seen: ss.now()}
	if init != nil {
		if err := init(s, raw[idLen:]); err != nil {
			return nil, nil, err
		}
	}
	if old != nil {
		old.mu.Lock()
		s.forms = append(s.forms, old.forms...)
		s.usedList = append(s.usedList, old.usedList...)
		s.used = maps.Clone(old.used)
		old.mu.Unlock()
	}
	ss.mu.Lock()
	if old != nil {
		delete(ss.m, old.id)
	}
	if len(ss.m) >= ss.max {
		ss.sweepLocked()
	}
	ss.m[s.id] = s
	ss.mu.Unlock()
	if old != nil {
		old.wipe()
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: base64.RawURLEncoding.EncodeToString(raw), Path: "/",
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	return s, raw[idLen:], nil
}

// end forgets s and clears the cookie.
func (ss *sessions) end(w http.ResponseWriter, s *session) {
	if s != nil {
		ss.mu.Lock()
		delete(ss.m, s.id)
		ss.mu.Unlock()
		s.wipe()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// sweepLocked makes room: it drops idle sessions, then the least recently
// seen of the anonymous ones (a visitor on a sign-in page loses only a form
// token), and only if that is not enough the least recently seen signed-in
// ones, down to nine tenths of the cap. Sorting once per tenth keeps a flood
// of new visitors from costing a scan per request.
func (ss *sessions) sweepLocked() {
	now := ss.now()
	var anon, known []*session
	for id, s := range ss.m {
		switch {
		case now.Sub(s.seen) >= ss.idle:
			delete(ss.m, id)
			s.wipe() // brief; sessions never take ss.mu while holding s.mu
		case s.resident == nil && s.staff == nil:
			anon = append(anon, s)
		default:
			known = append(known, s)
		}
	}
	target := ss.max - ss.max/10
	for _, group := range [][]*session{anon, known} {
		if len(ss.m) <= target {
			return
		}
		slices.SortFunc(group, func(a, b *session) int { return a.seen.Compare(b.seen) })
		for _, s := range group {
			if len(ss.m) <= target {
				return
			}
			delete(ss.m, s.id)
			s.wipe()
		}
	}
}

// wipe clears what a session keeps of a wallet. Its fields stay (a request
// still running may read them), but its wallets no longer open.
func (s *session) wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resident != nil {
		clear(s.resident.blob)
		if s.resident.ward != nil {
			clear(s.resident.ward.blob)
		}
	}
}

// wardOf returns the ward a guardian is acting for, nil if none.
func (s *session) wardOf() *wardSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resident == nil {
		return nil
	}
	return s.resident.ward
}

// setWard starts (w) or stops (nil) acting for a ward.
func (s *session) setWard(w *wardSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.resident.ward; old != nil {
		clear(old.blob)
	}
	s.resident.ward = w
}

// anonymous returns r's session, starting one for a visitor who has none,
// so a sign-in form can carry a one-time token too.
func (p *Portal) anonymous(w http.ResponseWriter, r *request) *session {
	if r.sess == nil {
		r.sess, r.key, _ = p.sessions.start(w, nil, nil)
	}
	return r.sess
}

// limiter is a token bucket per client address for sign-in attempts: a
// bucket of burst attempts refilled at one per refill.
type limiter struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets map[string]*bucket
	burst   float64
	refill  time.Duration
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(now func() time.Time) *limiter {
	// Generous per address, since a service centre's counters or a family
	// share one; an account locks after five wrong passphrases anyway.
	// This slows one address trying many accounts.
	return &limiter{now: now, buckets: map[string]*bucket{}, burst: 30, refill: time.Second}
}

// allow takes one attempt from the bucket of client host.
func (l *limiter) allow(host string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) > 100_000 {
		for k, b := range l.buckets {
			if now.Sub(b.at) > time.Duration(l.burst)*l.refill {
				delete(l.buckets, k)
			}
		}
	}
	b := l.buckets[host]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[host] = b
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.refill))
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func randomText(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
