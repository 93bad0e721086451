package consent_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/tx"
)

func ref(typ, claim string) tx.ClaimRef { return tx.ClaimRef{Type: typ, Claim: claim} }

var (
	familyName  = ref("resident_identity", "family_name")
	idNumber    = ref("resident_identity", "resident_id_number")
	regAddress  = ref("resident_identity", "registered_address")
	over60      = ref("resident_identity", "age_over_60")
	pension     = ref("social_insurance", "pension_status")
	hhNumber    = ref("household_registration", "household_number")
	hhAddress   = ref("household_registration", "registered_address")
	utilAddress = ref("utility_account", "service_address")
)

// allowance is an elderly allowance service with required and optional
// claims; its form lists them in the service's own order, not sorted.
func allowance() *tx.RegisterService {
	field := func(name string, c tx.ClaimRef) tx.FormField {
		return tx.FormField{Name: name, LabelZH: name + "_zh", LabelEN: name + "_en", Claim: c}
	}
	return &tx.RegisterService{
		ID:       "elderly_allowance",
		Required: []tx.ClaimRef{familyName, idNumber, over60, pension, regAddress},
		Optional: []tx.ClaimRef{utilAddress, hhNumber},
		Modes:    []string{tx.ModeOneTime, tx.ModeStanding},
		Form: []tx.FormField{
			field("name", familyName),
			field("id", idNumber),
			field("address", regAddress),
			field("over60", over60),
			field("pension", pension),
			field("utility_address", utilAddress),
			field("household", hhNumber),
		},
	}
}

// sensitiveClaims follows the demo district's credential types.
func sensitiveClaims(c tx.ClaimRef) bool {
	return c == idNumber || c == pension || c == hhNumber
}

var (
	identity = consent.Held{Type: "resident_identity", Issuer: "psb", Index: 0, Claims: map[string]any{
		"family_name": "王", "resident_id_number": "11010519491231002X", "registered_address": "北京市朝阳区建国路88号", "age_over_60": true,
	}}
	insurance = consent.Held{Type: "social_insurance", Issuer: "hrss", Index: 1, Claims: map[string]any{"pension_status": "receiving"}}
	household = consent.Held{Type: "household_registration", Issuer: "psb", Index: 2, Claims: map[string]any{
		"household_number": "110105001234", "registered_address": "北京市海淀区中关村大街1号",
	}}
	utility = consent.Held{Type: "utility_account", Issuer: "utility", Index: 3, Claims: map[string]any{"service_address": "北京市朝阳区建国路88号"}}
)

// filled is what a test expects of one field: the value and where it came
// from, or nothing.
type filled struct {
	value  any
	source string
	cred   int
}

var none = filled{cred: -1}

func TestPrefill(t *testing.T) {
	all := []consent.Held{identity, insurance, household, utility}
	for _, tc := range []struct {
		name    string
		held    []consent.Held
		want    map[string]filled // by field name; fields not listed want none
		missing []tx.ClaimRef
	}{
		{
			name:    "nothing held",
			missing: []tx.ClaimRef{over60, familyName, regAddress, idNumber, pension},
		},
		{
			name: "everything held",
			held: all,
			want: map[string]filled{
				"name": {"王", "psb", 0}, "id": {"11010519491231002X", "psb", 0},
				"address": {"北京市朝阳区建国路88号", "psb", 0}, "over60": {true, "psb", 0},
				"pension": {"receiving", "hrss", 1}, "utility_address": {"北京市朝阳区建国路88号", "utility", 3},
				"household": {"110105001234", "psb", 2},
			},
			missing: []tx.ClaimRef{},
		},
		{
			// The household register has a registered_address too, but the
			// form asks for the identity credential's: no guessing.
			name:    "value only from the exact type",
			held:    []consent.Held{household, utility},
			want:    map[string]filled{"household": {"110105001234", "psb", 2}, "utility_address": {"北京市朝阳区建国路88号", "utility", 3}},
			missing: []tx.ClaimRef{over60, familyName, regAddress, idNumber, pension},
		},
		{
			name: "first held credential of the type wins",
			held: []consent.Held{
				{Type: "social_insurance", Issuer: "hrss", Index: 7, Claims: map[string]any{"pension_status": "suspended"}},
				insurance,
			},
			want:    map[string]filled{"pension": {"suspended", "hrss", 7}},
			missing: []tx.ClaimRef{over60, familyName, regAddress, idNumber},
		},
		{
			name: "undisclosed, null or unissued claims are skipped",
			held: []consent.Held{
				{Type: "resident_identity", Issuer: "", Index: 4, Claims: map[string]any{"family_name": "李"}},    // no issuer
				{Type: "resident_identity", Issuer: "psb", Index: 5, Claims: map[string]any{"age_over_60": nil}}, // null
				{Type: "resident_identity", Issuer: "psb", Index: 6, Claims: map[string]any{"family_name": "张"}}, // lacks the rest
			},
			want:    map[string]filled{"name": {"张", "psb", 6}},
			missing: []tx.ClaimRef{over60, idNumber, regAddress, pension},
		},
		{
			name: "optional fields are never missing",
			held: []consent.Held{identity, insurance},
			want: map[string]filled{
				"name": {"王", "psb", 0}, "id": {"11010519491231002X", "psb", 0},
				"address": {"北京市朝阳区建国路88号", "psb", 0}, "over60": {true, "psb", 0},
				"pension": {"receiving", "hrss", 1},
			},
			missing: []tx.ClaimRef{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := allowance()
			f := consent.Prefill(svc, 3, tc.held, sensitiveClaims)
			if f.Service != svc.ID || f.Version != 3 {
				t.Errorf("form for %s v%d, want %s v3", f.Service, f.Version, svc.ID)
			}
			if len(f.Fields) != len(svc.Form) {
				t.Fatalf("%d fields, want %d", len(f.Fields), len(svc.Form))
			}
			for i, fl := range f.Fields {
				ff := svc.Form[i]
				if fl.Name != ff.Name || fl.LabelZH != ff.LabelZH || fl.LabelEN != ff.LabelEN || fl.Claim != ff.Claim {
					t.Errorf("field %d = %s %v, want %s %v", i, fl.Name, fl.Claim, ff.Name, ff.Claim)
				}
				want, ok := tc.want[fl.Name]
				if !ok {
					want = none
				}
				got := filled{fl.Value, fl.Source, fl.Credential}
				if !reflect.DeepEqual(got, want) || fl.Verified != (want.value != nil) {
					t.Errorf("field %s = %+v verified %v, want %+v", fl.Name, got, fl.Verified, want)
				}
				if fl.Required != slices.Contains(svc.Required, fl.Claim) {
					t.Errorf("field %s required = %v", fl.Name, fl.Required)
				}
				if fl.Sensitive != sensitiveClaims(fl.Claim) {
					t.Errorf("field %s sensitive = %v", fl.Name, fl.Sensitive)
				}
				if fl.SelfDeclared != nil {
					t.Errorf("field %s self-declared %v by Prefill", fl.Name, fl.SelfDeclared)
				}
			}
			want := slices.Clone(tc.missing)
			slices.SortFunc(want, tx.ClaimRef.Compare)
			if want == nil {
				want = []tx.ClaimRef{}
			}
			if !reflect.DeepEqual(f.Missing, want) {
				t.Errorf("Missing = %v, want %v", f.Missing, want)
			}
		})
	}
}

func TestPrefillRequiredClaimNotOnForm(t *testing.T) {
	svc := allowance()
	svc.Form = svc.Form[1:] // the form forgot family_name
	f := consent.Prefill(svc, 1, []consent.Held{identity, insurance}, sensitiveClaims)
	if want := []tx.ClaimRef{familyName}; !reflect.DeepEqual(f.Missing, want) {
		t.Errorf("Missing = %v, want %v", f.Missing, want)
	}
}

func TestPrefillNilSensitiveMarksAll(t *testing.T) {
	f := consent.Prefill(allowance(), 1, nil, nil)
	for _, fl := range f.Fields {
		if !fl.Sensitive {
			t.Errorf("field %s not sensitive with a nil sensitive func", fl.Name)
		}
	}
}

func TestGrant(t *testing.T) {
	svc := allowance()
	// Two fields for one claim: the grant names it once.
	svc.Form = append(svc.Form, tx.FormField{Name: "name_again", Claim: familyName})
	for _, tc := range []struct {
		name            string
		held            []consent.Held
		edit            func(*consent.Form)
		claims, sens    []tx.ClaimRef
		sources         []string
		missingExpected bool
	}{
		{
			name:    "everything shared",
			held:    []consent.Held{utility, insurance, household, identity},
			claims:  []tx.ClaimRef{hhNumber, over60, familyName, regAddress, idNumber, pension, utilAddress},
			sens:    []tx.ClaimRef{hhNumber, idNumber, pension},
			sources: []string{"hrss", "psb", "utility"},
		},
		{
			name: "optional fields left out",
			held: []consent.Held{utility, insurance, household, identity},
			edit: func(f *consent.Form) {
				f.Fields = slices.DeleteFunc(f.Fields, func(fl consent.Field) bool { return !fl.Required })
			},
			claims:  []tx.ClaimRef{over60, familyName, regAddress, idNumber, pension},
			sens:    []tx.ClaimRef{idNumber, pension},
			sources: []string{"hrss", "psb"},
		},
		{
			name: "self-declared optional field stays outside the grant",
			held: []consent.Held{identity, insurance},
			edit: func(f *consent.Form) {
				for i := range f.Fields {
					if f.Fields[i].Claim == hhNumber {
						f.Fields[i].SelfDeclared = "110105009999"
					}
				}
			},
			claims:  []tx.ClaimRef{over60, familyName, regAddress, idNumber, pension},
			sens:    []tx.ClaimRef{idNumber, pension},
			sources: []string{"hrss", "psb"},
		},
		{
			name: "self-declared required field is not granted",
			held: []consent.Held{identity},
			edit: func(f *consent.Form) {
				for i := range f.Fields {
					if f.Fields[i].Claim == pension {
						f.Fields[i].SelfDeclared = "receiving"
					}
				}
			},
			claims:          []tx.ClaimRef{over60, familyName, regAddress, idNumber},
			sens:            []tx.ClaimRef{idNumber},
			sources:         []string{"psb"},
			missingExpected: true,
		},
		{
			name:            "nothing held",
			claims:          []tx.ClaimRef{},
			sens:            []tx.ClaimRef{},
			missingExpected: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := consent.Prefill(svc, 2, tc.held, sensitiveClaims)
			if tc.edit != nil {
				tc.edit(f)
			}
			if got := len(f.Missing) > 0; got != tc.missingExpected {
				t.Errorf("Missing = %v", f.Missing)
			}
			g := f.Grant(tx.ModeStanding, 90)
			want := &tx.GrantConsent{
				Service: svc.ID, ServiceVersion: 2,
				Claims: tc.claims, Sensitive: tc.sens,
				Mode: tx.ModeStanding, Days: 90,
			}
			if !reflect.DeepEqual(g, want) {
				t.Errorf("Grant =\n%+v\nwant\n%+v", g, want)
			}
			if !slices.IsSortedFunc(g.Claims, tx.ClaimRef.Compare) {
				t.Errorf("claims not sorted: %v", g.Claims)
			}
			if got := f.Sources(); !slices.Equal(got, tc.sources) {
				t.Errorf("Sources = %v, want %v", got, tc.sources)
			}
		})
	}
}

// TestGrantEncodes: the body Grant builds goes through the ledger's
// canonical transaction encoding unchanged.
func TestGrantEncodes(t *testing.T) {
	f := consent.Prefill(allowance(), 1, []consent.Held{identity, insurance}, sensitiveClaims)
	g := f.Grant(tx.ModeOneTime, 0)
	g.Subjects = []tx.SealedSubject{{Authority: "psb", Box: make([]byte, consent.MaxBox)}}
	k := mustKey(t, 1)
	psn := "psn:test"
	txn, err := tx.New("imi-demo-1", psn, 0, 1, g)
	if err != nil {
		t.Fatal(err)
	}
	txn.Sign(k)
	_, body, err := tx.Decode(txn.Encode())
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !reflect.DeepEqual(body, g) {
		t.Errorf("decoded %+v, want %+v", body, g)
	}
}
