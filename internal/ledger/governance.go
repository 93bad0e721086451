package ledger

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/tx"
)

// maxPower bounds one validator's voting power; CometBFT needs the total to
// stay far below 2^63.
const maxPower = 1000

// approved reports whether approvals from current authorities are more than
// two-thirds of all current authorities. Integer arithmetic: 3a > 2n.
func approved(approvals, current []string) bool {
	n := 0
	for _, a := range approvals {
		if slices.Contains(current, a) {
			n++
		}
	}
	return 3*n > 2*len(current)
}

func (x *txExec) propose(b *tx.Propose) *Rejection {
	a, rej := x.authority("")
	if rej != nil {
		return rej
	}
	if !referenceRe.MatchString(b.Reference) {
		return reject(CodeInvalidField, "the reference is a document number of at most 64 letters, digits and - _ . / : (no free text: it is stored on the chain)")
	}
	m := getMeta(x.st)
	if err := checkAction(x.st, m, b.Action, &b.Authority); err != nil {
		return reject(CodeProposalInvalid, err.Error())
	}
	m.NextProposal++
	p := &Proposal{
		ID: "p-" + strconv.FormatUint(m.NextProposal, 10), Proposer: a.ID, Action: b.Action,
		Authority: b.Authority, Reference: b.Reference, Approvals: []string{a.ID}, Status: ProposalPending,
		Created: x.c.at, Expires: x.c.at.Time.Add(ProposalLifetime),
	}
	putMeta(x.st, m)
	x.decide(p, m)
	putProposal(x.st, p)
	return nil
}

func (x *txExec) vote(b *tx.Vote) *Rejection {
	a, rej := x.authority("")
	if rej != nil {
		return rej
	}
	p := getProposal(x.st, b.Proposal)
	if p == nil {
		return reject(CodeNotFound, "no proposal "+clip(b.Proposal))
	}
	if p.Status == ProposalPending && !x.c.at.Time.Before(p.Expires) {
		p.Status, p.Outcome, p.Closed = ProposalExpired, "not approved before "+p.Expires.UTC().Format("2006-01-02 15:04 MST"), x.c.at
		putProposal(x.st, p)
		return nil // the vote is recorded as closing the proposal
	}
	if p.Status != ProposalPending {
		return reject(CodeProposalClosed, p.ID+" is "+p.Status)
	}
	if slices.Contains(p.Approvals, a.ID) {
		return reject(CodeAlreadyVoted, "")
	}
	p.Approvals = append(p.Approvals, a.ID)
	slices.Sort(p.Approvals)
	x.decide(p, getMeta(x.st))
	putProposal(x.st, p)
	return nil
}

// decide executes p once more than two-thirds approve. The state may have
// changed since p was proposed, so the action is checked again.
func (x *txExec) decide(p *Proposal, m *Meta) {
	if !approved(p.Approvals, m.Authorities) {
		return
	}
	p.Closed = x.c.at
	if err := checkAction(x.st, m, p.Action, &p.Authority); err != nil {
		p.Status, p.Outcome = ProposalFailed, err.Error()
		return
	}
	x.execute(p, m)
	p.Status, p.Outcome = ProposalExecuted, "carried out at height "+strconv.FormatInt(x.c.at.Height, 10)
}

func (x *txExec) execute(p *Proposal, m *Meta) {
	s := &p.Authority
	switch p.Action {
	case tx.ActionAddAuthority:
		a := authorityFromSpec(s, x.c.at)
		putAuthority(x.st, a)
		x.st.set([]byte(pAuthorityBy+a.DID), []byte(a.ID))
		x.st.set([]byte(pAuthorityGone+a.DID), nil)
		m.Authorities = append(m.Authorities, a.ID)
		slices.Sort(m.Authorities)
		putMeta(x.st, m)
		if a.Power > 0 {
			x.eff.validators = append(x.eff.validators, validatorChange{key: a.ValidatorKey, power: a.Power})
		}
	case tx.ActionRemoveAuthority:
		a := getAuthority(x.st, s.ID)
		x.st.set([]byte(pAuthority+a.ID), nil)
		x.st.set([]byte(pAuthorityBy+a.DID), nil)
		// The DID keeps resolving, as deactivated, so that what the
		// authority signed before can still be attributed.
		putJSON(x.st, []byte(pAuthorityGone+a.DID), RemovedAuthority{Authority: *a, Removed: x.c.at})
		m.Authorities = slices.DeleteFunc(m.Authorities, func(id string) bool { return id == a.ID })
		putMeta(x.st, m)
		if a.Power > 0 {
			x.eff.validators = append(x.eff.validators, validatorChange{key: a.ValidatorKey, power: 0})
		}
	case tx.ActionSetRoles:
		a := getAuthority(x.st, s.ID)
		a.Roles = slices.Clone(s.Roles)
		putAuthority(x.st, a)
	case tx.ActionSetValidator:
		a := getAuthority(x.st, s.ID)
		if a.Power > 0 && !bytes.Equal(a.ValidatorKey, s.ValidatorKey) {
			x.eff.validators = append(x.eff.validators, validatorChange{key: a.ValidatorKey, power: 0})
		}
		a.ValidatorKey, a.Power = s.ValidatorKey, s.Power
		if a.Power > 0 {
			x.eff.validators = append(x.eff.validators, validatorChange{key: a.ValidatorKey, power: a.Power})
		}
		putAuthority(x.st, a)
	}
}

func authorityFromSpec(s *tx.AuthoritySpec, at Stamp) *Authority {
	return &Authority{
		ID: s.ID, DID: did.FromKey(s.Key).String(), NameZH: s.NameZH, NameEN: s.NameEN, Key: s.Key,
		Roles: slices.Clone(s.Roles), ValidatorKey: s.ValidatorKey, Power: s.Power, Endpoint: s.Endpoint, Added: at,
		KeyVersion: 1, KeySince: at, PastKeys: []PastKey{},
	}
}

// checkAction validates a proposed action against the current state.
func checkAction(st kv, m *Meta, action string, s *tx.AuthoritySpec) error {
	switch action {
	case tx.ActionAddAuthority:
		if err := checkSpec(s); err != nil {
			return err
		}
		if getAuthority(st, s.ID) != nil {
			return fmt.Errorf("authority %s already exists", s.ID)
		}
		d := did.FromKey(s.Key).String()
		if st.get([]byte(pAuthorityBy+d)) != nil || getResident(st, d) != nil {
			return fmt.Errorf("the key of %s is already in use", s.ID)
		}
		if s.Power > 0 && validatorInUse(st, m, s.ValidatorKey, "") {
			return fmt.Errorf("the validator key is already in use")
		}
		return nil
	case tx.ActionRemoveAuthority, tx.ActionSetRoles, tx.ActionSetValidator:
		if err := onlyUsedFields(action, s); err != nil {
			return err
		}
		a := getAuthority(st, s.ID)
		if a == nil {
			return fmt.Errorf("no authority %q", clip(s.ID))
		}
		switch action {
		case tx.ActionRemoveAuthority:
			if len(m.Authorities) <= 1 {
				return fmt.Errorf("the last authority cannot be removed")
			}
			if a.Power > 0 && totalPower(st, m)-a.Power <= 0 {
				return fmt.Errorf("removing %s would leave no validator", a.ID)
			}
		case tx.ActionSetRoles:
			return validateRoles(s.Roles)
		case tx.ActionSetValidator:
			if err := checkValidator(s); err != nil {
				return err
			}
			if s.Power > 0 && validatorInUse(st, m, s.ValidatorKey, a.ID) {
				return fmt.Errorf("the validator key is already in use")
			}
			if totalPower(st, m)-a.Power+s.Power <= 0 {
				return fmt.Errorf("the change would leave no validator")
			}
		}
		return nil
	}
	return fmt.Errorf("unknown action %q (use add_authority, remove_authority, set_roles or set_validator)", clip(action))
}

func checkSpec(s *tx.AuthoritySpec) error {
	if !authorityIDRe.MatchString(s.ID) {
		return fmt.Errorf("authority id %q: use 2 to 32 lower-case letters, digits and hyphens", clip(s.ID))
	}
	if !validName(s.NameZH) || !validName(s.NameEN) {
		return fmt.Errorf("an authority needs a Chinese and an English name of at most %d bytes, without control characters", maxNameBytes)
	}
	if s.Key.IsZero() {
		return fmt.Errorf("an authority needs a signing key")
	}
	if err := checkEndpoint(s.Endpoint); err != nil {
		return err
	}
	if err := validateRoles(s.Roles); err != nil {
		return err
	}
	return checkValidator(s)
}

func checkValidator(s *tx.AuthoritySpec) error {
	if s.Power < 0 || s.Power > maxPower {
		return fmt.Errorf("validator power must be between 0 and %d", maxPower)
	}
	if s.Power > 0 && len(s.ValidatorKey) != ed25519.PublicKeySize {
		return fmt.Errorf("a validator needs a 32-byte Ed25519 validator key")
	}
	if s.Power == 0 && len(s.ValidatorKey) != 0 {
		return fmt.Errorf("a validator key needs a power above zero")
	}
	return nil
}

func totalPower(st kv, m *Meta) int64 {
	var n int64
	for _, id := range m.Authorities {
		if a := getAuthority(st, id); a != nil {
			n += a.Power
		}
	}
	return n
}

func validatorInUse(st kv, m *Meta, k []byte, except string) bool {
	for _, id := range m.Authorities {
		if a := getAuthority(st, id); a != nil && id != except && a.Power > 0 && bytes.Equal(a.ValidatorKey, k) {
			return true
		}
	}
	return false
}

// Limits on what a proposal may carry onto the chain.
const maxNameBytes = 120

var referenceRe = regexp.MustCompile(`^[A-Za-z0-9._/:-]{0,64}$`)

func validName(s string) bool {
	if s == "" || len(s) > maxNameBytes || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// checkEndpoint accepts an empty endpoint or the base URL of a node's API.
func checkEndpoint(e string) error {
	if e == "" {
		return nil
	}
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || len(e) > 200 {
		return fmt.Errorf("the endpoint must be an http(s) base URL of at most 200 bytes, like https://node.example.gov.cn")
	}
	return nil
}

// onlyUsedFields refuses a proposal that carries fields its action does not
// use: the chain stores what it is given, so it is given only what it needs.
func onlyUsedFields(action string, s *tx.AuthoritySpec) error {
	unused := s.NameZH != "" || s.NameEN != "" || !s.Key.IsZero() || s.Endpoint != ""
	switch action {
	case tx.ActionRemoveAuthority:
		unused = unused || len(s.Roles) > 0 || len(s.ValidatorKey) > 0 || s.Power != 0
	case tx.ActionSetRoles:
		unused = unused || len(s.ValidatorKey) > 0 || s.Power != 0
	case tx.ActionSetValidator:
		unused = unused || len(s.Roles) > 0
	}
	if unused {
		return fmt.Errorf("%s carries only the authority id and the fields it changes; leave the others empty", action)
	}
	return nil
}
