// Package authn authenticates callers of a node's API: authorities by signing
// each request with their ledger key, residents by signing a challenge and
// holding a short-lived session.
//
// Both schemes sign with the same Ed25519 keys the ledger already knows, so a
// node needs no password database and no second set of secrets: a removed
// authority or a deactivated DID stops working at the next request or sign-in,
// because the key is looked up on the ledger each time.
//
// Nothing here keeps an unbounded amount of state. The replay cache, the open
// challenges and the sessions each have a fixed maximum; when one is full of
// live entries the node answers ErrBusy instead of forgetting an entry early,
// since forgetting a nonce would let a request be replayed.
package authn

import (
	"errors"
	"time"
)

// Errors that callers branch on. Each is returned wrapped, with detail that
// says what the caller can do about it.
var (
	// ErrNoSignature means the request carries no IMI-Signature header.
	ErrNoSignature = errors.New("request is not signed")
	// ErrMalformed means a header or sign-in proof is not in the documented form.
	ErrMalformed = errors.New("malformed authentication")
	// ErrUnknownAuthority means the signer is not a current authority on the ledger.
	ErrUnknownAuthority = errors.New("not a current authority")
	// ErrBadSignature means a signature does not verify under the signer's
	// current key.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrStale means a signed request's time is too far from the node's clock.
	ErrStale = errors.New("request time is outside the accepted window")
	// ErrReplay means the same signed request was already received.
	ErrReplay = errors.New("request was already received")
	// ErrBusy means the node holds as much authentication state as it may; the
	// caller should retry later.
	ErrBusy = errors.New("node is busy")
	// ErrNoChallenge means a sign-in challenge is unknown, used or expired.
	ErrNoChallenge = errors.New("no such sign-in challenge")
	// ErrNoSession means a session token is unknown, ended or expired.
	ErrNoSession = errors.New("no such session")
)

// sweepGap is the least time between two full sweeps of a table, so that a
// table near its maximum costs one pass over it per second, not one per call.
const sweepGap = time.Second

// table is a map of bounded size whose entries stop being valid at a deadline.
// Expired entries are dropped when looked up and, at most once per sweepGap,
// in a sweep when a new entry is added. It is not safe for concurrent use; its
// owner holds a lock.
type table[K comparable, V any] struct {
	max       int
	m         map[K]slot[V]
	lastSweep time.Time
	nextSweep time.Time // no entry expires before this, or lastSweep+sweepGap
}

type slot[V any] struct {
	v     V
	until time.Time // the entry is valid while now is before until
}

func newTable[K comparable, V any](max int) *table[K, V] {
	return &table[K, V]{max: max, m: make(map[K]slot[V])}
}

// get returns the entry for k if it is still valid at now.
func (t *table[K, V]) get(k K, now time.Time) (V, time.Time, bool) {
	s, ok := t.m[k]
	if !ok {
		var zero V
		return zero, time.Time{}, false
	}
	if !now.Before(s.until) {
		delete(t.m, k)
		var zero V
		return zero, time.Time{}, false
	}
	return s.v, s.until, true
}

// put adds or replaces the entry for k. It refuses with ErrBusy only if the
// table is full of entries still valid at now.
func (t *table[K, V]) put(k K, v V, until, now time.Time) error {
	if _, ok := t.m[k]; !ok {
		t.sweep(now)
		if len(t.m) >= t.max {
			return ErrBusy
		}
	}
	t.m[k] = slot[V]{v: v, until: until}
	if until.Before(t.nextSweep) {
		t.nextSweep = later(until, t.lastSweep.Add(sweepGap))
	}
	return nil
}

func (t *table[K, V]) del(k K) { delete(t.m, k) }

func (t *table[K, V]) sweep(now time.Time) {
	if now.Before(t.nextSweep) {
		return
	}
	var next time.Time
	for k, s := range t.m {
		if !now.Before(s.until) {
			delete(t.m, k)
		} else if next.IsZero() || s.until.Before(next) {
			next = s.until
		}
	}
	t.lastSweep = now
	t.nextSweep = later(next, now.Add(sweepGap))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func clock(now func() time.Time) time.Time {
	if now == nil {
		return time.Now()
	}
	return now()
}

// clip shortens s for an error message, so a long input does not fill a log.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
