package bench

import (
	"crypto/rand"
	"fmt"
	"slices"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/tx"
)

// The access load is a city's heaviest write stream: the access records
// an authority leaves on the ledger for every read of a resident's data,
// the audit trail residents see. A district makes about 1,700 a second at
// its peak (issue 4).
//
// Every record is one a reader would really write: a presentation at the
// counter of a standing service, read under the resident's standing
// consent, recorded "allowed" in batches of ledger.MaxAccessBatch by the
// reader. The ledger judges each record again against the consent it
// holds (ledger.Decide) and would store it as denied without one, so the
// consents are granted first, by each resident's pseudonym, in an untimed
// setup phase (Load.setup); Run then checks that no record was denied.

// DefaultConsents is how many residents an access load's records name,
// each by a pseudonym with a standing consent to the service.
const DefaultConsents = 10_000

// Fixed seeds of the access load, public like the others.
const (
	pseudonymSeedLabel = "imi/bench/pseudonym-secret"
	recordIDSeedLabel  = "imi/bench/access-record"
)

// accessAuthority records every access, publishes the service and issues
// the resident identity credentials its claims come from: a district's
// registrar, validator 0. It is registrar 0 of the IMI load, with the same
// key.
const accessAuthority = "bench-reg-0"

// accessService is the service every record reads for: a free transit
// card for residents over sixty, renewed by presenting the credential, so
// its residents hold standing consents and are read often. It asks for
// four claims of one credential type, one of them sensitive; a batch of
// 128 records reading all four stays below tx.MaxBytes.
var accessService = tx.RegisterService{
	ID:         "senior_transit_card",
	NameZH:     "老年人公交卡",
	NameEN:     "Senior transit card",
	PurposeZH:  "核实年满60周岁并办理、续用免费乘坐公共交通的老年人公交卡",
	PurposeEN:  "To confirm you are 60 or over and to issue and renew your free public transport card",
	LegalBasis: "《中华人民共和国老年人权益保障法》/ Law of the PRC on the Protection of the Rights and Interests of the Elderly",
	Required: []tx.ClaimRef{
		identityClaim("age_over_60"),
		identityClaim("family_name"),
		identityClaim("given_name"),
		identityClaim("resident_id_number"),
	},
	RetentionDays:   2 * 366,
	Modes:           []string{tx.ModeOneTime, tx.ModeStanding},
	MaxStandingDays: 366,
	Form: []tx.FormField{
		{Name: "family_name", LabelZH: "姓", LabelEN: "Family name", Claim: identityClaim("family_name")},
		{Name: "given_name", LabelZH: "名", LabelEN: "Given name", Claim: identityClaim("given_name")},
		{Name: "id_number", LabelZH: "公民身份号码", LabelEN: "Resident ID number", Claim: identityClaim("resident_id_number")},
		{Name: "age_over_60", LabelZH: "年满60周岁", LabelEN: "Aged 60 or over", Claim: identityClaim("age_over_60")},
		{Name: "phone", LabelZH: "联系电话（自填）", LabelEN: "Phone (you type it)"},
	},
}

func identityClaim(name string) tx.ClaimRef {
	return tx.ClaimRef{Type: credential.TypeResidentIdentity, Claim: name}
}

// identityType is the resident identity credential type of the demo
// district, issued by accessAuthority.
func identityType() (ledger.GenesisCredentialType, error) {
	for _, t := range credential.DemoTypes(accessAuthority, "", "", "") {
		if t.Type.ID == credential.TypeResidentIdentity {
			return t, nil
		}
	}
	return ledger.GenesisCredentialType{}, fmt.Errorf("no %s credential type in the demo district", credential.TypeResidentIdentity)
}

// accessMaker makes the transactions of an access load.
type accessMaker struct {
	recorder key.Private
	streams  int
	// subjects are the residents' pseudonyms towards accessAuthority, and
	// keys their private keys, which sign the grants.
	subjects []string
	keys     []key.Private
	// claims is what every consent allows and every record reads, sorted;
	// sensitive the sensitive ones among them.
	claims, sensitive []tx.ClaimRef
}

func newAccessMaker(recorder key.Private, streams, consents int) (*accessMaker, error) {
	if streams > lanes {
		// Every record must be written by its reader, the service's
		// authority, which has this many lanes.
		return nil, fmt.Errorf("%d streams: an access load has at most %d, the lanes of its one recording authority", streams, lanes)
	}
	g := &accessMaker{
		recorder: recorder, streams: streams,
		subjects: make([]string, consents), keys: make([]key.Private, consents),
		claims: slices.SortedFunc(slices.Values(accessService.Required), tx.ClaimRef.Compare),
	}
	it, err := identityType()
	if err != nil {
		return nil, err
	}
	for _, c := range g.claims {
		for _, spec := range it.Type.Claims {
			if spec.Name == c.Claim && spec.Sensitive {
				g.sensitive = append(g.sensitive, c)
			}
		}
	}
	// A wallet derives its pseudonym towards an authority from its own
	// secret; each benchmark resident has a fixed one.
	err = parallel(consents, func(j int) error {
		k, err := pseudonym.Derive(seed(pseudonymSeedLabel, j), accessAuthority)
		g.keys[j], g.subjects[j] = k, pseudonym.FromKey(k.Public()).String()
		return err
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// grant is resident j's standing consent to accessService, as the wallet
// signs it: the first transaction of the pseudonym, on lane 0. The
// subject is sealed to the one authority party to the consent, which is
// both the service's and the claims' issuer; the box is random bytes of a
// real box's length, since the ledger checks only its presence and size.
func (g *accessMaker) grant(j int) ([]byte, error) {
	box := make([]byte, consent.MaxBox)
	if _, err := rand.Read(box); err != nil {
		return nil, err
	}
	t, err := tx.New(ChainID, g.subjects[j], 0, 0, &tx.GrantConsent{
		Service:        accessService.ID,
		ServiceVersion: 1,
		Claims:         g.claims,
		Sensitive:      g.sensitive,
		Mode:           tx.ModeStanding,
		Days:           accessService.MaxStandingDays,
		Subjects:       []tx.SealedSubject{{Authority: accessAuthority, Box: box}},
	})
	if err != nil {
		return nil, err
	}
	t.Sign(g.keys[j])
	return t.Encode(), nil
}

// make is the i-th record_access transaction: records i*MaxAccessBatch
// onwards, record r naming resident r mod the number of residents, so the
// residents take turns.
func (g *accessMaker) make(i int) ([]byte, error) {
	s := i % g.streams
	body := &tx.RecordAccess{Records: make([]tx.AccessRecord, ledger.MaxAccessBatch)}
	for k := range body.Records {
		r := i*ledger.MaxAccessBatch + k
		body.Records[k] = tx.AccessRecord{
			ID:      seed(recordIDSeedLabel, r)[:16],
			Subject: g.subjects[r%len(g.subjects)],
			Reader:  accessAuthority,
			Service: accessService.ID,
			Claims:  g.claims,
			Channel: tx.ChannelPresentation,
			Outcome: tx.OutcomeAllowed,
		}
	}
	t, err := tx.New(ChainID, did.FromKey(g.recorder.Public()).String(), uint32(s), uint64(i/g.streams), body)
	if err != nil {
		return nil, err
	}
	t.Sign(g.recorder)
	raw := t.Encode()
	if len(raw) > tx.MaxBytes {
		return nil, fmt.Errorf("a batch of %d access records is %d bytes, more than a transaction's %d", ledger.MaxAccessBatch, len(raw), tx.MaxBytes)
	}
	return raw, nil
}

// accessState is the ledger genesis of an access load: accessAuthority
// with key k, validator 0, holding the roles its records, the service and
// the credential type need; the resident identity type; the service.
func accessState(k key.Private, val0 []byte) (ledger.Genesis, error) {
	it, err := identityType()
	if err != nil {
		return ledger.Genesis{}, err
	}
	return ledger.Genesis{
		DistrictZH: "基准测试区", DistrictEN: "Benchmark District",
		Authorities: []tx.AuthoritySpec{{
			ID:     accessAuthority,
			NameZH: "基准登记机关0", NameEN: "Benchmark Registrar 0",
			Key: k.Public(),
			// Sorted, as the ledger requires.
			Roles:        []string{ledger.RoleIssuerPrefix + credential.TypeResidentIdentity, ledger.RoleRegistrar, ledger.RoleServiceProvider},
			ValidatorKey: val0, Power: Power,
		}},
		CredentialTypes: []ledger.GenesisCredentialType{it},
		Services:        []ledger.GenesisService{{Authority: accessAuthority, Service: accessService}},
	}, nil
}

// AccessChecked bounds how many residents' access logs Run reads back on
// each node after an access run, spread evenly over the residents: the
// whole ledger would take longer to read than the run.
const AccessChecked = 256

// checkAccess checks that the ledger stored every record of l that names
// a sample of its residents (all of them, up to AccessChecked), each as
// allowed under the resident's consent.
func (mb *member) checkAccess(l *Load, committed int) error {
	if committed != l.Len() {
		return fmt.Errorf("blocks refused %d of the load's %d record_access transactions: their records are missing", l.Len()-committed, l.Len())
	}
	p := len(l.access.subjects)
	total := committed * ledger.MaxAccessBatch
	n := min(p, AccessChecked)
	for k := range n {
		j := k * p / n
		want := total / p
		if j < total%p {
			want++
		}
		log, _, err := mb.ledger.AccessLog(l.access.subjects[j], 0)
		if err != nil {
			return fmt.Errorf("couldn't read resident %d's access log: %w", j, err)
		}
		if len(log) != want {
			return fmt.Errorf("the ledger holds %d access records of resident %d, the blocks committed %d", len(log), j, want)
		}
		for _, r := range log {
			if r.Outcome != tx.OutcomeAllowed || r.Consent == "" {
				return fmt.Errorf("the ledger stored an access record of resident %d as %s (%s) under consent %q, want allowed under a consent",
					j, r.Outcome, r.Reason, r.Consent)
			}
		}
	}
	return nil
}
