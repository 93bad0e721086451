package tx

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/key"
)

func seedKey(t testing.TB, c byte) key.Private {
	t.Helper()
	k, err := key.FromSeed(bytes.Repeat([]byte{c}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sampleTxs(t testing.TB) map[string]*Tx {
	reg := seedKey(t, 1)
	res := seedKey(t, 2)
	rec := seedKey(t, 3)
	var h1, h2 Hash32
	for i := range h1 {
		h1[i], h2[i] = byte(i), byte(255-i)
	}
	resDID := "did:imi:muzmbtd4b25j4lxnigrd7zx7kqm4kypm"
	psn := "psn:" + base64.RawURLEncoding.EncodeToString(res.Public().Bytes())
	regDID := "did:imi:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	mk := func(signer string, lane uint32, seq uint64, b Body, k key.Private) *Tx {
		x, err := New("imi-chancheng-1", signer, lane, seq, b)
		if err != nil {
			t.Fatal(err)
		}
		x.Sign(k)
		return x
	}
	return map[string]*Tx{
		"register_resident": mk(regDID, 3, 7, &RegisterResident{DID: resDID, Key: res.Public(), RecoveryHash: h1, UniquenessTag: h2, Assurance: "high"}, reg),
		"rotate_key":        mk(resDID, 0, 0, &RotateKey{NewKey: rec.Public()}, res),
		"recover":           mk(resDID, 0, 1, &Recover{RecoveryKey: rec.Public(), NewKey: res.Public(), NewRecoveryHash: h1}, rec),
		"deactivate":        mk(regDID, 0, 9, &Deactivate{DID: resDID, Reason: "moved_away"}, reg),
		"reproof":           mk(regDID, 0, 10, &Reproof{DID: resDID, UniquenessTag: h2, NewKey: rec.Public(), NewRecoveryHash: h1, Assurance: "high"}, reg),
		"propose": mk(regDID, 0, 11, &Propose{Action: ActionAddAuthority, Authority: AuthoritySpec{
			ID: "cc-tax", NameZH: "禅城区税务局", NameEN: "Chancheng Tax Bureau", Key: rec.Public(),
			Roles: []string{"service_provider"}, ValidatorKey: res.Public().Bytes(), Power: 10, Endpoint: "http://127.0.0.1:8081",
		}, Reference: "CC-GOV/2026-014"}, reg),
		"vote":                 mk(regDID, 0, 12, &Vote{Proposal: "p-1"}, reg),
		"rotate_authority_key": mk(regDID, 0, 13, &RotateAuthorityKey{NewKey: rec.Public()}, reg),
		"register_credential_type": mk(regDID, 0, 14, &RegisterCredentialType{
			ID: "utility_account", VCT: "urn:imi:vct:utility_account", NameZH: "水电账户", NameEN: "Utility account",
			Claims:          []ClaimSpec{{Name: "account_number", NameZH: "账户号码", NameEN: "Account number", Sensitive: true}},
			MaxValidityDays: 365,
		}, reg),
		"reserve_status": mk(regDID, 1, 15, &ReserveStatus{Type: "utility_account", List: 0, Indices: []uint32{912734, 17}}, reg),
		"revoke":         mk(regDID, 1, 16, &Revoke{StatusRef{List: 0, Index: 912734}}, reg),
		"suspend":        mk(regDID, 1, 17, &Suspend{StatusRef{List: 0, Index: 17}}, reg),
		"unsuspend":      mk(regDID, 1, 18, &Unsuspend{StatusRef{List: 0, Index: 17}}, reg),
		"set_kem_key":    mk(regDID, 2, 0, &SetKEMKey{Key: h1[:]}, reg),
		"register_service": mk(regDID, 2, 1, &RegisterService{
			ID: "pension_application", NameZH: "养老金申领", NameEN: "Pension application",
			PurposeZH: "核定养老金", PurposeEN: "To pay a pension", LegalBasis: "Social Insurance Law, Art. 16",
			Required: []ClaimRef{{Type: "resident_identity", Claim: "given_name"}}, Optional: []ClaimRef{},
			RetentionDays: 3660, Modes: []string{ModeOneTime, ModeStanding}, MaxStandingDays: 730,
			Form: []FormField{{Name: "given_name", LabelZH: "名", LabelEN: "Given name", Claim: ClaimRef{Type: "resident_identity", Claim: "given_name"}},
				{Name: "phone", LabelZH: "电话", LabelEN: "Phone"}},
		}, reg),
		"grant_consent": mk(psn, 0, 0, &GrantConsent{
			Service: "pension_application", ServiceVersion: 1,
			Claims:    []ClaimRef{{Type: "resident_identity", Claim: "given_name"}, {Type: "resident_identity", Claim: "resident_id_number"}},
			Sensitive: []ClaimRef{{Type: "resident_identity", Claim: "resident_id_number"}},
			Mode:      ModeStanding, Days: 730,
			Subjects: []SealedSubject{{Authority: "cc-hrss", Box: h1[:]}, {Authority: "cc-psb", Box: h2[:]}},
			Guardian: &GuardianAct{Pseudonym: "psn:" + base64.RawURLEncoding.EncodeToString(rec.Public().Bytes()), Sig: bytes.Repeat([]byte{7}, 64)},
		}, res),
		"revoke_consent": mk(psn, 0, 1, &RevokeConsent{Service: "pension_application"}, res),
		"record_access": mk(regDID, 2, 2, &RecordAccess{Records: []AccessRecord{{
			ID: h1[:16], Subject: psn, Reader: "cc-hrss", Source: "cc-psb", Service: "pension_application",
			Claims: []ClaimRef{{Type: "resident_identity", Claim: "registered_address"}}, Channel: ChannelBackOffice, Outcome: OutcomeDenied, Reason: "consent_revoked",
		}}}, reg),
		"record_delegation": mk(regDID, 2, 3, &RecordDelegation{Guardian: regDID, Ward: resDID, Basis: BasisMinor,
			Reference: "CC-PSB/2026/0001", Scope: []string{"*"}, Days: 3650, GuardianConsent: true}, reg),
		"end_delegation": mk(resDID, 0, 2, &EndDelegation{Ward: resDID, ID: "0123456789abcdef0123456789abcdef"}, res),
	}
}

// TestGolden pins the canonical encoding: a change here breaks every signature
// ever made, so it must be deliberate (IMI_UPDATE_GOLDEN=1 go test -run Golden).
func TestGolden(t *testing.T) {
	for name, x := range sampleTxs(t) {
		path := filepath.Join("testdata", name+".golden")
		got := x.Encode()
		if os.Getenv("IMI_UPDATE_GOLDEN") == "1" {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run with IMI_UPDATE_GOLDEN=1 once)", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s encoding changed:\n got %s\nwant %s", name, got, want)
		}
		// Ed25519 is deterministic, so the signature is pinned too.
		back, body, err := Decode(want)
		if err != nil {
			t.Fatalf("%s: Decode(golden) = %v", name, err)
		}
		if body.TxType() != back.Type || !bytes.Equal(back.Encode(), want) {
			t.Errorf("%s: round trip changed the bytes", name)
		}
	}
}

func TestSignature(t *testing.T) {
	x := sampleTxs(t)["rotate_key"]
	if !x.VerifySig(seedKey(t, 2).Public()) {
		t.Fatal("good signature rejected")
	}
	if x.VerifySig(seedKey(t, 3).Public()) {
		t.Error("signature accepted under another key")
	}
	y := *x
	y.ChainID = "imi-other-1"
	if y.VerifySig(seedKey(t, 2).Public()) {
		t.Error("signature valid on another chain")
	}
	y = *x
	y.Seq++
	if y.VerifySig(seedKey(t, 2).Public()) {
		t.Error("signature valid for another sequence number")
	}
}

func TestDecodeRejects(t *testing.T) {
	good := string(sampleTxs(t)["rotate_key"].Encode())
	cases := map[string]string{
		"whitespace":      strings.Replace(good, `"v":1,`, `"v": 1,`, 1),
		"reordered":       strings.Replace(good, `{"v":1,"chain_id":"imi-chancheng-1",`, `{"chain_id":"imi-chancheng-1","v":1,`, 1),
		"duplicate key":   strings.Replace(good, `"v":1,`, `"v":1,"v":1,`, 1),
		"unknown field":   strings.Replace(good, `"v":1,`, `"v":1,"extra":0,`, 1),
		"unknown in body": strings.Replace(good, `"body":{`, `"body":{"x":1,`, 1),
		"body spacing":    strings.Replace(good, `"body":{"new_key":`, `"body":{ "new_key":`, 1),
		"missing field":   strings.Replace(good, `"lane":0,`, ``, 1),
		"version":         strings.Replace(good, `"v":1,`, `"v":2,`, 1),
		"unknown type":    strings.Replace(good, `"type":"rotate_key"`, `"type":"mint"`, 1),
		"trailing":        good + " ",
		"trailing object": good + "{}",
		"padded base64":   strings.Replace(good, `"}`, `=="}`, 1),
		"short sig":       good[:strings.LastIndex(good, `"sig":"`)] + `"sig":"AAAA"}`,
		"not json":        "\x00\x01",
		"empty":           "",
		"oversized":       strings.Repeat(" ", MaxBytes+1),
		"lane too large":  strings.Replace(good, `"lane":0,`, `"lane":256,`, 1),
	}
	for name, in := range cases {
		if in == good {
			t.Fatalf("%s: case did not change the input", name)
		}
		if _, _, err := Decode([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, x := range sampleTxs(f) {
		f.Add(x.Encode())
	}
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		x, body, err := Decode(raw)
		if err != nil {
			return
		}
		// Anything accepted is canonical: it re-encodes to the same bytes.
		if !bytes.Equal(x.Encode(), raw) || body.TxType() != x.Type {
			t.Fatalf("accepted non-canonical input %q", raw)
		}
	})
}
