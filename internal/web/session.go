package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"
)

const (
	sessionCookie = "imi_session"
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
}

func newSessions(now func() time.Time, idle time.Duration) *sessions {
	return &sessions{m: map[string]*session{}, now: now, idle: idle}
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
// Everything the old one knew is dropped but its form tokens, so a page
// that was open in another tab can still be sent once, and a form sent
// again is still recognised as a replay.
func (ss *sessions) start(w http.ResponseWriter, old *session) (*session, []byte) {
	raw := make([]byte, idLen+keyLen)
	if _, err := rand.Read(raw); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	s := &session{id: string(raw[:idLen]), seen: ss.now()}
	ss.mu.Lock()
	if old != nil {
		delete(ss.m, old.id)
		old.mu.Lock()
		s.forms = append(s.forms, old.forms...)
		s.usedList = append(s.usedList, old.usedList...)
		s.used = maps.Clone(old.used)
		old.mu.Unlock()
		old.wipe()
	}
	if len(ss.m) >= maxSessions {
		ss.sweepLocked()
	}
	ss.m[s.id] = s
	ss.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: base64.RawURLEncoding.EncodeToString(raw), Path: "/",
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	return s, raw[idLen:]
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

// sweepLocked drops idle sessions, and if none are idle the least recently
// seen tenth.
func (ss *sessions) sweepLocked() {
	now := ss.now()
	for id, s := range ss.m {
		if now.Sub(s.seen) >= ss.idle {
			delete(ss.m, id)
			s.wipe()
		}
	}
	for len(ss.m) >= maxSessions {
		var oldest *session
		for _, s := range ss.m {
			if oldest == nil || s.seen.Before(oldest.seen) {
				oldest = s
			}
		}
		delete(ss.m, oldest.id)
		oldest.wipe()
	}
}

func (s *session) wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resident != nil {
		clear(s.resident.blob)
		if s.resident.ward != nil {
			clear(s.resident.ward.blob)
		}
		s.resident = nil
	}
	s.staff = nil
}

// anonymous returns r's session, starting one for a visitor who has none,
// so a sign-in form can carry a one-time token too.
func (p *Portal) anonymous(w http.ResponseWriter, r *request) *session {
	if r.sess == nil {
		r.sess, r.key = p.sessions.start(w, nil)
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

// allow takes one attempt from addr's bucket.
func (l *limiter) allow(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
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
