package tx

import (
	"fmt"

	"github.com/imi-city/imi/internal/key"
)

// Body is the typed content of a transaction.
type Body interface{ TxType() Type }

func newBody(t Type) (Body, error) {
	switch t {
	case TypeRegisterResident:
		return &RegisterResident{}, nil
	case TypeRotateKey:
		return &RotateKey{}, nil
	case TypeRecover:
		return &Recover{}, nil
	case TypeDeactivate:
		return &Deactivate{}, nil
	case TypeReproof:
		return &Reproof{}, nil
	case TypePropose:
		return &Propose{}, nil
	case TypeVote:
		return &Vote{}, nil
	case TypeRotateAuthorityKey:
		return &RotateAuthorityKey{}, nil
	case TypeRegisterCredentialType:
		return &RegisterCredentialType{}, nil
	case TypeReserveStatus:
		return &ReserveStatus{}, nil
	case TypeRevoke:
		return &Revoke{}, nil
	case TypeSuspend:
		return &Suspend{}, nil
	case TypeUnsuspend:
		return &Unsuspend{}, nil
	case TypeSetKEMKey:
		return &SetKEMKey{}, nil
	case TypeRegisterService:
		return &RegisterService{}, nil
	case TypeGrantConsent:
		return &GrantConsent{}, nil
	case TypeRevokeConsent:
		return &RevokeConsent{}, nil
	case TypeRecordAccess:
		return &RecordAccess{}, nil
	case TypeRecordDelegation:
		return &RecordDelegation{}, nil
	case TypeEndDelegation:
		return &EndDelegation{}, nil
	}
	return nil, fmt.Errorf("unknown transaction type %q", t)
}

// RegisterResident anchors a resident's DID. The registrar signs it after
// checking the ID card in person. UniquenessTag is the registrar's HMAC of the
// ID number; the number itself is never sent.
type RegisterResident struct {
	DID           string     `json:"did"`
	Key           key.Public `json:"key"`
	RecoveryHash  Hash32     `json:"recovery_hash"`
	UniquenessTag Hash32     `json:"uniqueness_tag"`
	Assurance     string     `json:"assurance"`
}

// RotateKey replaces the resident's key; the current key signs it.
type RotateKey struct {
	NewKey key.Public `json:"new_key"`
}

// Recover replaces a lost key; the pre-committed recovery key signs it and
// names its own successor, so every recovery key is used once.
type Recover struct {
	RecoveryKey     key.Public `json:"recovery_key"`
	NewKey          key.Public `json:"new_key"`
	NewRecoveryHash Hash32     `json:"new_recovery_hash"`
}

// Deactivate ends a DID. The resident signs it for their own DID (reason
// resident_request), or a registrar signs it with a reason.
type Deactivate struct {
	DID    string `json:"did"`
	Reason string `json:"reason"`
}

// Reproof is government-backed recovery: the registrar proofs the resident in
// person again and binds a new key. The uniqueness tag must match the one the
// DID was registered with, so only the same person's DID can be re-bound.
type Reproof struct {
	DID             string     `json:"did"`
	UniquenessTag   Hash32     `json:"uniqueness_tag"`
	NewKey          key.Public `json:"new_key"`
	NewRecoveryHash Hash32     `json:"new_recovery_hash"`
	Assurance       string     `json:"assurance"`
}

// AuthoritySpec describes an authority in a governance proposal.
type AuthoritySpec struct {
	ID           string     `json:"id"`
	NameZH       string     `json:"name_zh"`
	NameEN       string     `json:"name_en"`
	Key          key.Public `json:"key"`
	Roles        []string   `json:"roles"`
	ValidatorKey Bytes      `json:"validator_key"`
	Power        int64      `json:"power"`
	Endpoint     string     `json:"endpoint"`
}

// Proposal actions.
const (
	ActionAddAuthority    = "add_authority"
	ActionRemoveAuthority = "remove_authority"
	ActionSetRoles        = "set_roles"
	ActionSetValidator    = "set_validator"
)

// Propose starts a consortium vote. The proposer's approval is counted.
// Authority carries the full description for add_authority; the other
// actions carry the ID and only the fields they change, the rest empty.
// Reference points to the decision document kept off the chain (a file
// number): it is restricted to a short code so that no free text, and with it
// no personal data, reaches the chain through a proposal.
type Propose struct {
	Action    string        `json:"action"`
	Authority AuthoritySpec `json:"authority"`
	Reference string        `json:"reference"`
}

// Vote approves a pending proposal.
type Vote struct {
	Proposal string `json:"proposal"`
}

// RotateAuthorityKey replaces an authority's signing key; the current key
// signs it. The DID stays; earlier keys stay on record with the period they
// were in force, so credentials signed before the rotation still verify and
// none signed with an old key after it does.
type RotateAuthorityKey struct {
	NewKey key.Public `json:"new_key"`
}

// ClaimSpec describes one claim of a credential type: its name, whether it is
// sensitive personal information (PIPL Art. 28), and how to show it.
type ClaimSpec struct {
	Name      string `json:"name"`
	NameZH    string `json:"name_zh"`
	NameEN    string `json:"name_en"`
	Sensitive bool   `json:"sensitive"`
}

// RegisterCredentialType publishes (or, by its issuer, replaces) a credential
// type. The signer must hold the role issuer:<ID>. It carries claim names,
// never values.
type RegisterCredentialType struct {
	ID              string      `json:"id"`
	VCT             string      `json:"vct"`
	NameZH          string      `json:"name_zh"`
	NameEN          string      `json:"name_en"`
	Claims          []ClaimSpec `json:"claims"`
	MaxValidityDays uint32      `json:"max_validity_days"`
}

// ReserveStatus allocates status-list entries for credentials the issuer is
// about to sign. The issuer picks indices at random; the ledger refuses any
// index already taken, so none is ever reused. Nothing here names the holder.
type ReserveStatus struct {
	Type    string   `json:"type"`
	List    uint32   `json:"list"`
	Indices []uint32 `json:"indices"`
}

// StatusRef names one status-list entry of the signing issuer.
type StatusRef struct {
	List  uint32 `json:"list"`
	Index uint32 `json:"index"`
}

// Revoke sets an entry to revoked, which is final.
type Revoke struct{ StatusRef }

// Suspend sets a valid entry to suspended.
type Suspend struct{ StatusRef }

// Unsuspend sets a suspended entry back to valid.
type Unsuspend struct{ StatusRef }

// TxType implements Body.
func (*RotateAuthorityKey) TxType() Type { return TypeRotateAuthorityKey }

// TxType implements Body.
func (*RegisterCredentialType) TxType() Type { return TypeRegisterCredentialType }

// TxType implements Body.
func (*ReserveStatus) TxType() Type { return TypeReserveStatus }

// TxType implements Body.
func (*Revoke) TxType() Type { return TypeRevoke }

// TxType implements Body.
func (*Suspend) TxType() Type { return TypeSuspend }

// TxType implements Body.
func (*Unsuspend) TxType() Type { return TypeUnsuspend }

// TxType implements Body.
func (*RegisterResident) TxType() Type { return TypeRegisterResident }

// TxType implements Body.
func (*RotateKey) TxType() Type { return TypeRotateKey }

// TxType implements Body.
func (*Recover) TxType() Type { return TypeRecover }

// TxType implements Body.
func (*Deactivate) TxType() Type { return TypeDeactivate }

// TxType implements Body.
func (*Reproof) TxType() Type { return TypeReproof }

// TxType implements Body.
func (*Propose) TxType() Type { return TypePropose }

// TxType implements Body.
func (*Vote) TxType() Type { return TypeVote }
