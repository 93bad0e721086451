package consent

import (
	"slices"

	"github.com/imi-city/imi/internal/tx"
)

// Held is one credential in a wallet, already parsed and verified by the
// caller: its type id, its issuer authority id, and its disclosable claim
// values. Index is its position in the wallet.
type Held struct {
	Type   string
	Issuer string
	Claims map[string]any
	Index  int
}

// Field is one field of a service's form as the resident sees it.
type Field struct {
	Name, LabelZH, LabelEN string
	Claim                  tx.ClaimRef
	// Value is the verified value, nil when nothing verified is held.
	Value any
	// SelfDeclared is the resident's own value for a field with no
	// verified Value. Prefill never sets it. No authority vouches for it.
	SelfDeclared any
	// Source is the issuer authority id that vouches for Value; "" when
	// the value is self-declared or missing.
	Source   string
	Verified bool
	// Required is set when the claim is in the service's Required list.
	Required bool
	// Sensitive comes from the credential type's ClaimSpec.Sensitive.
	Sensitive bool
	// Credential is the Held.Index the value came from, -1 if none.
	Credential int
}

// Form is a service's form filled from a wallet.
//
// The resident approves a form by removing the optional fields they do not
// want to share (and may set SelfDeclared on optional fields nothing
// verified fills); Grant and Sources then read what is left.
type Form struct {
	Service string
	Version uint64
	Fields  []Field
	// Missing lists the required claims with no verified value, sorted.
	// A form with Missing claims cannot be granted: the service needs them
	// verified.
	Missing []tx.ClaimRef
}

// Prefill fills svc's form, version version, from held credentials.
// sensitive(c) reports whether a claim is sensitive; callers look it up in
// the ledger's credential types. A nil sensitive marks every claim
// sensitive, which asks for more consent rather than less.
//
// Prefill never guesses: a field gets a value only from a held credential of
// exactly the field's claim type, with a named issuer, that discloses the
// claim with a non-null value. When several do, the first in held wins, so
// the caller orders held (for example newest first) and passes only
// credentials it has verified as valid.
func Prefill(svc *tx.RegisterService, version uint64, held []Held, sensitive func(tx.ClaimRef) bool) *Form {
	if sensitive == nil {
		sensitive = func(tx.ClaimRef) bool { return true }
	}
	f := &Form{Service: svc.ID, Version: version, Fields: make([]Field, 0, len(svc.Form)), Missing: []tx.ClaimRef{}}
	for _, ff := range svc.Form {
		fl := Field{
			Name: ff.Name, LabelZH: ff.LabelZH, LabelEN: ff.LabelEN,
			Claim:      ff.Claim,
			Required:   slices.Contains(svc.Required, ff.Claim),
			Sensitive:  sensitive(ff.Claim),
			Credential: -1,
		}
		if h, v, ok := find(held, ff.Claim); ok {
			fl.Value, fl.Source, fl.Verified, fl.Credential = v, h.Issuer, true, h.Index
		}
		f.Fields = append(f.Fields, fl)
	}
	// Missing is computed from svc.Required, not from the form, so a
	// required claim the form forgot is reported rather than dropped.
	for _, c := range svc.Required {
		if !slices.ContainsFunc(f.Fields, func(fl Field) bool { return fl.Verified && fl.Claim == c }) {
			f.Missing = append(f.Missing, c)
		}
	}
	f.Missing = sortedSet(f.Missing)
	return f
}

// find returns the first held credential of exactly c.Type that discloses
// c.Claim, and the value.
func find(held []Held, c tx.ClaimRef) (Held, any, bool) {
	for _, h := range held {
		if h.Type != c.Type || h.Issuer == "" {
			continue
		}
		if v, ok := h.Claims[c.Claim]; ok && v != nil {
			return h, v, true
		}
	}
	return Held{}, nil, false
}

// Grant builds the unsigned grant body for an approved form. Claims are the
// claims of every field with a verified value, sorted with ClaimRef.Compare
// and deduplicated (typed-in values travel with the application, outside the
// grant); Sensitive is the sensitive subset, the resident's separate
// consent to them. Subjects is left empty for the caller to fill with one
// box per authority in Sources (and the service's authority); Guardian is
// nil.
//
// Grant does not check that Missing is empty: a wallet must not offer to
// grant a form with missing required claims, and the ledger refuses a grant
// that leaves one out.
func (f *Form) Grant(mode string, days uint32) *tx.GrantConsent {
	claims, sens := []tx.ClaimRef{}, []tx.ClaimRef{}
	for _, fl := range f.Fields {
		// Only verified values are consented to and presented; what the
		// resident typed in travels with the application, outside the grant.
		if !fl.Verified {
			continue
		}
		claims = append(claims, fl.Claim)
		if fl.Sensitive {
			sens = append(sens, fl.Claim)
		}
	}
	return &tx.GrantConsent{
		Service:        f.Service,
		ServiceVersion: f.Version,
		Claims:         sortedSet(claims),
		Sensitive:      sortedSet(sens),
		Mode:           mode,
		Days:           days,
	}
}

// Sources returns the distinct issuer authority ids the form's verified
// values come from, sorted. Each is party to the grant and gets a box.
func (f *Form) Sources() []string {
	var out []string
	for _, fl := range f.Fields {
		if fl.Verified {
			out = append(out, fl.Source)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedSet(cs []tx.ClaimRef) []tx.ClaimRef {
	slices.SortFunc(cs, tx.ClaimRef.Compare)
	return slices.Compact(cs)
}
