package tx

import "strings"

// Transaction types of services, consents, access records and guardianship.
const (
	TypeSetKEMKey        Type = "set_kem_key"
	TypeRegisterService  Type = "register_service"
	TypeGrantConsent     Type = "grant_consent"
	TypeRevokeConsent    Type = "revoke_consent"
	TypeRecordAccess     Type = "record_access"
	TypeRecordDelegation Type = "record_delegation"
	TypeEndDelegation    Type = "end_delegation"
)

// Consent modes.
const (
	ModeOneTime  = "one_time"
	ModeStanding = "standing"
)

// Access channels and outcomes.
const (
	ChannelPresentation = "presentation"
	ChannelBackOffice   = "back_office"
	OutcomeAllowed      = "allowed"
	OutcomeDenied       = "denied"
)

// Delegation bases.
const (
	BasisMinor          = "minor"
	BasisAdultIncapable = "adult_incapacity"
	BasisAdultAssisted  = "adult_assisted"
)

// SetKEMKey publishes the authority's X25519 public key, to which residents
// seal the opening of their consents (see package consent).
type SetKEMKey struct {
	Key Bytes `json:"key"`
}

// ClaimRef names one claim of one credential type.
type ClaimRef struct {
	Type  string `json:"type"`
	Claim string `json:"claim"`
}

// String is "type.claim".
func (c ClaimRef) String() string { return c.Type + "." + c.Claim }

// Compare orders claim references by type, then claim.
func (c ClaimRef) Compare(o ClaimRef) int {
	if r := strings.Compare(c.Type, o.Type); r != 0 {
		return r
	}
	return strings.Compare(c.Claim, o.Claim)
}

// FormField is one field of a service's application form, filled from Claim.
type FormField struct {
	Name    string   `json:"name"`
	LabelZH string   `json:"label_zh"`
	LabelEN string   `json:"label_en"`
	Claim   ClaimRef `json:"claim"`
}

// RegisterService publishes (or, by its authority, replaces) a service. Each
// replacement bumps the service's version; consents name the version they
// were given for, so a changed purpose needs a new grant. Every claim asked
// for must appear on the form, so what a service asks for is public.
type RegisterService struct {
	ID              string      `json:"id"`
	NameZH          string      `json:"name_zh"`
	NameEN          string      `json:"name_en"`
	PurposeZH       string      `json:"purpose_zh"`
	PurposeEN       string      `json:"purpose_en"`
	LegalBasis      string      `json:"legal_basis"`
	Required        []ClaimRef  `json:"required"`
	Optional        []ClaimRef  `json:"optional"`
	RetentionDays   uint32      `json:"retention_days"`
	Modes           []string    `json:"modes"`
	MaxStandingDays uint32      `json:"max_standing_days"`
	Form            []FormField `json:"form"`
}

// SealedSubject is, for one authority party to a consent, the resident's DID
// and signatures sealed to that authority's KEM key. Only that authority can
// open it; the chain sees ciphertext.
type SealedSubject struct {
	Authority string `json:"authority"`
	Box       Bytes  `json:"box"`
}

// GuardianAct marks a transaction a guardian made for a ward: the guardian's
// own pseudonym towards the same authority and its signature over
// GuardianSignBytes.
type GuardianAct struct {
	Pseudonym string `json:"pseudonym"`
	Sig       Bytes  `json:"sig"`
}

// GrantConsent is signed by the resident's pseudonym towards the service's
// authority. Claims is the whole set the service may read (all its required
// claims and the optional ones the resident chose), sorted; Sensitive repeats
// the sensitive ones, which is the resident's separate consent to them (PIPL
// Art. 29). A grant replaces the resident's earlier consent to the service.
type GrantConsent struct {
	Service        string          `json:"service"`
	ServiceVersion uint64          `json:"service_version"`
	Claims         []ClaimRef      `json:"claims"`
	Sensitive      []ClaimRef      `json:"sensitive"`
	Mode           string          `json:"mode"`
	Days           uint32          `json:"days"`
	Subjects       []SealedSubject `json:"subjects"`
	Guardian       *GuardianAct    `json:"guardian"`
}

// RevokeConsent withdraws the signer's consent to Service.
type RevokeConsent struct {
	Service  string       `json:"service"`
	Guardian *GuardianAct `json:"guardian"`
}

// AccessRecord is one read of a resident's data as the node that checked it
// saw it. The ledger decides the outcome it stores: an "allowed" record whose
// consent no longer allows it when the block runs is stored as denied.
type AccessRecord struct {
	ID      Bytes      `json:"id"`
	Subject string     `json:"subject"`
	Reader  string     `json:"reader"`
	Source  string     `json:"source"`
	Service string     `json:"service"`
	Claims  []ClaimRef `json:"claims"`
	Channel string     `json:"channel"`
	Outcome string     `json:"outcome"`
	Reason  string     `json:"reason"`
}

// RecordAccess carries a batch of access records from the authority that
// checked them: the reader for a presentation, the source for a back-office
// read.
type RecordAccess struct {
	Records []AccessRecord `json:"records"`
}

// RecordDelegation is the registrar's record, after an in-person check, that
// Guardian may act for Ward. Scope lists service ids, or "*" for all.
// GuardianConsent means the ward cannot consent alone (under 14, PIPL Art. 31).
type RecordDelegation struct {
	Guardian        string   `json:"guardian"`
	Ward            string   `json:"ward"`
	Basis           string   `json:"basis"`
	Reference       string   `json:"reference"`
	Scope           []string `json:"scope"`
	Days            uint32   `json:"days"`
	GuardianConsent bool     `json:"guardian_consent"`
}

// EndDelegation ends a delegation: by a registrar, or by an adult ward.
type EndDelegation struct {
	Ward string `json:"ward"`
	ID   string `json:"id"`
}

const guardianLabel = "imi/v1/guardian-act"

// GuardianSignBytes is what the guardian signs: the chain, the ward's
// pseudonym (the signer), the type and the body with the guardian's signature
// left empty.
func GuardianSignBytes(chainID, signer string, body Body) []byte {
	var clone Body
	switch b := body.(type) {
	case *GrantConsent:
		c := *b
		if c.Guardian != nil {
			g := *c.Guardian
			g.Sig = nil
			c.Guardian = &g
		}
		clone = &c
	case *RevokeConsent:
		c := *b
		if c.Guardian != nil {
			g := *c.Guardian
			g.Sig = nil
			c.Guardian = &g
		}
		clone = &c
	default:
		clone = body
	}
	enc, err := marshal(clone)
	if err != nil {
		panic("tx: cannot encode a body: " + err.Error())
	}
	out := []byte(guardianLabel + "\x00" + chainID + "\x00" + signer + "\x00" + string(body.TxType()) + "\x00")
	return append(out, enc...)
}

// TxType implements Body.
func (*SetKEMKey) TxType() Type { return TypeSetKEMKey }

// TxType implements Body.
func (*RegisterService) TxType() Type { return TypeRegisterService }

// TxType implements Body.
func (*GrantConsent) TxType() Type { return TypeGrantConsent }

// TxType implements Body.
func (*RevokeConsent) TxType() Type { return TypeRevokeConsent }

// TxType implements Body.
func (*RecordAccess) TxType() Type { return TypeRecordAccess }

// TxType implements Body.
func (*RecordDelegation) TxType() Type { return TypeRecordDelegation }

// TxType implements Body.
func (*EndDelegation) TxType() Type { return TypeEndDelegation }
