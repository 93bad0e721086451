package ledger

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cosmos/iavl"
	ics23 "github.com/cosmos/ics23/go"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/tx"
)

// Query errors callers branch on.
var (
	ErrNotFound   = errors.New("not found")
	ErrBadHeight  = errors.New("no committed state at that height")
	ErrBadProof   = errors.New("the proof does not match the app hash")
	ErrNoVersions = errors.New("nothing committed yet")
)

// view is committed state as of one height.
type view struct {
	height int64
	t      *iavl.ImmutableTree
}

// at returns the committed state as of height h; h <= 0 means the latest.
// The caller holds a.mu for reading until it is done with the view: iavl's
// node database is not safe to read while SaveVersion writes it.
func (a *App) at(h int64) (view, error) {
	latest := a.latest
	v := latest.Version()
	if v == 0 {
		return view{}, ErrNoVersions
	}
	if h <= 0 || h == v {
		return view{height: v, t: latest}, nil
	}
	if h > v {
		return view{}, fmt.Errorf("%w: %d is above the last committed height %d", ErrBadHeight, h, v)
	}
	im, err := a.tree.GetImmutable(h)
	if err != nil {
		return view{}, fmt.Errorf("%w: %d", ErrBadHeight, h)
	}
	return view{height: h, t: im}, nil
}

// Height is the last committed height.
func (a *App) Height() int64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.latest.Version()
}

// AppHash is the root of the last committed state: the app hash that the
// header of the next block carries.
func (a *App) AppHash() []byte {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.latest.Version() == 0 {
		return nil
	}
	return a.latest.Hash()
}

// ChainID is the chain this state belongs to.
func (a *App) ChainID() string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return getMeta(treeKV{a.latest}).ChainID
}

// Meta returns the network facts as of height h.
func (a *App) Meta(h int64) (*Meta, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, 0, err
	}
	return getMeta(treeKV{v.t}), v.height, nil
}

// Authorities lists the authorities as of height h, in id order.
func (a *App) Authorities(h int64) ([]Authority, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, 0, err
	}
	st := treeKV{v.t}
	m := getMeta(st)
	out := make([]Authority, 0, len(m.Authorities))
	for _, id := range m.Authorities {
		if au := getAuthority(st, id); au != nil {
			out = append(out, *au)
		}
	}
	return out, v.height, nil
}

// Authority returns one current authority by id as of height h.
func (a *App) Authority(id string, h int64) (*Authority, int64, error) {
	return recordAt[Authority](a, pAuthority+id, h)
}

// Proposals lists every proposal as of height h, oldest first.
func (a *App) Proposals(h int64) ([]Proposal, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, 0, err
	}
	st := treeKV{v.t}
	m := getMeta(st)
	out := make([]Proposal, 0, m.NextProposal)
	for i := uint64(1); i <= m.NextProposal; i++ {
		if p := getProposal(st, fmt.Sprintf("p-%d", i)); p != nil {
			out = append(out, *p)
		}
	}
	return out, v.height, nil
}

// Proposal returns one proposal.
func (a *App) Proposal(id string, h int64) (*Proposal, int64, error) {
	return recordAt[Proposal](a, pProposal+id, h)
}

// ResidentRecord returns the raw DID record of a resident.
func (a *App) ResidentRecord(d string, h int64) (*Resident, int64, error) {
	return recordAt[Resident](a, pDID+d, h)
}

// ResidentByTag returns the DID record of the resident registered under the
// registrars' uniqueness tag, as of height h: how a registrar finds the DID
// of a person in front of them from the ID card alone. ErrNotFound if no
// one is registered under tag. The tag stays with its DID through key
// changes, re-proofs and deactivation.
//
// This reveals nothing that a reader of the state does not already have:
// the tag is an HMAC of the ID number under the registrars' key, so only a
// holder of that key can compute the tag of a given number, and a tag
// found in the state already sits beside its DID there.
func (a *App) ResidentByTag(tag tx.Hash32, h int64) (*Resident, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, 0, err
	}
	st := treeKV{v.t}
	d := st.get(uniqKey(tag))
	if d == nil {
		return nil, v.height, ErrNotFound
	}
	r := getResident(st, string(d))
	if r == nil {
		// The index and the record are written in the same transaction
		// and neither is ever removed.
		return nil, v.height, fmt.Errorf("ledger: the uniqueness index names %s, which has no record", d)
	}
	return r, v.height, nil
}

// recordAt reads the record under k as of height h.
func recordAt[T any](a *App, k string, h int64) (*T, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, 0, err
	}
	r := getRecord[T](treeKV{v.t}, k)
	if r == nil {
		return nil, v.height, ErrNotFound
	}
	return r, v.height, nil
}

// NextSeq is the sequence number the next transaction of signer on lane must
// carry, counting transactions already accepted into the mempool.
func (a *App) NextSeq(signer string, lane uint32) uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return decodeSeq(a.check.get(seqKey(signer, lane)))
}

// TxResult returns the committed outcome of the transaction with hash.
func (a *App) TxResult(hash [32]byte) (*TxResult, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	r, ok := a.committedTxResult(hash)
	if !ok {
		return nil, ErrNotFound
	}
	return &r, nil
}

// Resolve resolves a DID (a resident's or an authority's) as of height h.
func (a *App) Resolve(id string, h int64) (*did.Resolution, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	d, err := did.Parse(id)
	if err != nil {
		return nil, err
	}
	v, err := a.at(h)
	if err != nil {
		return nil, err
	}
	st := treeKV{v.t}
	res := &did.Resolution{ResolutionMetadata: did.ResolutionMetadata{ContentType: "application/did+ld+json", Height: v.height}}
	if r := getResident(st, d.String()); r != nil {
		doc := did.NewDocument(d, r.Key, r.KeyVersion, r.Deactivated)
		res.Document = &doc
		res.Metadata = did.Metadata{
			Created: r.Created.Time, Updated: r.Updated.Time, Deactivated: r.Deactivated,
			VersionID: fmt.Sprint(r.Updated.Height), DeactivationReason: r.DeactivationReason, Kind: "resident",
			Attestation: &did.Attestation{Registrar: r.Attestation.Registrar, Assurance: r.Attestation.Assurance, Time: r.Attestation.At.Time, Height: r.Attestation.At.Height},
		}
		return res, nil
	}
	if id := st.get([]byte(pAuthorityBy + d.String())); id != nil {
		au := getAuthority(st, string(id))
		doc := did.NewDocument(d, au.Key, au.KeyVersion, false)
		if au.Endpoint != "" {
			doc.Service = []did.Service{{ID: d.String() + "#node", Type: "IMINode", ServiceEndpoint: au.Endpoint}}
		}
		doc.AlsoKnownAs = []string{"urn:imi:authority:" + au.ID}
		res.Document = &doc
		res.Metadata = did.Metadata{Created: au.Added.Time, Updated: au.KeySince.Time, VersionID: fmt.Sprint(au.KeySince.Height), Kind: "authority"}
		return res, nil
	}
	var gone RemovedAuthority
	if getJSON(st, []byte(pAuthorityGone+d.String()), &gone) {
		doc := did.NewDocument(d, gone.Authority.Key, gone.Authority.KeyVersion, true)
		res.Document = &doc
		res.Metadata = did.Metadata{
			Created: gone.Authority.Added.Time, Updated: gone.Removed.Time, Deactivated: true,
			VersionID: fmt.Sprint(gone.Removed.Height), Kind: "authority",
			DeactivationReason: "removed from the consortium",
		}
		return res, nil
	}
	return nil, ErrNotFound
}

// Proof shows that Key has Value (or, with Value nil, is absent) in the state
// committed at Height, whose root is the app hash in the header of block
// Height+1. Proof is an ics23 CommitmentProof in protobuf.
type Proof struct {
	Height int64    `json:"height"`
	Key    tx.Bytes `json:"key"`
	Value  tx.Bytes `json:"value"`
	Root   tx.Bytes `json:"root"`
	Proof  tx.Bytes `json:"proof"`
}

// Prove returns the value under key at height h with its Merkle proof.
func (a *App) Prove(k []byte, h int64) (*Proof, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, err
	}
	val, err := v.t.Get(k)
	if err != nil {
		return nil, err
	}
	var cp *ics23.CommitmentProof
	if val == nil {
		cp, err = v.t.GetNonMembershipProof(k)
	} else {
		cp, err = v.t.GetMembershipProof(k)
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't build proof: %w", err)
	}
	pb, err := cp.Marshal()
	if err != nil {
		return nil, err
	}
	root, err := v.t.Hash(), nil
	return &Proof{Height: v.height, Key: k, Value: val, Root: root, Proof: pb}, nil
}

// ProveDID proves a resident's DID record.
func (a *App) ProveDID(d string, h int64) (*Proof, error) { return a.Prove([]byte(pDID+d), h) }

// Verify checks p against appHash, the app hash a client took from a
// committed block header. It does not trust p.Root.
func (p *Proof) Verify(appHash []byte) error {
	var cp ics23.CommitmentProof
	if err := cp.Unmarshal(p.Proof); err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	var ok bool
	if p.Value == nil {
		ok = ics23.VerifyNonMembership(ics23.IavlSpec, appHash, &cp, p.Key)
	} else {
		ok = ics23.VerifyMembership(ics23.IavlSpec, appHash, &cp, p.Key, p.Value)
	}
	if !ok {
		return ErrBadProof
	}
	return nil
}

// ResidentFromProof decodes the DID record a verified proof carries.
func ResidentFromProof(p *Proof) (*Resident, error) {
	if !bytes.HasPrefix(p.Key, []byte(pDID)) || p.Value == nil {
		return nil, ErrNotFound
	}
	var r Resident
	if err := tx.Unmarshal(p.Value, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
