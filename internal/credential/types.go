// Package credential is IMI's credential layer: the credential types the
// demo district publishes, issuing SD-JWT VCs whose status entries and issuer
// keys live on the ledger, and verifying presentations against the ledger.
//
// The ledger holds claim names, status bits and keys; claim values exist only
// in the SD-JWT the resident holds and in what the resident discloses.
package credential

import (
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// Credential type ids of the demo district.
const (
	TypeResidentIdentity      = "resident_identity"
	TypeHouseholdRegistration = "household_registration"
	TypeSocialInsurance       = "social_insurance"
	TypeMedicalInsurance      = "medical_insurance"
	TypeUtilityAccount        = "utility_account"
)

// VCTPrefix starts the vct of every IMI credential type.
const VCTPrefix = "urn:imi:vct:"

func c(name, zh, en string, sensitive bool) tx.ClaimSpec {
	return tx.ClaimSpec{Name: name, NameZH: zh, NameEN: en, Sensitive: sensitive}
}

// DemoTypes are the credential types of the demo district, each with the
// authority that publishes it at genesis. Sensitive follows PIPL Art. 28:
// identity numbers, medical and financial data, whereabouts.
func DemoTypes(psb, hrss, hsb, utility string) []ledger.GenesisCredentialType {
	return []ledger.GenesisCredentialType{
		{Issuer: psb, Type: tx.RegisterCredentialType{
			ID: TypeResidentIdentity, VCT: VCTPrefix + TypeResidentIdentity, NameZH: "居民身份", NameEN: "Resident identity",
			Claims: []tx.ClaimSpec{
				c("family_name", "姓", "Family name", false),
				c("given_name", "名", "Given name", false),
				c("sex", "性别", "Sex", false),
				c("ethnicity", "民族", "Ethnicity", true),
				c("birth_date", "出生日期", "Date of birth", false),
				c("resident_id_number", "公民身份号码", "Resident ID number", true),
				c("registered_address", "户籍地址", "Registered address", false),
				c("age_over_18", "年满18周岁", "Aged 18 or over", false),
				c("age_over_60", "年满60周岁", "Aged 60 or over", false),
			},
			MaxValidityDays: 3660,
		}},
		{Issuer: psb, Type: tx.RegisterCredentialType{
			ID: TypeHouseholdRegistration, VCT: VCTPrefix + TypeHouseholdRegistration, NameZH: "户籍登记", NameEN: "Household registration",
			Claims: []tx.ClaimSpec{
				c("household_number", "户号", "Household number", true),
				c("household_head", "户主姓名", "Head of household", false),
				c("relationship_to_head", "与户主关系", "Relationship to the head", false),
				c("registered_address", "户籍地址", "Registered address", false),
				c("household_type", "户口性质", "Household type", false),
			},
			MaxValidityDays: 1830,
		}},
		{Issuer: hrss, Type: tx.RegisterCredentialType{
			ID: TypeSocialInsurance, VCT: VCTPrefix + TypeSocialInsurance, NameZH: "社会保险", NameEN: "Social insurance",
			Claims: []tx.ClaimSpec{
				c("insurance_number", "社会保障号码", "Social insurance number", true),
				c("pension_status", "养老保险状态", "Pension status", true),
				c("contribution_years", "缴费年限", "Contribution years", true),
			},
			MaxValidityDays: 366,
		}},
		{Issuer: hsb, Type: tx.RegisterCredentialType{
			ID: TypeMedicalInsurance, VCT: VCTPrefix + TypeMedicalInsurance, NameZH: "医疗保险", NameEN: "Medical insurance",
			Claims: []tx.ClaimSpec{
				c("insurance_number", "医保号码", "Medical insurance number", true),
				c("plan", "参保险种", "Insurance plan", true),
			},
			MaxValidityDays: 366,
		}},
		{Issuer: utility, Type: tx.RegisterCredentialType{
			ID: TypeUtilityAccount, VCT: VCTPrefix + TypeUtilityAccount, NameZH: "水电账户", NameEN: "Utility account",
			Claims: []tx.ClaimSpec{
				c("account_number", "账户号码", "Account number", true),
				c("service_address", "用水用电地址", "Service address", false),
			},
			MaxValidityDays: 1830,
		}},
	}
}
