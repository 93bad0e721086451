// Package service is how a resident's data reaches a public service: the demo
// district's service catalogue, applications by presentation (the form filled
// from the wallet), back-office reads under a standing consent, and the access
// records both leave on the ledger.
package service

import (
	"slices"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// Service ids of the demo district.
const (
	Pension         = "pension_application"
	MedicalEnrol    = "medical_insurance_enrolment"
	UtilityAccount  = "utility_account_opening"
	HouseholdCert   = "household_certificate"
	demoRetainYears = 366
)

func ref(typ, claim string) tx.ClaimRef { return tx.ClaimRef{Type: typ, Claim: claim} }

func field(name, zh, en string, c tx.ClaimRef) tx.FormField {
	return tx.FormField{Name: name, LabelZH: zh, LabelEN: en, Claim: c}
}

var (
	familyName = ref(credential.TypeResidentIdentity, "family_name")
	givenName  = ref(credential.TypeResidentIdentity, "given_name")
	idNumber   = ref(credential.TypeResidentIdentity, "resident_id_number")
	birthDate  = ref(credential.TypeResidentIdentity, "birth_date")
	over60     = ref(credential.TypeResidentIdentity, "age_over_60")
	address    = ref(credential.TypeResidentIdentity, "registered_address")
	siNumber   = ref(credential.TypeSocialInsurance, "insurance_number")
	siYears    = ref(credential.TypeSocialInsurance, "contribution_years")
	household  = ref(credential.TypeHouseholdRegistration, "household_number")
	hhAddress  = ref(credential.TypeHouseholdRegistration, "registered_address")
	hhHead     = ref(credential.TypeHouseholdRegistration, "household_head")
	svcAddress = ref(credential.TypeUtilityAccount, "service_address")
)

// Demo returns the demo district's services: psb, hrss, hsb and utility are
// the ids of the authorities that publish them. Each asks only for what its
// purpose needs; the form shows every claim it reads.
func Demo(psb, hrss, hsb, utility string) []ledger.GenesisService {
	return []ledger.GenesisService{
		{Authority: hrss, Service: tx.RegisterService{
			ID: Pension, NameZH: "养老金申领", NameEN: "Pension application",
			PurposeZH:  "核定养老金领取资格并按月发放养老金",
			PurposeEN:  "To decide whether you are entitled to a pension and to pay it monthly",
			LegalBasis: "《中华人民共和国社会保险法》第十六条 / Social Insurance Law of the PRC, Art. 16",
			Required:   sorted(familyName, givenName, idNumber, over60, address, siNumber),
			Optional:   sorted(siYears),
			// Kept while the pension is paid and for the period the law sets after.
			RetentionDays: 30 * demoRetainYears, Modes: []string{tx.ModeOneTime, tx.ModeStanding}, MaxStandingDays: 2 * 366,
			Form: []tx.FormField{
				field("family_name", "姓", "Family name", familyName),
				field("given_name", "名", "Given name", givenName),
				field("id_number", "公民身份号码", "Resident ID number", idNumber),
				field("age_over_60", "年满60周岁", "Aged 60 or over", over60),
				field("address", "户籍地址", "Registered address", address),
				field("insurance_number", "社会保障号码", "Social insurance number", siNumber),
				field("contribution_years", "缴费年限（可选）", "Contribution years (optional)", siYears),
				field("bank_account", "收款银行账户（自填）", "Bank account for payments (you type it)", tx.ClaimRef{}),
			},
		}},
		{Authority: hsb, Service: tx.RegisterService{
			ID: MedicalEnrol, NameZH: "城乡居民医疗保险参保登记", NameEN: "Medical insurance enrolment",
			PurposeZH:     "办理城乡居民基本医疗保险参保登记",
			PurposeEN:     "To enrol you in the basic medical insurance for urban and rural residents",
			LegalBasis:    "《中华人民共和国社会保险法》第二十五条 / Social Insurance Law of the PRC, Art. 25",
			Required:      sorted(familyName, givenName, idNumber, birthDate, address),
			Optional:      sorted(household),
			RetentionDays: 10 * demoRetainYears, Modes: []string{tx.ModeOneTime, tx.ModeStanding}, MaxStandingDays: 366,
			Form: []tx.FormField{
				field("family_name", "姓", "Family name", familyName),
				field("given_name", "名", "Given name", givenName),
				field("id_number", "公民身份号码", "Resident ID number", idNumber),
				field("birth_date", "出生日期", "Date of birth", birthDate),
				field("address", "户籍地址", "Registered address", address),
				field("household_number", "户号（可选）", "Household number (optional)", household),
			},
		}},
		{Authority: utility, Service: tx.RegisterService{
			ID: UtilityAccount, NameZH: "开立水电账户", NameEN: "Opening a water and power account",
			PurposeZH:     "开立供水供电账户并寄送账单",
			PurposeEN:     "To open your water and power account and send you bills",
			LegalBasis:    "《民法典》第六百四十八条（供用电合同）/ Civil Code, Art. 648 (supply contracts)",
			Required:      sorted(familyName, givenName),
			Optional:      sorted(svcAddress),
			RetentionDays: 5 * demoRetainYears, Modes: []string{tx.ModeOneTime},
			Form: []tx.FormField{
				field("family_name", "姓", "Family name", familyName),
				field("given_name", "名", "Given name", givenName),
				field("service_address", "用水用电地址", "Service address", svcAddress),
				field("phone", "联系电话（自填）", "Phone (you type it)", tx.ClaimRef{}),
			},
		}},
		{Authority: psb, Service: tx.RegisterService{
			ID: HouseholdCert, NameZH: "户籍证明开具", NameEN: "Household registration certificate",
			PurposeZH:     "开具户籍证明",
			PurposeEN:     "To issue a certificate of your household registration",
			LegalBasis:    "《中华人民共和国户口登记条例》/ Regulations on Household Registration of the PRC",
			Required:      sorted(familyName, givenName, idNumber, hhAddress, household),
			Optional:      sorted(hhHead),
			RetentionDays: 3 * demoRetainYears, Modes: []string{tx.ModeOneTime},
			Form: []tx.FormField{
				field("family_name", "姓", "Family name", familyName),
				field("given_name", "名", "Given name", givenName),
				field("id_number", "公民身份号码", "Resident ID number", idNumber),
				field("household_number", "户号", "Household number", household),
				field("address", "户籍地址", "Registered address", hhAddress),
				field("household_head", "户主姓名（可选）", "Head of household (optional)", hhHead),
			},
		}},
	}
}

func sorted(refs ...tx.ClaimRef) []tx.ClaimRef {
	out := slices.Clone(refs)
	slices.SortFunc(out, tx.ClaimRef.Compare)
	return out
}
