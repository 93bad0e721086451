package ledger

import (
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/tx"
)

// kv is the state a transaction reads and writes: the working Merkle tree in
// FinalizeBlock, an overlay over the last committed tree in CheckTx.
type kv interface {
	get(k []byte) []byte
	set(k, v []byte)
}

// overlay buffers writes over a base so a refused transaction leaves nothing
// behind and CheckTx can see the effect of transactions still in the mempool.
type overlay struct {
	base   kv
	writes map[string][]byte
}

func newOverlay(base kv) *overlay { return &overlay{base: base, writes: map[string][]byte{}} }

func (o *overlay) get(k []byte) []byte {
	if v, ok := o.writes[string(k)]; ok {
		return v
	}
	return o.base.get(k)
}

func (o *overlay) set(k, v []byte) { o.writes[string(k)] = v }

// flush writes the buffered values to the base in key order, so the order of
// writes never depends on map iteration.
func (o *overlay) flush() {
	ks := make([]string, 0, len(o.writes))
	for k := range o.writes {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		o.base.set([]byte(k), o.writes[k])
	}
	clear(o.writes)
}

// execCtx is what a transaction may know about the block it is in.
type execCtx struct {
	chainID string
	at      Stamp
	// verifySig is false only when CheckTx re-checks a transaction whose
	// signature it already verified; FinalizeBlock always verifies.
	verifySig bool
	// pre, when set, is a signature verdict computed ahead (in parallel)
	// against the key the signer had at the last commit. It is used only if
	// the key needed now is that same key; verification is a pure function
	// of key and bytes, so the result is the same as verifying again.
	pre *sigVerdict
	// verified, if set, is told each key a signature was checked valid
	// against here.
	verified func(k key.Public)
	// mempool is set in CheckTx, recheck for its re-check after a block:
	// work whose only effect is on the block's state may wait for the block.
	mempool, recheck bool
}

type sigVerdict struct {
	key key.Public
	ok  bool
}

// effect is what a transaction changes beyond state: a validator-set update.
type effect struct {
	validators []validatorChange
}

type validatorChange struct {
	key   []byte
	power int64
}

// signingKey guesses which key must have signed t, from state st: the
// recovery key a recovery reveals, else the signer's current key. A wrong
// guess costs only a second verification.
func signingKey(st kv, t *tx.Tx, body tx.Body) (key.Public, bool) {
	if r, ok := body.(*tx.Recover); ok {
		return r.RecoveryKey, true
	}
	if id := st.get([]byte(pAuthorityBy + t.Signer)); id != nil {
		if a := getAuthority(st, string(id)); a != nil {
			return a.Key, true
		}
	}
	if r := getResident(st, t.Signer); r != nil {
		return r.Key, true
	}
	if p, err := pseudonym.Parse(t.Signer); err == nil {
		return p.Key(), true
	}
	return key.Public{}, false
}

// applyDecoded validates a decoded transaction against st and, if it is
// accepted, writes its effects to st. It is the whole state machine: CheckTx
// and FinalizeBlock both call it.
func applyDecoded(st kv, t *tx.Tx, body tx.Body, c execCtx) (*effect, *Rejection) {
	if t.ChainID != c.chainID {
		return nil, reject(CodeWrongChain, fmt.Sprintf("made for %q, this is %q", clip(t.ChainID), c.chainID))
	}
	var signer did.DID
	var psn pseudonym.ID
	var err error
	if pseudonym.Is(t.Signer) {
		psn, err = pseudonym.Parse(t.Signer)
	} else {
		signer, err = did.Parse(t.Signer)
	}
	if err != nil {
		return nil, reject(CodeMalformed, err.Error())
	}
	o := newOverlay(st)
	want := decodeSeq(o.get(seqKey(t.Signer, t.Lane)))
	switch {
	case t.Seq < want:
		return nil, reject(CodeBadSequence, fmt.Sprintf("sequence %d was already used (replay); the next is %d", t.Seq, want))
	case t.Seq > want:
		// Not a replay: this node has not seen the earlier ones yet (it is
		// behind, or they are still on their way), so a retry may succeed.
		return nil, reject(CodeSequenceAhead, fmt.Sprintf("got %d, the next this node knows is %d", t.Seq, want))
	}
	x := &txExec{st: o, t: t, signer: signer, psn: psn, c: c, eff: &effect{}}
	var rej *Rejection
	switch b := body.(type) {
	case *tx.RegisterResident:
		rej = x.register(b)
	case *tx.RotateKey:
		rej = x.rotate(b)
	case *tx.Recover:
		rej = x.recover(b)
	case *tx.Deactivate:
		rej = x.deactivate(b)
	case *tx.Reproof:
		rej = x.reproof(b)
	case *tx.Propose:
		rej = x.propose(b)
	case *tx.Vote:
		rej = x.vote(b)
	case *tx.RotateAuthorityKey:
		rej = x.rotateAuthorityKey(b)
	case *tx.RegisterCredentialType:
		rej = x.registerCredentialType(b)
	case *tx.ReserveStatus:
		rej = x.reserveStatus(b)
	case *tx.Revoke:
		rej = x.setStatus(b.StatusRef, StatusInvalid)
	case *tx.Suspend:
		rej = x.setStatus(b.StatusRef, StatusSuspended)
	case *tx.Unsuspend:
		rej = x.setStatus(b.StatusRef, StatusValid)
	case *tx.SetKEMKey:
		rej = x.setKEMKey(b)
	case *tx.RegisterService:
		rej = x.registerService(b)
	case *tx.GrantConsent:
		rej = x.grantConsent(b)
	case *tx.RevokeConsent:
		rej = x.revokeConsent(b)
	case *tx.RecordAccess:
		rej = x.recordAccess(b)
	case *tx.RecordDelegation:
		rej = x.recordDelegation(b)
	case *tx.EndDelegation:
		rej = x.endDelegation(b)
	default:
		rej = reject(CodeMalformed, "unsupported transaction type")
	}
	if rej != nil {
		return nil, rej
	}
	o.set(seqKey(t.Signer, t.Lane), encodeSeq(want+1))
	o.flush()
	return x.eff, nil
}

type txExec struct {
	st     *overlay
	t      *tx.Tx
	signer did.DID
	psn    pseudonym.ID
	c      execCtx
	eff    *effect
}

func (x *txExec) checkSig(k key.Public) *Rejection {
	if !x.c.verifySig {
		return nil
	}
	ok := false
	if p := x.c.pre; p != nil && p.key.Equal(k) {
		ok = p.ok
	} else {
		ok = x.t.VerifySig(k)
		if ok && x.c.verified != nil {
			x.c.verified(k)
		}
	}
	if !ok {
		return reject(CodeBadSignature, "")
	}
	return nil
}

// authority returns the signing authority, verifying its signature.
func (x *txExec) authority(role string) (*Authority, *Rejection) {
	id := x.st.get([]byte(pAuthorityBy + x.t.Signer))
	if id == nil {
		return nil, reject(CodeUnknownSigner, x.t.Signer+" is not an authority")
	}
	a := getAuthority(x.st, string(id))
	if a == nil {
		return nil, reject(CodeInternal, "authority index points nowhere")
	}
	if r := x.checkSig(a.Key); r != nil {
		return nil, r
	}
	if role != "" && !a.HasRole(role) {
		return nil, reject(CodeNotAuthorized, fmt.Sprintf("%s does not hold the role %s", a.ID, role))
	}
	return a, nil
}

func (x *txExec) resident(d string) (*Resident, *Rejection) {
	r := getResident(x.st, d)
	if r == nil {
		return nil, reject(CodeNotFound, d+" is not registered")
	}
	return r, nil
}

func (x *txExec) register(b *tx.RegisterResident) *Rejection {
	reg, rej := x.authority(RoleRegistrar)
	if rej != nil {
		return rej
	}
	if !slices.Contains(assuranceLevels, b.Assurance) {
		return reject(CodeInvalidField, fmt.Sprintf("assurance %q (use substantial or high)", clip(b.Assurance)))
	}
	if b.Key.IsZero() || did.FromKey(b.Key).String() != b.DID {
		return reject(CodeInvalidField, "the DID is not the one derived from the resident's key")
	}
	if key.RecoveryHash(b.Key) == b.RecoveryHash {
		return reject(CodeInvalidField, "the recovery key must differ from the signing key")
	}
	if getResident(x.st, b.DID) != nil || x.st.get([]byte(pAuthorityBy+b.DID)) != nil || x.st.get([]byte(pAuthorityGone+b.DID)) != nil {
		return reject(CodeDIDExists, b.DID)
	}
	if prev := x.st.get(uniqKey(b.UniquenessTag)); prev != nil {
		return reject(CodeAlreadyRegistered, "registered as "+string(prev))
	}
	r := &Resident{
		DID: b.DID, Key: b.Key, KeyVersion: 1, RecoveryHash: b.RecoveryHash, UniquenessTag: b.UniquenessTag,
		Attestation: Attestation{Registrar: reg.DID, Assurance: b.Assurance, At: x.c.at},
		Created:     x.c.at, Updated: x.c.at,
	}
	putResident(x.st, r)
	x.st.set(uniqKey(b.UniquenessTag), []byte(b.DID))
	m := getMeta(x.st)
	m.Residents++
	putMeta(x.st, m)
	return nil
}

// self returns the signer's own active resident record.
func (x *txExec) self() (*Resident, *Rejection) {
	r, rej := x.resident(x.t.Signer)
	if rej != nil {
		return nil, rej
	}
	if r.Deactivated {
		return nil, reject(CodeDeactivated, r.DID)
	}
	return r, nil
}

func (x *txExec) rotate(b *tx.RotateKey) *Rejection {
	r, rej := x.self()
	if rej != nil {
		return rej
	}
	if rej := x.checkSig(r.Key); rej != nil {
		return rej
	}
	if b.NewKey.IsZero() || b.NewKey.Equal(r.Key) {
		return reject(CodeInvalidField, "the new key must differ from the current key")
	}
	if key.RecoveryHash(b.NewKey) == r.RecoveryHash {
		return reject(CodeInvalidField, "the new key must not be the recovery key")
	}
	r.Key, r.KeyVersion, r.Updated = b.NewKey, r.KeyVersion+1, x.c.at
	putResident(x.st, r)
	return nil
}

func (x *txExec) recover(b *tx.Recover) *Rejection {
	r, rej := x.self()
	if rej != nil {
		return rej
	}
	if key.RecoveryHash(b.RecoveryKey) != r.RecoveryHash {
		return reject(CodeRecoveryMismatch, "")
	}
	if rej := x.checkSig(b.RecoveryKey); rej != nil {
		return rej
	}
	if b.NewKey.IsZero() || b.NewKey.Equal(r.Key) || b.NewKey.Equal(b.RecoveryKey) {
		return reject(CodeInvalidField, "the new key must differ from the lost key and the recovery key")
	}
	if b.NewRecoveryHash == r.RecoveryHash || key.RecoveryHash(b.NewKey) == b.NewRecoveryHash {
		return reject(CodeInvalidField, "name a fresh recovery key, different from the new signing key")
	}
	r.Key, r.KeyVersion, r.RecoveryHash, r.Updated = b.NewKey, r.KeyVersion+1, b.NewRecoveryHash, x.c.at
	putResident(x.st, r)
	return nil
}

func (x *txExec) deactivate(b *tx.Deactivate) *Rejection {
	if b.DID == x.t.Signer {
		r, rej := x.self()
		if rej != nil {
			return rej
		}
		if rej := x.checkSig(r.Key); rej != nil {
			return rej
		}
		if b.Reason != ReasonResidentRequest {
			return reject(CodeInvalidField, "a resident deactivates their own DID with reason resident_request")
		}
		r.Deactivated, r.DeactivationReason, r.Updated = true, b.Reason, x.c.at
		putResident(x.st, r)
		return nil
	}
	if _, rej := x.authority(RoleRegistrar); rej != nil {
		return rej
	}
	if !slices.Contains(registrarReasons, b.Reason) {
		return reject(CodeInvalidField, fmt.Sprintf("reason %q (use %s)", clip(b.Reason), strings.Join(registrarReasons, ", ")))
	}
	r, rej := x.resident(b.DID)
	if rej != nil {
		return rej
	}
	if r.Deactivated {
		return reject(CodeDeactivated, r.DID)
	}
	r.Deactivated, r.DeactivationReason, r.Updated = true, b.Reason, x.c.at
	putResident(x.st, r)
	return nil
}

func (x *txExec) reproof(b *tx.Reproof) *Rejection {
	reg, rej := x.authority(RoleRegistrar)
	if rej != nil {
		return rej
	}
	if !slices.Contains(assuranceLevels, b.Assurance) {
		return reject(CodeInvalidField, fmt.Sprintf("assurance %q (use substantial or high)", clip(b.Assurance)))
	}
	r, rej := x.resident(b.DID)
	if rej != nil {
		return rej
	}
	// A resident who moved away and came back is re-activated in person;
	// every other deactivation is final.
	if r.Deactivated && r.DeactivationReason != ReasonMovedAway {
		return reject(CodeDeactivated, r.DID+" ("+r.DeactivationReason+")")
	}
	if b.UniquenessTag != r.UniquenessTag {
		return reject(CodeUniquenessMismatch, "")
	}
	if b.NewKey.IsZero() || b.NewKey.Equal(r.Key) {
		return reject(CodeInvalidField, "bind a new key, not the lost one")
	}
	if key.RecoveryHash(b.NewKey) == b.NewRecoveryHash {
		return reject(CodeInvalidField, "the recovery key must differ from the signing key")
	}
	r.Key, r.KeyVersion, r.RecoveryHash = b.NewKey, r.KeyVersion+1, b.NewRecoveryHash
	r.Attestation = Attestation{Registrar: reg.DID, Assurance: b.Assurance, At: x.c.at}
	r.Deactivated, r.DeactivationReason, r.Updated = false, "", x.c.at
	putResident(x.st, r)
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Readers and writers of records. A record that does not decode is a bug or
// corruption, and a node must stop rather than guess.

func getJSON(st kv, k []byte, v any) bool {
	b := st.get(k)
	if b == nil {
		return false
	}
	if err := tx.Unmarshal(b, v); err != nil {
		panic(fmt.Sprintf("ledger: corrupt record %q: %v", k, err))
	}
	return true
}

func putJSON(st kv, k []byte, v any) {
	b, err := tx.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ledger: cannot encode %q: %v", k, err))
	}
	st.set(k, b)
}

// getRecord returns the record under k, or nil if there is none.
func getRecord[T any](st kv, k string) *T {
	var v T
	if !getJSON(st, []byte(k), &v) {
		return nil
	}
	return &v
}

func getAuthority(st kv, id string) *Authority { return getRecord[Authority](st, pAuthority+id) }

func putAuthority(st kv, a *Authority) { putJSON(st, []byte(pAuthority+a.ID), a) }

func getResident(st kv, d string) *Resident { return getRecord[Resident](st, pDID+d) }

func putResident(st kv, r *Resident) { putJSON(st, []byte(pDID+r.DID), r) }

func getMeta(st kv) *Meta {
	var m Meta
	getJSON(st, []byte(kMeta), &m)
	return &m
}

func putMeta(st kv, m *Meta) { putJSON(st, []byte(kMeta), m) }

func getProposal(st kv, id string) *Proposal { return getRecord[Proposal](st, pProposal+id) }

func putProposal(st kv, p *Proposal) { putJSON(st, []byte(pProposal+p.ID), p) }

func txResultKey(hash [32]byte) []byte { return []byte(pTxResult + hex.EncodeToString(hash[:])) }
