package authn

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/pseudonym"
)

const (
	signInLabel = "imi/v1/sign-in"
	// ChallengeLife is how long a sign-in challenge can be answered.
	ChallengeLife = 2 * time.Minute
	// DefaultTTL is how long a session lasts unused if Sessions.TTL is 0.
	DefaultTTL = 15 * time.Minute
	// DefaultMax is how long a session lasts at most if Sessions.Max is 0.
	DefaultMax = 12 * time.Hour
	// MaxPrincipals is how many subjects one sign-in may prove: a resident's
	// DID and the pseudonyms they hold towards the authorities at hand.
	MaxPrincipals = 16

	challengeIDSize = 16
	// challengeNonceSize and tokenSize give 256 bits, beyond guessing.
	challengeNonceSize = 32
	tokenSize          = 32
	// maxChallenges bounds the challenges open at once: about 2 000 sign-ins
	// a second for the two minutes each may stay open.
	maxChallenges = 1 << 18
	maxSessions   = 1 << 20
)

var tokenLen = b64.EncodedLen(tokenSize)

// Sessions holds the sign-in challenges and sessions of residents. Its zero
// value with Resolve set is ready to use; it must not be copied after first
// use. Sessions live in memory: a node restart signs everyone out.
type Sessions struct {
	// TTL is how long a session lasts without use; 0 means DefaultTTL.
	TTL time.Duration
	// Max is how long a session lasts however much it is used; 0 means
	// DefaultMax.
	Max time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Resolve returns the current key of a subject at sign-in: for a did:imi
	// DID the key on the ledger, with an error if the DID is unknown or
	// deactivated; for a psn: pseudonym the key it names.
	Resolve func(subject string) (key.Public, error)

	mu         sync.Mutex
	challenges *table[string, openChallenge]
	sessions   *table[[sha256.Size]byte, session] // by SHA-256 of the token
	maxLen     int                                // table size; 0 means the defaults (tests set it lower)
}

type openChallenge struct{ nonce, aud string }

type session struct {
	principals []string
	created    time.Time
}

// Challenge is what a resident's wallet signs to sign in. It is answered once
// and expires after ChallengeLife.
type Challenge struct {
	ID       string    `json:"id"`
	Nonce    string    `json:"nonce"`
	Audience string    `json:"aud"`
	Expires  time.Time `json:"expires"`
}

// Proof is a signature over a challenge by one subject's key.
type Proof struct {
	Subject string    `json:"subject"`
	Sig     Signature `json:"sig"`
}

// Signature is an Ed25519 signature whose text form is unpadded base64url.
type Signature []byte

// MarshalText implements encoding.TextMarshaler.
func (s Signature) MarshalText() ([]byte, error) {
	return []byte(b64.EncodeToString(s)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler. It accepts only the
// 86-character form of a 64-byte signature.
func (s *Signature) UnmarshalText(t []byte) error {
	if len(t) != sigTxtLen {
		return fmt.Errorf("%w: a signature is %d base64url characters without padding", ErrMalformed, sigTxtLen)
	}
	b, err := b64.DecodeString(string(t))
	if err != nil || len(b) != ed25519.SignatureSize {
		return fmt.Errorf("%w: a signature is %d base64url characters without padding", ErrMalformed, sigTxtLen)
	}
	*s = b
	return nil
}

// ChallengeSignBytes is what a wallet signs to prove subject for c. The node's
// identity (the audience) is inside, so a proof made for one node is refused by
// every other. Id and nonce are base64url and the subject a DID or pseudonym,
// none with a NUL, so NUL separates the fields without ambiguity.
func ChallengeSignBytes(c Challenge, subject string) []byte {
	return []byte(signInLabel + "\x00" + c.ID + "\x00" + c.Nonce + "\x00" + c.Audience + "\x00" + subject)
}

// WalletProof signs c for subject with k.
func WalletProof(c Challenge, subject string, k key.Private) Proof {
	return Proof{Subject: subject, Sig: k.Sign(ChallengeSignBytes(c, subject))}
}

func (s *Sessions) init() {
	if s.challenges != nil {
		return
	}
	nc, ns := maxChallenges, maxSessions
	if s.maxLen != 0 {
		nc, ns = s.maxLen, s.maxLen
	}
	s.challenges = newTable[string, openChallenge](nc)
	s.sessions = newTable[[sha256.Size]byte, session](ns)
}

// Challenge opens a one-time sign-in challenge for the node whose identity is
// aud.
func (s *Sessions) Challenge(aud string) (Challenge, error) {
	if aud == "" || strings.IndexByte(aud, 0) >= 0 {
		return Challenge{}, errors.New("couldn't open a sign-in challenge: the node's identity is empty or has a NUL byte")
	}
	var id [challengeIDSize]byte
	var nonce [challengeNonceSize]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Challenge{}, fmt.Errorf("couldn't open a sign-in challenge: %w", err)
	}
	if _, err := rand.Read(nonce[:]); err != nil {
		return Challenge{}, fmt.Errorf("couldn't open a sign-in challenge: %w", err)
	}
	now := clock(s.Now)
	c := Challenge{
		ID:       b64.EncodeToString(id[:]),
		Nonce:    b64.EncodeToString(nonce[:]),
		Audience: aud,
		Expires:  now.Add(ChallengeLife),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	if err := s.challenges.put(c.ID, openChallenge{nonce: c.Nonce, aud: aud}, c.Expires, now); err != nil {
		return Challenge{}, fmt.Errorf("%w: too many sign-ins are in progress; try again in a minute", err)
	}
	return c, nil
}

// SignIn answers the challenge challengeID with proofs, one for each subject
// the resident signs in as. The challenge is used up by this call whether or
// not it succeeds, so a failed answer cannot be retried or guessed at. If
// every proof verifies, SignIn returns a new session token and the proven
// subjects, in the order given.
func (s *Sessions) SignIn(challengeID string, proofs []Proof) (token string, principals []string, err error) {
	now := clock(s.Now)
	s.mu.Lock()
	s.init()
	c, _, ok := s.challenges.get(challengeID, now)
	s.challenges.del(challengeID)
	s.mu.Unlock()
	if !ok {
		return "", nil, fmt.Errorf("%w: it is unknown, already used or expired; ask for a new challenge and sign it within %s", ErrNoChallenge, ChallengeLife)
	}
	ch := Challenge{ID: challengeID, Nonce: c.nonce, Audience: c.aud}

	if len(proofs) == 0 || len(proofs) > MaxPrincipals {
		return "", nil, fmt.Errorf("%w: sign in with 1 to %d proofs, not %d", ErrMalformed, MaxPrincipals, len(proofs))
	}
	principals = make([]string, 0, len(proofs))
	for i, p := range proofs {
		for _, q := range proofs[:i] {
			if q.Subject == p.Subject {
				return "", nil, fmt.Errorf("%w: %s is proven twice; send one proof for each subject", ErrMalformed, clip(p.Subject))
			}
		}
	}
	for _, p := range proofs {
		if err := s.verifyProof(ch, p); err != nil {
			return "", nil, err
		}
		principals = append(principals, p.Subject)
	}

	var raw [tokenSize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, fmt.Errorf("couldn't make a session token: %w", err)
	}
	token = b64.EncodeToString(raw[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := session{principals: principals, created: now}
	if err := s.sessions.put(sha256.Sum256([]byte(token)), sess, s.deadline(sess, now), now); err != nil {
		return "", nil, fmt.Errorf("%w: too many residents are signed in; try again in a few minutes", err)
	}
	return token, clone(principals), nil
}

// verifyProof checks one proof against the subject's current key.
func (s *Sessions) verifyProof(c Challenge, p Proof) error {
	// The subject is parsed first: only a DID or a pseudonym may reach the
	// resolver, the signed bytes and a session.
	var own key.Public // a pseudonym's own key
	if pseudonym.Is(p.Subject) {
		id, err := pseudonym.Parse(p.Subject)
		if err != nil {
			return fmt.Errorf("%w: subject %q: %w", ErrMalformed, clip(p.Subject), err)
		}
		own = id.Key()
	} else if _, err := did.Parse(p.Subject); err != nil {
		return fmt.Errorf("%w: subject must be a did:imi DID or a psn: pseudonym: %w", ErrMalformed, err)
	}
	if s.Resolve == nil {
		return errors.New("sessions have no key resolver")
	}
	pub, err := s.Resolve(p.Subject)
	if err != nil {
		return fmt.Errorf("%w: %s has no current key on the ledger: %w", ErrBadSignature, p.Subject, err)
	}
	// A pseudonym is its key; a resolver that says otherwise is broken, and
	// trusting it would let another key sign for the pseudonym.
	if !own.IsZero() && !pub.Equal(own) {
		return fmt.Errorf("key resolver returned a key that is not the one %s names", p.Subject)
	}
	if !pub.Verify(ChallengeSignBytes(c, p.Subject), p.Sig) {
		return fmt.Errorf("%w: the proof for %s is not signed by its current key for this challenge and node; sign a new challenge with the wallet", ErrBadSignature, p.Subject)
	}
	return nil
}

// Principals returns the subjects of a session and restarts its idle timer.
func (s *Sessions) Principals(token string) ([]string, error) {
	if len(token) != tokenLen {
		return nil, noSession()
	}
	h := sha256.Sum256([]byte(token))
	now := clock(s.Now)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	sess, _, ok := s.sessions.get(h, now)
	if !ok {
		return nil, noSession()
	}
	until := s.deadline(sess, now)
	if !now.Before(until) { // Max shortened since the session began
		s.sessions.del(h)
		return nil, noSession()
	}
	if err := s.sessions.put(h, sess, until, now); err != nil {
		return nil, err // unreachable: the entry exists, so put does not grow the table
	}
	return clone(sess.principals), nil
}

// End ends a session; ending an unknown session does nothing.
func (s *Sessions) End(token string) {
	h := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.sessions.del(h)
}

// deadline is when sess ends if it is not used after now.
func (s *Sessions) deadline(sess session, now time.Time) time.Time {
	ttl, max := s.TTL, s.Max
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if max <= 0 {
		max = DefaultMax
	}
	idle, end := now.Add(ttl), sess.created.Add(max)
	if idle.Before(end) {
		return idle
	}
	return end
}

func noSession() error {
	return fmt.Errorf("%w: it is unknown, ended or expired; sign in again", ErrNoSession)
}

func clone(s []string) []string { return append([]string(nil), s...) }
