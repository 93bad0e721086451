package ledger_test

import (
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/ledger"
)

// TestCodesAreStable pins every code's number and name: clients branch on
// them and old blocks record them, so changing one is a breaking change.
func TestCodesAreStable(t *testing.T) {
	want := []struct {
		code ledger.Code
		num  uint32
		name string
	}{
		{ledger.OK, 0, "ok"},
		{ledger.CodeMalformed, 1, "malformed"},
		{ledger.CodeWrongChain, 2, "wrong_chain"},
		{ledger.CodeUnknownSigner, 3, "unknown_signer"},
		{ledger.CodeBadSequence, 4, "bad_sequence"},
		{ledger.CodeBadSignature, 5, "bad_signature"},
		{ledger.CodeNotAuthorized, 6, "not_authorized"},
		{ledger.CodeAlreadyRegistered, 7, "already_registered"},
		{ledger.CodeDIDExists, 8, "did_exists"},
		{ledger.CodeNotFound, 9, "not_found"},
		{ledger.CodeDeactivated, 10, "deactivated"},
		{ledger.CodeRecoveryMismatch, 11, "recovery_mismatch"},
		{ledger.CodeUniquenessMismatch, 12, "uniqueness_mismatch"},
		{ledger.CodeInvalidField, 13, "invalid_field"},
		{ledger.CodeProposalClosed, 14, "proposal_closed"},
		{ledger.CodeAlreadyVoted, 15, "already_voted"},
		{ledger.CodeProposalInvalid, 16, "proposal_invalid"},
		{ledger.CodeInternal, 17, "internal"},
		{ledger.CodeStatusIndexTaken, 18, "status_index_taken"},
		{ledger.CodeStatusFinal, 19, "status_not_allowed"},
		{ledger.CodeSequenceAhead, 20, "sequence_ahead"},
		{ledger.CodeNoConsent, 21, "no_active_consent"},
	}
	all := ledger.Codes()
	if len(all) != len(want) {
		t.Fatalf("Codes() lists %d codes, want %d", len(all), len(want))
	}
	for i, w := range want {
		if uint32(w.code) != w.num || w.code.Name() != w.name || all[i] != w.code {
			t.Errorf("code %d: number %d name %q (Codes()[%d] = %d), want %d %q", i, w.code, w.code.Name(), i, all[i], w.num, w.name)
		}
		if w.code.Message() == "" || w.code.MessageZH() == "" {
			t.Errorf("%s has no English or Chinese message", w.name)
		}
	}
	if got := ledger.Code(99).Name(); got != "unknown" {
		t.Errorf("Code(99).Name() = %q", got)
	}
}

func TestRejectionError(t *testing.T) {
	r := &ledger.Rejection{Code: ledger.CodeBadSequence}
	if r.Error() != ledger.CodeBadSequence.Message() {
		t.Errorf("without detail: %q", r.Error())
	}
	r.Detail = "got 5, the next is 2"
	if !strings.HasPrefix(r.Error(), ledger.CodeBadSequence.Message()) || !strings.HasSuffix(r.Error(), ": got 5, the next is 2") {
		t.Errorf("with detail: %q", r.Error())
	}
}
