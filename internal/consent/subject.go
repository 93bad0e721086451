// Package consent is the off-chain half of consent: what a resident seals to
// each authority party to a grant, how an authority opens it, and how a wallet
// fills a service's form from verified credentials.
//
// On the ledger a resident is a pseudonym, one per authority, and a grant
// names no DID. Each authority party to a grant (the service's authority and
// every authority whose claims it covers) still needs to know whom the
// consent concerns, and to check a guardian's delegation. So the grant
// carries, per authority, a box sealed with HPKE to that authority's KEM key:
// inside are the resident's DID and a signature by the DID's key (and the
// guardian's, when a guardian acts). Only that authority can open its box,
// and the signatures tie the DID to this chain, pseudonym, service and
// authority, so a box cannot be replayed under another pseudonym or shown to
// another authority as evidence.
package consent

import (
	"errors"
	"fmt"
	"strings"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
)

const subjectLabel = "imi/v1/consent-subject"

// ErrBadSubject is returned by Subject.Check for a subject whose signatures
// do not verify or whose shape is wrong.
var ErrBadSubject = errors.New("consent subject does not check")

// Context binds a box to one grant so it cannot be moved to another grant,
// pseudonym, service or authority. Pseudonym is the resident's pseudonym
// towards the service's authority (the grant's signer); Authority is the
// authority the box is sealed to.
//
// The box is not bound to a grant's claims or mode: those are covered by the
// pseudonym's (and guardian's) transaction signatures, and only the holder of
// the pseudonym's key can put a box into a grant at all.
type Context struct {
	ChainID, Pseudonym, Service, Authority string
}

// check refuses empty fields and NUL bytes. The fields are joined with NUL in
// the signed bytes and the HPKE info; a NUL inside one would let two
// different contexts give the same bytes.
func (c Context) check() error {
	for _, f := range [...]struct{ name, v string }{
		{"chain id", c.ChainID}, {"pseudonym", c.Pseudonym}, {"service", c.Service}, {"authority", c.Authority},
	} {
		if f.v == "" {
			return fmt.Errorf("context has no %s", f.name)
		}
		if strings.IndexByte(f.v, 0) >= 0 {
			return fmt.Errorf("context %s contains a NUL byte", f.name)
		}
	}
	return nil
}

// join is the context fields separated by NUL.
func (c Context) join() string {
	return c.ChainID + "\x00" + c.Pseudonym + "\x00" + c.Service + "\x00" + c.Authority
}

// Subject is what a box holds: who the consent concerns and, when a guardian
// acts for them, who the guardian is.
type Subject struct {
	DID         string `json:"did"`
	DIDSig      []byte `json:"did_sig"`                // by the DID's current key over SubjectSignBytes(ctx, DID)
	Guardian    string `json:"guardian,omitempty"`     // guardian's DID when a guardian acts
	GuardianSig []byte `json:"guardian_sig,omitempty"` // by the guardian's DID key over SubjectSignBytes(ctx, Guardian)
}

// SubjectSignBytes is what a subject's signer signs:
// "imi/v1/consent-subject\x00" + ChainID + "\x00" + Pseudonym + "\x00" +
// Service + "\x00" + Authority + "\x00" + signer, where signer is the
// signer's DID. Naming the signer keeps a resident's signature from standing
// in for a guardian's and the other way round.
func SubjectSignBytes(ctx Context, signer string) []byte {
	return []byte(subjectLabel + "\x00" + ctx.join() + "\x00" + signer)
}

// NewSubject signs for the resident and, when guardianDID is not "", for the
// guardian too; pass a zero key.Private and "" to omit the guardian.
//
// NewSubject does not fail: a subject missing a key, or with a guardian key
// but no guardian DID, is refused by Seal.
func NewSubject(ctx Context, residentDID string, residentKey key.Private, guardianDID string, guardianKey key.Private) Subject {
	s := Subject{DID: residentDID}
	if !residentKey.IsZero() {
		s.DIDSig = residentKey.Sign(SubjectSignBytes(ctx, residentDID))
	}
	s.Guardian = guardianDID
	if !guardianKey.IsZero() {
		s.GuardianSig = guardianKey.Sign(SubjectSignBytes(ctx, guardianDID))
	}
	return s
}

// check verifies the shape of s: valid DIDs, 64-byte signatures, and a
// guardian either fully present or fully absent. Its messages name fields,
// never values, because Open reports them and values are plaintext.
func (s *Subject) check() error {
	if _, err := did.Parse(s.DID); err != nil {
		return errors.New("resident DID is not a did:imi identifier")
	}
	if len(s.DIDSig) != sigSize {
		return errors.New("resident signature is missing or not 64 bytes")
	}
	switch {
	case s.Guardian == "" && len(s.GuardianSig) != 0:
		return errors.New("guardian signature without a guardian")
	case s.Guardian == "":
		return nil
	}
	if _, err := did.Parse(s.Guardian); err != nil {
		return errors.New("guardian DID is not a did:imi identifier")
	}
	if s.Guardian == s.DID {
		return errors.New("resident is named as their own guardian")
	}
	if len(s.GuardianSig) != sigSize {
		return errors.New("guardian signature is missing or not 64 bytes")
	}
	return nil
}

const sigSize = 64

// Check verifies the signatures with the keys the caller resolved from the
// ledger: residentKey is the current key of s.DID, guardianKey that of
// s.Guardian, or the zero key.Public when s names no guardian. A guardian key
// given for a subject without a guardian is refused too: the caller expected
// a guardian to act. Every failure is ErrBadSubject.
func (s *Subject) Check(ctx Context, residentKey, guardianKey key.Public) error {
	if err := ctx.check(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSubject, err)
	}
	if err := s.check(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSubject, err)
	}
	if !residentKey.Verify(SubjectSignBytes(ctx, s.DID), s.DIDSig) {
		return fmt.Errorf("%w: resident signature does not verify", ErrBadSubject)
	}
	if s.Guardian == "" {
		if !guardianKey.IsZero() {
			return fmt.Errorf("%w: a guardian key was given but no guardian signed", ErrBadSubject)
		}
		return nil
	}
	if guardianKey.IsZero() {
		return fmt.Errorf("%w: a guardian signed but no guardian key was given", ErrBadSubject)
	}
	if !guardianKey.Verify(SubjectSignBytes(ctx, s.Guardian), s.GuardianSig) {
		return fmt.Errorf("%w: guardian signature does not verify", ErrBadSubject)
	}
	return nil
}
