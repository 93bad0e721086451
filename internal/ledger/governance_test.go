package ledger_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

func propose(action string, spec tx.AuthoritySpec) *tx.Propose {
	return &tx.Propose{Action: action, Authority: spec, Reference: "test/" + action + "/" + spec.ID}
}

func vote(id string) *tx.Vote { return &tx.Vote{Proposal: id} }

// proposal reads one committed proposal.
func (c *chain) proposal(id string) *ledger.Proposal {
	c.t.Helper()
	p, _, err := c.app.Proposal(id, 0)
	if err != nil {
		c.t.Fatalf("Proposal(%s): %v", id, err)
	}
	return p
}

func (c *chain) authorityIDs() []string {
	c.t.Helper()
	as, _, err := c.app.Authorities(0)
	if err != nil {
		c.t.Fatal(err)
	}
	ids := make([]string, len(as))
	for i, a := range as {
		ids[i] = a.ID
	}
	return ids
}

func (c *chain) authority(id string) *ledger.Authority {
	c.t.Helper()
	as, _, err := c.app.Authorities(0)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, a := range as {
		if a.ID == id {
			return &a
		}
	}
	return nil
}

// wantUpdates checks a block's validator updates, in order.
func wantUpdates(t testing.TB, res *abci.ResponseFinalizeBlock, want ...abci.ValidatorUpdate) {
	t.Helper()
	if len(res.ValidatorUpdates) != len(want) {
		t.Fatalf("validator updates = %v, want %v", res.ValidatorUpdates, want)
	}
	for i := range want {
		if !res.ValidatorUpdates[i].PubKey.Equal(want[i].PubKey) || res.ValidatorUpdates[i].Power != want[i].Power {
			t.Errorf("validator update %d = %v, want %v", i, res.ValidatorUpdates[i], want[i])
		}
	}
}

func update(k key.Private, power int64) abci.ValidatorUpdate {
	return abci.UpdateValidator(k.Public().Bytes(), power, "ed25519")
}

func TestAddAuthority(t *testing.T) {
	d := newDistrict(t, memApp(t))
	water := newAuthority(t, "water", 10, "issuer:utility_account", ledger.RoleServiceProvider)

	res := d.ok(d.tx(d.psb.party, propose(tx.ActionAddAuthority, water.spec)))
	wantUpdates(t, res)
	proposedAt := d.now
	p := d.proposal("p-1")
	if p.Status != ledger.ProposalPending || p.Proposer != "psb" || !slices.Equal(p.Approvals, []string{"psb"}) ||
		p.Action != tx.ActionAddAuthority || p.Authority.ID != "water" || !p.Created.Time.Equal(proposedAt) ||
		!p.Expires.Equal(proposedAt.Add(ledger.ProposalLifetime)) {
		t.Fatalf("after proposing (1/4): %+v", p)
	}

	res = d.ok(d.tx(d.hrss.party, vote("p-1")))
	wantUpdates(t, res)
	if p := d.proposal("p-1"); p.Status != ledger.ProposalPending || !slices.Equal(p.Approvals, []string{"hrss", "psb"}) {
		t.Fatalf("after the second approval (2/4): %+v", p)
	}
	if slices.Contains(d.authorityIDs(), "water") {
		t.Fatal("water joined with 2 of 4 approvals")
	}

	d.want1(d.tx(d.hrss.party, vote("p-1")), ledger.CodeAlreadyVoted)
	d.want1(d.tx(d.psb.party, vote("p-1")), ledger.CodeAlreadyVoted) // the proposer's approval counts already

	res = d.ok(d.tx(d.tax.party, vote("p-1")))
	executedAt := d.height
	wantUpdates(t, res, update(water.validator, 10))
	if got := d.votingPower(water.validator); got != 10 {
		t.Errorf("water's power in the CometBFT set = %d, want 10", got)
	}
	p = d.proposal("p-1")
	if p.Status != ledger.ProposalExecuted || !slices.Equal(p.Approvals, []string{"hrss", "psb", "tax"}) ||
		p.Closed.Height != executedAt || !strings.Contains(p.Outcome, "height") {
		t.Errorf("after the third approval (3/4 > 2/3): %+v", p)
	}
	if ids := d.authorityIDs(); !slices.Equal(ids, []string{"hrss", "med", "psb", "tax", "water"}) {
		t.Errorf("authorities = %v", ids)
	}
	a := d.authority("water")
	if a.DID != water.did || !a.Key.Equal(water.key.Public()) || a.Power != 10 || a.Added.Height != executedAt ||
		!slices.Equal(a.Roles, water.spec.Roles) || string(a.ValidatorKey) != string(water.validator.Public().Bytes()) {
		t.Errorf("water = %+v", a)
	}
	if res, err := d.app.Resolve(water.did, 0); err != nil || res.Metadata.Kind != "authority" {
		t.Errorf("Resolve(water) = %+v, %v", res, err)
	}

	// Closed proposals take no more votes.
	d.want1(d.tx(d.med.party, vote("p-1")), ledger.CodeProposalClosed)
	d.want1(d.tx(d.med.party, vote("p-2")), ledger.CodeNotFound)
	d.want1(d.tx(newParty(t, "stranger"), vote("p-1")), ledger.CodeUnknownSigner)
	d.want1(d.txAs(d.med.did, d.tax.key, vote("p-1")), ledger.CodeBadSignature)

	// The new authority takes part at once: with 5 authorities, 4 approvals
	// are needed (3*4 > 2*5, 3*3 is not).
	d.ok(d.tx(water.party, propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "water", Roles: []string{"issuer:utility_account"}})))
	d.ok(d.tx(d.psb.party, vote("p-2")), d.tx(d.hrss.party, vote("p-2")))
	if p := d.proposal("p-2"); p.Status != ledger.ProposalPending {
		t.Fatalf("3 of 5: %+v", p)
	}
	d.ok(d.tx(d.med.party, vote("p-2")))
	if p := d.proposal("p-2"); p.Status != ledger.ProposalExecuted {
		t.Fatalf("4 of 5: %+v", p)
	}
	ps, _, err := d.app.Proposals(0)
	if err != nil || len(ps) != 2 || ps[0].ID != "p-1" || ps[1].ID != "p-2" {
		t.Errorf("Proposals = %+v, %v", ps, err)
	}
	if ps, _, _ := d.app.Proposals(executedAt - 1); len(ps) != 1 || ps[0].Status != ledger.ProposalPending {
		t.Errorf("Proposals as of height %d = %+v", executedAt-1, ps)
	}
}

func TestRemoveAuthority(t *testing.T) {
	d := withAlice(t)
	// med proposes something, hrss approves it: two approvals of four.
	d.ok(d.tx(d.med.party, propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "tax", Roles: []string{ledger.RoleRegistrar}})))
	d.ok(d.tx(d.hrss.party, vote("p-1")))

	d.ok(d.tx(d.psb.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "med"})))
	d.ok(d.tx(d.hrss.party, vote("p-2")))
	res := d.ok(d.tx(d.tax.party, vote("p-2")))
	wantUpdates(t, res, update(d.med.validator, 0))
	if got := d.votingPower(d.med.validator); got != 0 {
		t.Errorf("med still has power %d in the CometBFT set", got)
	}
	if ids := d.authorityIDs(); !slices.Equal(ids, []string{"hrss", "psb", "tax"}) {
		t.Errorf("authorities = %v", ids)
	}
	// The DID stays resolvable, deactivated, so that what med signed as a
	// member can still be attributed; in the past it is active.
	gone, err := d.app.Resolve(d.med.did, 0)
	if err != nil || !gone.Metadata.Deactivated || gone.Metadata.Kind != "authority" || gone.Metadata.DeactivationReason == "" ||
		len(gone.Document.VerificationMethod) != 0 || !gone.Metadata.Updated.Equal(d.now) {
		t.Errorf("Resolve(removed authority) = %+v, %v", gone, err)
	}
	if was, err := d.app.Resolve(d.med.did, d.height-1); err != nil || was.Metadata.Deactivated ||
		was.Document.VerificationMethod[0].PublicKeyJwk.X != jwkX(d.med.key.Public()) {
		t.Errorf("a removed authority's DID before the removal = %+v, %v", was, err)
	}
	d.want1(d.tx(d.med.party, vote("p-1")), ledger.CodeUnknownSigner)
	// med's approval of p-1 no longer counts: with tax's approval p-1 has
	// 2 of 3 current authorities, which is not more than two-thirds.
	d.ok(d.tx(d.tax.party, vote("p-1")))
	if p := d.proposal("p-1"); p.Status != ledger.ProposalPending {
		t.Errorf("p-1 with a removed authority's approval: %+v", p)
	}
	d.ok(d.tx(d.psb.party, vote("p-1")))
	if p := d.proposal("p-1"); p.Status != ledger.ProposalExecuted {
		t.Errorf("p-1 with all three: %+v", p)
	}
	// The resident registered by psb is untouched.
	if _, err := d.app.Resolve(d.alice.did, 0); err != nil {
		t.Error(err)
	}

	// med may be re-admitted with its old key; its DID is active again.
	d.ok(d.tx(d.psb.party, propose(tx.ActionAddAuthority, d.med.spec)))
	d.ok(d.tx(d.hrss.party, vote("p-3")), d.tx(d.tax.party, vote("p-3")))
	back, err := d.app.Resolve(d.med.did, 0)
	if err != nil || back.Metadata.Deactivated || len(back.Document.VerificationMethod) != 1 {
		t.Errorf("Resolve(re-admitted authority) = %+v, %v", back, err)
	}
	d.ok(d.tx(d.med.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "tax"})))
}

func TestSetRoles(t *testing.T) {
	d := newDistrict(t, memApp(t))
	d.want1(d.tx(d.hrss.party, d.alice.register()), ledger.CodeNotAuthorized)

	grant := propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "hrss", Roles: []string{"issuer:social_insurance", ledger.RoleRegistrar}})
	d.ok(d.tx(d.psb.party, grant))
	d.ok(d.tx(d.tax.party, vote("p-1")))
	d.want1(d.tx(d.hrss.party, d.alice.register()), ledger.CodeNotAuthorized) // 2 of 4: not yet
	res := d.ok(d.tx(d.med.party, vote("p-1")))
	wantUpdates(t, res) // roles do not touch the validator set
	if a := d.authority("hrss"); !a.HasRole(ledger.RoleRegistrar) || a.Power != 10 {
		t.Errorf("hrss = %+v", a)
	}
	d.ok(d.tx(d.hrss.party, d.alice.register()))
	if r := d.resident(d.alice.did); r.Attestation.Registrar != d.hrss.did {
		t.Errorf("attested by %s, want hrss", r.Attestation.Registrar)
	}

	// psb loses the role: its next registration, and its deactivations, fail.
	d.ok(d.tx(d.hrss.party, propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "psb", Roles: nil})))
	d.ok(d.tx(d.tax.party, vote("p-2")), d.tx(d.med.party, vote("p-2")))
	if a := d.authority("psb"); len(a.Roles) != 0 {
		t.Errorf("psb roles = %v", a.Roles)
	}
	d.want1(d.tx(d.psb.party, d.bob.register()), ledger.CodeNotAuthorized)
	d.want1(d.tx(d.psb.party, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonDeceased}), ledger.CodeNotAuthorized)
	// psb is still an authority and may still vote and propose.
	d.ok(d.tx(d.psb.party, propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "psb", Roles: []string{ledger.RoleRegistrar}})))
}

// TestRoleChangeInTheSameBlock: a registrar stripped of its role earlier in a
// block cannot register later in the same block.
func TestRoleChangeInTheSameBlock(t *testing.T) {
	d := newDistrict(t, memApp(t))
	d.ok(d.tx(d.hrss.party, propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "psb"})))
	d.ok(d.tx(d.tax.party, vote("p-1")))
	d.want([][]byte{d.tx(d.med.party, vote("p-1")), d.tx(d.psb.party, d.alice.register())},
		ledger.OK, ledger.CodeNotAuthorized)
}

func TestSetValidator(t *testing.T) {
	d := newDistrict(t, memApp(t))
	approve := func(id string, by ...*authority) *abci.ResponseFinalizeBlock {
		var txs [][]byte
		for _, a := range by {
			txs = append(txs, d.tx(a.party, vote(id)))
		}
		return d.ok(txs...)
	}
	v2 := seedKey(t, "tax validator 2")

	// A new consensus key: the old one leaves (power 0), the new one joins.
	d.ok(d.tx(d.psb.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "tax", ValidatorKey: v2.Public().Bytes(), Power: 20})))
	res := approve("p-1", d.hrss, d.med)
	wantUpdates(t, res, update(d.tax.validator, 0), update(v2, 20))
	if a := d.authority("tax"); a.Power != 20 || string(a.ValidatorKey) != string(v2.Public().Bytes()) {
		t.Errorf("tax = %+v", a)
	}
	if d.votingPower(d.tax.validator) != 0 || d.votingPower(v2) != 20 {
		t.Errorf("CometBFT powers: old %d, new %d", d.votingPower(d.tax.validator), d.votingPower(v2))
	}

	// Same key, new power: one update.
	d.ok(d.tx(d.psb.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "tax", ValidatorKey: v2.Public().Bytes(), Power: 5})))
	wantUpdates(t, approve("p-2", d.hrss, d.med), update(v2, 5))

	// Power 0: tax stays an authority but stops validating.
	d.ok(d.tx(d.psb.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "tax"})))
	wantUpdates(t, approve("p-3", d.hrss, d.med), update(v2, 0))
	if a := d.authority("tax"); a == nil || a.Power != 0 || len(a.ValidatorKey) != 0 {
		t.Errorf("tax = %+v", a)
	}
	// Removing an authority that does not validate changes no validator.
	d.ok(d.tx(d.psb.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "tax"})))
	wantUpdates(t, approve("p-4", d.hrss, d.med))

	// Taking another validator's key is refused when proposed.
	d.want1(d.tx(d.psb.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "med", ValidatorKey: d.hrss.validator.Public().Bytes(), Power: 10})),
		ledger.CodeProposalInvalid)
	// A key given up earlier may be taken by another authority.
	d.ok(d.tx(d.psb.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "med", ValidatorKey: d.tax.validator.Public().Bytes(), Power: 10})))
	wantUpdates(t, approve("p-5", d.hrss, d.med), update(d.med.validator, 0), update(d.tax.validator, 10))
}

func TestProposalExpiry(t *testing.T) {
	d := newDistrict(t, memApp(t))
	water := newAuthority(t, "water", 10)
	d.ok(d.tx(d.psb.party, propose(tx.ActionAddAuthority, water.spec)))
	created := d.now

	// One second before the deadline a vote still counts.
	d.finalize(created.Add(ledger.ProposalLifetime-time.Second), d.tx(d.hrss.party, vote("p-1")))
	d.commit()
	if p := d.proposal("p-1"); p.Status != ledger.ProposalPending || len(p.Approvals) != 2 {
		t.Fatalf("before the deadline: %+v", p)
	}
	// At the deadline the vote closes the proposal instead of approving
	// it, even though it would have been the deciding third approval.
	res := d.blockAt(created.Add(ledger.ProposalLifetime), d.tx(d.tax.party, vote("p-1")))
	wantCodes(t, res, ledger.OK)
	wantUpdates(t, res)
	p := d.proposal("p-1")
	if p.Status != ledger.ProposalExpired || len(p.Approvals) != 2 || p.Closed.Height != d.height || p.Outcome == "" {
		t.Errorf("at the deadline: %+v", p)
	}
	if slices.Contains(d.authorityIDs(), "water") {
		t.Error("an expired proposal was carried out")
	}
	d.want1(d.tx(d.med.party, vote("p-1")), ledger.CodeProposalClosed)
	d.want1(d.tx(d.tax.party, vote("p-1")), ledger.CodeProposalClosed)
	// The same change may be proposed again.
	d.ok(d.tx(d.psb.party, propose(tx.ActionAddAuthority, water.spec)))
	if p := d.proposal("p-2"); p.Status != ledger.ProposalPending {
		t.Errorf("p-2 = %+v", p)
	}
}

// TestProposalFailsOnExecution: the action is checked again when approved;
// if the state changed meanwhile the proposal fails and nothing happens.
func TestProposalFailsOnExecution(t *testing.T) {
	d := newDistrict(t, memApp(t))
	water := newAuthority(t, "water", 10)
	water2 := newAuthority(t, "water-two", 10)
	water2.spec.ID = "water" // the same id, another key
	d.ok(d.tx(d.psb.party, propose(tx.ActionAddAuthority, water.spec)), d.tx(d.hrss.party, propose(tx.ActionAddAuthority, water2.spec)))
	d.ok(d.tx(d.hrss.party, vote("p-1")), d.tx(d.psb.party, vote("p-2")))
	res := d.ok(d.tx(d.tax.party, vote("p-1")), d.tx(d.tax.party, vote("p-2")))
	wantUpdates(t, res, update(water.validator, 10))
	// water joined in the same block, before tax's second vote: p-2 now
	// needs 4 of 5.
	if p := d.proposal("p-2"); p.Status != ledger.ProposalPending || len(p.Approvals) != 3 {
		t.Fatalf("p-2 with 3 of 5 = %+v", p)
	}
	res = d.ok(d.tx(d.med.party, vote("p-2")))
	wantUpdates(t, res)
	if p := d.proposal("p-2"); p.Status != ledger.ProposalFailed || !strings.Contains(p.Outcome, "already exists") || p.Closed.Height != d.height {
		t.Errorf("p-2 = %+v", p)
	}
	if a := d.authority("water"); !a.Key.Equal(water.key.Public()) {
		t.Errorf("water has key %s, want the first proposal's", a.Key)
	}
	d.want1(d.tx(water.party, vote("p-2")), ledger.CodeProposalClosed)
}

func TestInvalidProposals(t *testing.T) {
	water := func(t *testing.T, edit func(s *tx.AuthoritySpec)) tx.AuthoritySpec {
		s := newAuthority(t, "water", 10, ledger.RoleServiceProvider).spec
		if edit != nil {
			edit(&s)
		}
		return s
	}
	long := strings.Repeat("长", 41) // 123 bytes
	tests := []struct {
		name string
		make func(t *testing.T, d *district) []byte
		want ledger.Code
	}{
		{"valid, for contrast", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, nil)))
		}, ledger.OK},
		{"duplicate id", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.ID = "tax" })))
		}, ledger.CodeProposalInvalid},
		{"key of an existing authority", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Key = d.tax.key.Public() })))
		}, ledger.CodeProposalInvalid},
		{"key of a resident", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Key = d.alice.key.Public() })))
		}, ledger.CodeProposalInvalid},
		{"validator key in use", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.ValidatorKey = d.med.validator.Public().Bytes() })))
		}, ledger.CodeProposalInvalid},
		{"unsorted roles", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) {
				s.Roles = []string{ledger.RoleServiceProvider, ledger.RoleRegistrar}
			})))
		}, ledger.CodeProposalInvalid},
		{"repeated role", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) {
				s.Roles = []string{ledger.RoleRegistrar, ledger.RoleRegistrar}
			})))
		}, ledger.CodeProposalInvalid},
		{"unknown role", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Roles = []string{"admin"} })))
		}, ledger.CodeProposalInvalid},
		{"issuer without a credential type", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Roles = []string{"issuer:"} })))
		}, ledger.CodeProposalInvalid},
		{"issuer of a badly named type", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Roles = []string{"issuer:Water Bill"} })))
		}, ledger.CodeProposalInvalid},
		{"id with capitals", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.ID = "Water" })))
		}, ledger.CodeProposalInvalid},
		{"one-letter id", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.ID = "w" })))
		}, ledger.CodeProposalInvalid},
		{"no English name", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.NameEN = "" })))
		}, ledger.CodeProposalInvalid},
		{"Chinese name too long", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.NameZH = long })))
		}, ledger.CodeProposalInvalid},
		{"no signing key", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Key = key.Public{} })))
		}, ledger.CodeProposalInvalid},
		{"endpoint too long", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Endpoint = "http://" + strings.Repeat("a", 200) })))
		}, ledger.CodeProposalInvalid},
		{"power above the maximum", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Power = 1001 })))
		}, ledger.CodeProposalInvalid},
		{"negative power", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Power = -1 })))
		}, ledger.CodeProposalInvalid},
		{"power without a validator key", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.ValidatorKey = nil })))
		}, ledger.CodeProposalInvalid},
		{"validator key without power", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Power = 0 })))
		}, ledger.CodeProposalInvalid},
		{"short validator key", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.ValidatorKey = s.ValidatorKey[:31] })))
		}, ledger.CodeProposalInvalid},
		{"remove an unknown authority", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "water"}))
		}, ledger.CodeProposalInvalid},
		{"set unknown roles", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "tax", Roles: []string{"root"}}))
		}, ledger.CodeProposalInvalid},
		{"set roles of an unknown authority", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "water", Roles: []string{ledger.RoleRegistrar}}))
		}, ledger.CodeProposalInvalid},
		{"set a validator key in use", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "tax", ValidatorKey: d.psb.validator.Public().Bytes(), Power: 10}))
		}, ledger.CodeProposalInvalid},
		{"unknown action", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose("dissolve", tx.AuthoritySpec{ID: "tax"}))
		}, ledger.CodeProposalInvalid},
		{"reference too long", func(t *testing.T, d *district) []byte {
			p := propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "tax"})
			p.Reference = strings.Repeat("x", 65)
			return d.tx(d.psb.party, p)
		}, ledger.CodeInvalidField},
		{"reference as free text", func(t *testing.T, d *district) []byte {
			p := propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "tax"})
			p.Reference = "张伟 13800138000"
			return d.tx(d.psb.party, p)
		}, ledger.CodeInvalidField},
		{"remove carrying a name", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "tax", NameZH: "张伟"}))
		}, ledger.CodeProposalInvalid},
		{"set_roles carrying an endpoint", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "tax", Endpoint: "http://x.example"}))
		}, ledger.CodeProposalInvalid},
		{"set_validator carrying a key", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "tax", Key: d.alice.key.Public(), ValidatorKey: d.tax.validator.Public().Bytes(), Power: 3}))
		}, ledger.CodeProposalInvalid},
		{"endpoint not a URL", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.Endpoint = "佛山市禅城区金丝雀路88号" })))
		}, ledger.CodeProposalInvalid},
		{"name with a control character", func(t *testing.T, d *district) []byte {
			return d.tx(d.psb.party, propose(tx.ActionAddAuthority, water(t, func(s *tx.AuthoritySpec) { s.NameEN = "Water\nBureau" })))
		}, ledger.CodeProposalInvalid},
		{"proposed by a resident", func(t *testing.T, d *district) []byte {
			return d.tx(d.alice.party, propose(tx.ActionAddAuthority, water(t, nil)))
		}, ledger.CodeUnknownSigner},
		{"proposed with a wrong signature", func(t *testing.T, d *district) []byte {
			return d.txAs(d.psb.did, d.alice.key, propose(tx.ActionAddAuthority, water(t, nil)))
		}, ledger.CodeBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := withAlice(t)
			raw := tt.make(t, d)
			if got := d.check(raw); got != tt.want {
				t.Errorf("CheckTx = %s, want %s", got.Name(), tt.want.Name())
			}
			d.want1(raw, tt.want)
			ps, _, err := d.app.Proposals(0)
			if err != nil {
				t.Fatal(err)
			}
			wantN := 0
			if tt.want == ledger.OK {
				wantN = 1
			}
			if len(ps) != wantN {
				t.Errorf("%d proposals, want %d", len(ps), wantN)
			}
			if tt.want != ledger.OK {
				if tr, _ := d.app.TxResult(tx.Hash(raw)); tr == nil || tr.Log == "" {
					t.Errorf("TxResult = %+v, want the reason in the log", tr)
				}
			}
		})
	}
}

func TestSingleAuthority(t *testing.T) {
	psb := newAuthority(t, "psb", 10, ledger.RoleRegistrar)
	c := newChain(t, memApp(t), genesisOf(psb))
	water := newAuthority(t, "water", 10)

	res := c.ok(c.tx(psb.party, propose(tx.ActionAddAuthority, water.spec)))
	wantUpdates(t, res, update(water.validator, 10))
	if p := c.proposal("p-1"); p.Status != ledger.ProposalExecuted || p.Closed.Height != c.height {
		t.Errorf("the sole authority's proposal: %+v", p)
	}
	// Two authorities: both must approve (3*1 > 2*2 is false).
	c.ok(c.tx(psb.party, propose(tx.ActionSetRoles, tx.AuthoritySpec{ID: "water", Roles: []string{ledger.RoleRegistrar}})))
	if p := c.proposal("p-2"); p.Status != ledger.ProposalPending {
		t.Errorf("1 of 2: %+v", p)
	}
	c.ok(c.tx(water.party, vote("p-2")))
	if p := c.proposal("p-2"); p.Status != ledger.ProposalExecuted {
		t.Errorf("2 of 2: %+v", p)
	}

	t.Run("the last authority stays", func(t *testing.T) {
		c := newChain(t, memApp(t), genesisOf(psb))
		c.want1(c.tx(psb.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "psb"})), ledger.CodeProposalInvalid)
	})
	t.Run("the last validator stays", func(t *testing.T) {
		observer := newAuthority(t, "observer", 0)
		c := newChain(t, memApp(t), genesisOf(psb, observer))
		c.want1(c.tx(psb.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "psb"})), ledger.CodeProposalInvalid)
		c.want1(c.tx(psb.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "psb"})), ledger.CodeProposalInvalid)
		// The observer may go.
		c.ok(c.tx(psb.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "observer"})))
		c.ok(c.tx(observer.party, vote("p-1")))
		if ids := c.authorityIDs(); !slices.Equal(ids, []string{"psb"}) {
			t.Errorf("authorities = %v", ids)
		}
	})
}
