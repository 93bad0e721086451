package consent_test

import (
	"fmt"
	"slices"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/tx"
)

// A wallet fills an allowance form from the credentials it holds. Verified
// values carry their source authority; the resident holds no social
// insurance credential, so the required pension status is missing. The
// resident drops the optional utility address, and the grant covers what
// is left.
func ExamplePrefill() {
	claim := func(typ, name string) tx.ClaimRef { return tx.ClaimRef{Type: typ, Claim: name} }
	svc := &tx.RegisterService{
		ID:       "elderly_allowance",
		Required: []tx.ClaimRef{claim("resident_identity", "family_name"), claim("resident_identity", "resident_id_number"), claim("social_insurance", "pension_status")},
		Optional: []tx.ClaimRef{claim("utility_account", "service_address")},
		Form: []tx.FormField{
			{Name: "name", LabelZH: "姓", LabelEN: "Family name", Claim: claim("resident_identity", "family_name")},
			{Name: "id", LabelZH: "公民身份号码", LabelEN: "Resident ID number", Claim: claim("resident_identity", "resident_id_number")},
			{Name: "pension", LabelZH: "养老保险状态", LabelEN: "Pension status", Claim: claim("social_insurance", "pension_status")},
			{Name: "address", LabelZH: "用水用电地址", LabelEN: "Service address", Claim: claim("utility_account", "service_address")},
		},
	}
	held := []consent.Held{
		{Type: "resident_identity", Issuer: "psb", Index: 0, Claims: map[string]any{"family_name": "王", "resident_id_number": "11010519491231002X"}},
		{Type: "utility_account", Issuer: "utility", Index: 1, Claims: map[string]any{"service_address": "北京市朝阳区建国路88号"}},
	}
	sensitive := func(c tx.ClaimRef) bool { return c.Claim == "resident_id_number" || c.Claim == "pension_status" }

	f := consent.Prefill(svc, 1, held, sensitive)
	for _, fl := range f.Fields {
		src := "not held"
		if fl.Verified {
			src = "verified by " + fl.Source
		}
		if fl.Required {
			src += ", required"
		}
		if fl.Sensitive {
			src += ", sensitive"
		}
		fmt.Printf("%s (%s): %v [%s]\n", fl.LabelEN, fl.LabelZH, fl.Value, src)
	}
	fmt.Println("missing:", f.Missing)

	f.Fields = slices.DeleteFunc(f.Fields, func(fl consent.Field) bool { return fl.Name == "address" })
	g := f.Grant(tx.ModeOneTime, 0)
	fmt.Println("grant claims:", g.Claims)
	fmt.Println("sensitive:", g.Sensitive)
	fmt.Println("sources:", f.Sources())
	// Output:
	// Family name (姓): 王 [verified by psb, required]
	// Resident ID number (公民身份号码): 11010519491231002X [verified by psb, required, sensitive]
	// Pension status (养老保险状态): <nil> [not held, required, sensitive]
	// Service address (用水用电地址): 北京市朝阳区建国路88号 [verified by utility]
	// missing: [social_insurance.pension_status]
	// grant claims: [resident_identity.family_name resident_identity.resident_id_number]
	// sensitive: [resident_identity.resident_id_number]
	// sources: [psb]
}
