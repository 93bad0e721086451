package authn

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/pseudonym"
)

const aud = "did:imi:node-test"

// resident is a fake ledger of one resident with a DID and a pseudonym, and
// one deactivated DID.
type resident struct {
	didKey, psnKey, goneKey key.Private
	did, psn, gone          string
	clk                     *fakeClock
	s                       *Sessions
}

func newResident(t *testing.T) *resident {
	t.Helper()
	r := &resident{didKey: seedKey(t, 10), psnKey: seedKey(t, 11), goneKey: seedKey(t, 12), clk: newClock()}
	r.did = did.FromKey(r.didKey.Public()).String()
	r.psn = pseudonym.FromKey(r.psnKey.Public()).String()
	r.gone = did.FromKey(r.goneKey.Public()).String()
	r.s = &Sessions{Now: r.clk.Now, Resolve: func(subject string) (key.Public, error) {
		if pseudonym.Is(subject) {
			id, err := pseudonym.Parse(subject)
			return id.Key(), err
		}
		switch subject {
		case r.did:
			return r.didKey.Public(), nil
		case r.gone:
			return key.Public{}, errors.New("the DID is deactivated")
		}
		return key.Public{}, fmt.Errorf("no DID %s", subject)
	}}
	return r
}

func (r *resident) challenge(t *testing.T) Challenge {
	t.Helper()
	c, err := r.s.Challenge(aud)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *resident) signIn(t *testing.T) string {
	t.Helper()
	c := r.challenge(t)
	tok, _, err := r.s.SignIn(c.ID, []Proof{WalletProof(c, r.did, r.didKey)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSignIn(t *testing.T) {
	r := newResident(t)
	other := seedKey(t, 99)
	for _, tc := range []struct {
		name   string
		proofs func(c Challenge) []Proof
		want   error
	}{
		{"DID", func(c Challenge) []Proof { return []Proof{WalletProof(c, r.did, r.didKey)} }, nil},
		{"pseudonym", func(c Challenge) []Proof { return []Proof{WalletProof(c, r.psn, r.psnKey)} }, nil},
		{"DID and pseudonym", func(c Challenge) []Proof {
			return []Proof{WalletProof(c, r.did, r.didKey), WalletProof(c, r.psn, r.psnKey)}
		}, nil},
		{"DID with a wrong key", func(c Challenge) []Proof { return []Proof{WalletProof(c, r.did, other)} }, ErrBadSignature},
		{"pseudonym with a wrong key", func(c Challenge) []Proof { return []Proof{WalletProof(c, r.psn, other)} }, ErrBadSignature},
		{"one of two proofs wrong", func(c Challenge) []Proof {
			return []Proof{WalletProof(c, r.did, r.didKey), WalletProof(c, r.psn, r.didKey)}
		}, ErrBadSignature},
		{"deactivated DID", func(c Challenge) []Proof { return []Proof{WalletProof(c, r.gone, r.goneKey)} }, ErrBadSignature},
		{"unknown DID", func(c Challenge) []Proof {
			return []Proof{WalletProof(c, did.FromKey(other.Public()).String(), other)}
		}, ErrBadSignature},
		{"wrong audience", func(c Challenge) []Proof {
			c.Audience = "did:imi:another-node"
			return []Proof{WalletProof(c, r.did, r.didKey)}
		}, ErrBadSignature},
		{"wrong nonce", func(c Challenge) []Proof {
			c.Nonce = strings.Repeat("A", len(c.Nonce))
			return []Proof{WalletProof(c, r.did, r.didKey)}
		}, ErrBadSignature},
		{"signed for another subject", func(c Challenge) []Proof {
			p := WalletProof(c, r.psn, r.psnKey)
			p.Subject = pseudonym.FromKey(r.didKey.Public()).String()
			return []Proof{p}
		}, ErrBadSignature},
		{"no signature", func(c Challenge) []Proof { return []Proof{{Subject: r.did}} }, ErrBadSignature},
		{"no proofs", func(c Challenge) []Proof { return nil }, ErrMalformed},
		{"too many proofs", func(c Challenge) []Proof {
			var ps []Proof
			for i := range MaxPrincipals + 1 {
				k := seedKey(t, byte(100+i))
				ps = append(ps, WalletProof(c, pseudonym.FromKey(k.Public()).String(), k))
			}
			return ps
		}, ErrMalformed},
		{"same subject twice", func(c Challenge) []Proof {
			p := WalletProof(c, r.did, r.didKey)
			return []Proof{p, p}
		}, ErrMalformed},
		{"subject not a DID", func(c Challenge) []Proof { return []Proof{WalletProof(c, "alice", r.didKey)} }, ErrMalformed},
		{"malformed pseudonym", func(c Challenge) []Proof { return []Proof{WalletProof(c, "psn:abc", r.didKey)} }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := r.challenge(t)
			proofs := tc.proofs(c)
			tok, got, err := r.s.SignIn(c.ID, proofs)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("SignIn: %v, want %v", err, tc.want)
			}
			if err != nil {
				if tok != "" || got != nil {
					t.Errorf("SignIn returned %q, %v with an error", tok, got)
				}
				return
			}
			var want []string
			for _, p := range proofs {
				want = append(want, p.Subject)
			}
			if !slices.Equal(got, want) {
				t.Errorf("principals = %v, want %v", got, want)
			}
			if len(tok) != tokenLen {
				t.Errorf("token %q has %d characters, want %d", tok, len(tok), tokenLen)
			}
			if p, err := r.s.Principals(tok); err != nil || !slices.Equal(p, want) {
				t.Errorf("Principals = %v, %v; want %v", p, err, want)
			}
		})
	}
}

func TestChallengeIsUsedOnce(t *testing.T) {
	r := newResident(t)
	good := func(c Challenge) []Proof { return []Proof{WalletProof(c, r.did, r.didKey)} }

	t.Run("after success", func(t *testing.T) {
		c := r.challenge(t)
		if _, _, err := r.s.SignIn(c.ID, good(c)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.s.SignIn(c.ID, good(c)); !errors.Is(err, ErrNoChallenge) {
			t.Errorf("second sign-in: %v, want ErrNoChallenge", err)
		}
	})
	t.Run("after failure", func(t *testing.T) {
		c := r.challenge(t)
		if _, _, err := r.s.SignIn(c.ID, []Proof{WalletProof(c, r.did, r.psnKey)}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("first sign-in: %v, want ErrBadSignature", err)
		}
		if _, _, err := r.s.SignIn(c.ID, good(c)); !errors.Is(err, ErrNoChallenge) {
			t.Errorf("second sign-in: %v, want ErrNoChallenge", err)
		}
	})
	t.Run("after malformed proofs", func(t *testing.T) {
		c := r.challenge(t)
		if _, _, err := r.s.SignIn(c.ID, nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("first sign-in: %v, want ErrMalformed", err)
		}
		if _, _, err := r.s.SignIn(c.ID, good(c)); !errors.Is(err, ErrNoChallenge) {
			t.Errorf("second sign-in: %v, want ErrNoChallenge", err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		c := r.challenge(t)
		c.ID = strings.Repeat("A", len(c.ID))
		if _, _, err := r.s.SignIn(c.ID, good(c)); !errors.Is(err, ErrNoChallenge) {
			t.Errorf("sign-in: %v, want ErrNoChallenge", err)
		}
	})
	t.Run("another node's", func(t *testing.T) {
		c := r.challenge(t)
		other := &Sessions{Now: r.clk.Now, Resolve: r.s.Resolve}
		if _, _, err := other.SignIn(c.ID, good(c)); !errors.Is(err, ErrNoChallenge) {
			t.Errorf("sign-in at another node: %v, want ErrNoChallenge", err)
		}
	})
}

func TestChallengeExpires(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  error
	}{
		{0, nil},
		{ChallengeLife - time.Second, nil},
		{ChallengeLife, ErrNoChallenge},
		{time.Hour, ErrNoChallenge},
	} {
		t.Run(tc.after.String(), func(t *testing.T) {
			r := newResident(t)
			c := r.challenge(t)
			if !c.Expires.Equal(t0.Add(ChallengeLife)) {
				t.Errorf("Expires = %v, want %v", c.Expires, t0.Add(ChallengeLife))
			}
			r.clk.Add(tc.after)
			_, _, err := r.s.SignIn(c.ID, []Proof{WalletProof(c, r.did, r.didKey)})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("SignIn %s after the challenge: %v, want %v", tc.after, err, tc.want)
			}
		})
	}
}

func TestChallengeRefusesAudience(t *testing.T) {
	s := &Sessions{}
	for _, a := range []string{"", "node\x00did:imi:x"} {
		if _, err := s.Challenge(a); err == nil {
			t.Errorf("Challenge(%q) succeeded", a)
		}
	}
}

func TestSessionLifetime(t *testing.T) {
	const ttl, max = 15 * time.Minute, 12 * time.Hour
	for _, tc := range []struct {
		name string
		uses []time.Duration // times after sign-in at which Principals is called
		want error           // of the last call
	}{
		{"fresh", []time.Duration{0}, nil},
		{"just within idle timeout", []time.Duration{ttl - time.Second}, nil},
		{"idle timeout", []time.Duration{ttl}, ErrNoSession},
		{"use restarts the idle timer", []time.Duration{10 * time.Minute, 20 * time.Minute, 30 * time.Minute}, nil},
		{"idle after use", []time.Duration{10 * time.Minute, 10*time.Minute + ttl}, ErrNoSession},
		{"used until the absolute lifetime", everyUntil(10*time.Minute, max-time.Second), nil},
		{"absolute lifetime", everyUntil(10*time.Minute, max), ErrNoSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newResident(t)
			tok := r.signIn(t)
			var err error
			for _, d := range tc.uses {
				r.clk.Set(t0.Add(d))
				if _, err = r.s.Principals(tok); err != nil {
					break
				}
			}
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("Principals at %s: %v, want %v", r.clk.Now().Sub(t0), err, tc.want)
			}
			if err != nil {
				if _, err := r.s.Principals(tok); !errors.Is(err, ErrNoSession) {
					t.Errorf("an expired session came back: %v", err)
				}
			}
		})
	}
}

// everyUntil returns step, 2*step, … up to and including last.
func everyUntil(step, last time.Duration) []time.Duration {
	var ds []time.Duration
	for d := step; d < last; d += step {
		ds = append(ds, d)
	}
	return append(ds, last)
}

func TestSessionConfiguredLifetime(t *testing.T) {
	r := newResident(t)
	r.s.TTL, r.s.Max = time.Minute, 3*time.Minute
	tok := r.signIn(t)
	for _, d := range []time.Duration{50 * time.Second, 100 * time.Second, 150 * time.Second} {
		r.clk.Set(t0.Add(d))
		if _, err := r.s.Principals(tok); err != nil {
			t.Fatalf("at %s: %v", d, err)
		}
	}
	r.clk.Set(t0.Add(3 * time.Minute))
	if _, err := r.s.Principals(tok); !errors.Is(err, ErrNoSession) {
		t.Errorf("at Max: %v, want ErrNoSession", err)
	}
}

func TestSessionEnd(t *testing.T) {
	r := newResident(t)
	tok, other := r.signIn(t), r.signIn(t)
	if tok == other {
		t.Fatal("two sign-ins got the same token")
	}
	r.s.End(tok)
	r.s.End(tok)             // ending twice is harmless
	r.s.End("not-a-session") // so is ending nothing
	if _, err := r.s.Principals(tok); !errors.Is(err, ErrNoSession) {
		t.Errorf("after End: %v, want ErrNoSession", err)
	}
	if _, err := r.s.Principals(other); err != nil {
		t.Errorf("another session after End: %v", err)
	}
}

func TestPrincipalsRefusesUnknownTokens(t *testing.T) {
	r := newResident(t)
	tok := r.signIn(t)
	for _, bad := range []string{"", "x", tok[:len(tok)-1], tok + "A", strings.Repeat("A", len(tok))} {
		if _, err := r.s.Principals(bad); !errors.Is(err, ErrNoSession) {
			t.Errorf("Principals(%q): %v, want ErrNoSession", bad, err)
		}
	}
}

func TestSessionsHoldNoTokens(t *testing.T) {
	r := newResident(t)
	tok := r.signIn(t)
	if s := fmt.Sprintf("%+v", r.s.sessions.m); strings.Contains(s, tok) {
		t.Errorf("the session table holds the token: %s", s)
	}
}

func TestPrincipalsReturnsACopy(t *testing.T) {
	r := newResident(t)
	tok := r.signIn(t)
	p, _ := r.s.Principals(tok)
	p[0] = "changed"
	if q, _ := r.s.Principals(tok); q[0] != r.did {
		t.Errorf("Principals = %v after the caller changed its copy", q)
	}
}

func TestSessionsBusyRatherThanForget(t *testing.T) {
	r := newResident(t)
	r.s.maxLen = 2
	toks := []string{r.signIn(t), r.signIn(t)}
	c := r.challenge(t)
	if _, _, err := r.s.SignIn(c.ID, []Proof{WalletProof(c, r.did, r.didKey)}); !errors.Is(err, ErrBusy) {
		t.Errorf("a third session: %v, want ErrBusy", err)
	}
	for _, tok := range toks {
		if _, err := r.s.Principals(tok); err != nil {
			t.Errorf("a session was forgotten: %v", err)
		}
	}
	r.s.End(toks[0])
	r.signIn(t)

	// Challenges are bounded too, and expired ones are swept to make room.
	for range 2 {
		r.challenge(t)
	}
	if _, err := r.s.Challenge(aud); !errors.Is(err, ErrBusy) {
		t.Errorf("a third open challenge: %v, want ErrBusy", err)
	}
	r.clk.Add(ChallengeLife)
	r.challenge(t)
	if n := len(r.s.challenges.m); n != 1 {
		t.Errorf("%d challenges open after the sweep, want 1", n)
	}
}

func TestProofJSON(t *testing.T) {
	r := newResident(t)
	c := r.challenge(t)
	p := WalletProof(c, r.did, r.didKey)
	b, err := json.Marshal([]Proof{p})
	if err != nil {
		t.Fatal(err)
	}
	var back []Proof
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.s.SignIn(c.ID, back); err != nil {
		t.Errorf("sign-in with proofs that went through JSON: %v", err)
	}
	if strings.ContainsAny(string(b), "+/=") {
		t.Errorf("signature is not unpadded base64url: %s", b)
	}

	sig, _ := p.Sig.MarshalText()
	for _, bad := range []string{
		"",
		string(sig[:len(sig)-1]),
		string(sig) + "==",
		strings.NewReplacer("-", "+", "_", "/").Replace(string(sig)),
		"AAAA",
	} {
		var q Proof
		in := `{"subject":"` + r.did + `","sig":"` + bad + `"}`
		if err := json.Unmarshal([]byte(in), &q); !errors.Is(err, ErrMalformed) && bad != string(sig) {
			t.Errorf("Unmarshal(%s): %v, want ErrMalformed", in, err)
		}
	}

	cb, _ := json.Marshal(c)
	var fields map[string]any
	if err := json.Unmarshal(cb, &fields); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "nonce", "aud", "expires"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("challenge JSON %s has no %q", cb, f)
		}
	}
}

func TestChallengeSignBytes(t *testing.T) {
	c := Challenge{ID: "id", Nonce: "nonce", Audience: "did:imi:node", Expires: t0}
	const want = "imi/v1/sign-in\x00id\x00nonce\x00did:imi:node\x00psn:x"
	if got := string(ChallengeSignBytes(c, "psn:x")); got != want {
		t.Errorf("ChallengeSignBytes = %q, want %q", got, want)
	}
}

func TestChallengeConcurrentSignIn(t *testing.T) {
	r := newResident(t)
	c := r.challenge(t)
	proofs := []Proof{WalletProof(c, r.did, r.didKey)}
	errs := make(chan error, 50)
	for range 50 {
		go func() {
			_, _, err := r.s.SignIn(c.ID, proofs)
			errs <- err
		}()
	}
	ok := 0
	for range 50 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case !errors.Is(err, ErrNoChallenge):
			t.Errorf("SignIn: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d sign-ins with one challenge succeeded, want 1", ok)
	}
}
