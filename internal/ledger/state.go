package ledger

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/tx"
)

// Key prefixes of the Merkle-committed state: the app hash covers all of it.
// Transaction results alone are kept beside the tree: they follow from the
// blocks, and CometBFT's LastResultsHash commits to them.
const (
	pAuthority     = "auth/"     // authority id -> Authority
	pAuthorityBy   = "authdid/"  // authority DID -> id
	pAuthorityGone = "authgone/" // removed authority's DID -> RemovedAuthority
	pDID           = "did/"      // resident DID -> Resident
	pUnique        = "uniq/"     // uniqueness tag -> DID
	pSeq           = "seq/"      // signer/lane -> next sequence number
	pProposal      = "prop/"     // proposal id -> Proposal
	pTxResult      = "txr/"      // tx hash (hex) -> TxResult, in the results database beside the tree
	kMeta          = "meta"      // Meta
)

// Assurance levels a registrar may attest.
var assuranceLevels = []string{"substantial", "high"}

// Deactivation reasons.
const (
	ReasonResidentRequest   = "resident_request"
	ReasonDeceased          = "deceased"
	ReasonMovedAway         = "moved_away"
	ReasonRegistrationError = "registration_error"
)

var registrarReasons = []string{ReasonDeceased, ReasonMovedAway, ReasonRegistrationError, ReasonResidentRequest}

// Roles.
const (
	RoleRegistrar       = "registrar"
	RoleServiceProvider = "service_provider"
	RoleIssuerPrefix    = "issuer:"
)

var (
	authorityIDRe = regexp.MustCompile(`^[a-z][a-z0-9-]{1,31}$`)
	credTypeRe    = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
)

// Stamp is a point on the chain: a height and its block time.
type Stamp struct {
	Height int64     `json:"height"`
	Time   time.Time `json:"time"`
}

// Authority is an authority in the consortium.
type Authority struct {
	ID           string     `json:"id"`
	DID          string     `json:"did"`
	NameZH       string     `json:"name_zh"`
	NameEN       string     `json:"name_en"`
	Key          key.Public `json:"key"`
	Roles        []string   `json:"roles"`
	ValidatorKey tx.Bytes   `json:"validator_key"`
	Power        int64      `json:"power"`
	Endpoint     string     `json:"endpoint"`
	Added        Stamp      `json:"added"`
	// KeyVersion counts rotations from 1; KeySince is when Key took over.
	KeyVersion uint64    `json:"key_version"`
	KeySince   Stamp     `json:"key_since"`
	PastKeys   []PastKey `json:"past_keys"`
	// KEMKey is the X25519 key residents seal consent subjects to.
	KEMKey tx.Bytes `json:"kem_key"`
}

// HasRole reports whether a holds role r.
func (a *Authority) HasRole(r string) bool { return slices.Contains(a.Roles, r) }

// RemovedAuthority is what remains of an authority the consortium removed.
type RemovedAuthority struct {
	Authority Authority `json:"authority"`
	Removed   Stamp     `json:"removed"`
}

// Attestation is the registrar's statement that it proofed the resident.
type Attestation struct {
	Registrar string `json:"registrar"`
	Assurance string `json:"assurance"`
	At        Stamp  `json:"at"`
}

// Resident is a resident's DID record. It holds identifiers, keys and hashes
// only: no attribute of the person.
type Resident struct {
	DID                string      `json:"did"`
	Key                key.Public  `json:"key"`
	KeyVersion         uint64      `json:"key_version"`
	RecoveryHash       tx.Hash32   `json:"recovery_hash"`
	UniquenessTag      tx.Hash32   `json:"uniqueness_tag"`
	Attestation        Attestation `json:"attestation"`
	Created            Stamp       `json:"created"`
	Updated            Stamp       `json:"updated"`
	Deactivated        bool        `json:"deactivated"`
	DeactivationReason string      `json:"deactivation_reason"`
}

// Proposal is a governance proposal.
type Proposal struct {
	ID        string           `json:"id"`
	Proposer  string           `json:"proposer"`
	Action    string           `json:"action"`
	Authority tx.AuthoritySpec `json:"authority"`
	Reference string           `json:"reference"`
	Approvals []string         `json:"approvals"`
	Status    string           `json:"status"`
	Outcome   string           `json:"outcome"`
	Created   Stamp            `json:"created"`
	Expires   time.Time        `json:"expires"`
	Closed    Stamp            `json:"closed"`
}

// Proposal statuses.
const (
	ProposalPending  = "pending"
	ProposalExecuted = "executed"
	ProposalFailed   = "failed"
	ProposalExpired  = "expired"
)

// ProposalLifetime is how long, in block time, a proposal collects votes.
const ProposalLifetime = 7 * 24 * time.Hour

// TxResult records the outcome of an included transaction. The first result
// for a hash is kept, so a transaction included twice stays applied once.
type TxResult struct {
	Height int64  `json:"height"`
	Index  uint32 `json:"index"`
	Code   Code   `json:"code"`
	Type   string `json:"type"`
	Signer string `json:"signer"`
	Log    string `json:"log"`
}

// Meta holds network-wide facts and counters.
type Meta struct {
	ChainID      string `json:"chain_id"`
	DistrictZH   string `json:"district_zh"`
	DistrictEN   string `json:"district_en"`
	Residents    uint64 `json:"residents"`
	NextProposal uint64 `json:"next_proposal"`
	// Authorities are the ids of the current authorities, sorted.
	Authorities []string `json:"authorities"`
}

// Genesis is the application state in CometBFT's genesis document.
type Genesis struct {
	DistrictZH  string             `json:"district_zh"`
	DistrictEN  string             `json:"district_en"`
	Authorities []tx.AuthoritySpec `json:"authorities"`
	// CredentialTypes are published at genesis by the named issuer.
	CredentialTypes []GenesisCredentialType `json:"credential_types"`
	// KEMKeys and Services are published at genesis by the named authority.
	KEMKeys  []GenesisKEMKey  `json:"kem_keys"`
	Services []GenesisService `json:"services"`
}

// GenesisKEMKey is an authority's KEM key at genesis.
type GenesisKEMKey struct {
	Authority string   `json:"authority"`
	Key       tx.Bytes `json:"key"`
}

// GenesisService is a service its authority publishes at genesis.
type GenesisService struct {
	Authority string             `json:"authority"`
	Service   tx.RegisterService `json:"service"`
}

// GenesisCredentialType is a credential type its issuer publishes at genesis.
type GenesisCredentialType struct {
	Issuer string                    `json:"issuer"`
	Type   tx.RegisterCredentialType `json:"type"`
}

func seqKey(signer string, lane uint32) []byte {
	return []byte(fmt.Sprintf("%s%s/%d", pSeq, signer, lane))
}

func uniqKey(tag tx.Hash32) []byte {
	return []byte(pUnique + base64.RawURLEncoding.EncodeToString(tag[:]))
}

func encodeSeq(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func decodeSeq(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// validateRoles checks the role list is known, sorted and without repeats, so
// that equal role sets have equal bytes on every node.
func validateRoles(roles []string) error {
	for i, r := range roles {
		switch {
		case r == RoleRegistrar, r == RoleServiceProvider:
		case strings.HasPrefix(r, RoleIssuerPrefix) && credTypeRe.MatchString(r[len(RoleIssuerPrefix):]):
		default:
			return fmt.Errorf("unknown role %q (use registrar, service_provider or issuer:<credential type>)", r)
		}
		if i > 0 && roles[i-1] >= r {
			return fmt.Errorf("roles must be sorted and unique")
		}
	}
	return nil
}
