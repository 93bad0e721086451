package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// TestPrepareProposalKeepsLanesInOrder: the mempool listed a lane out of
// order; the proposal puts it back, drops what has no predecessor and
// replays, and keeps every other transaction where it was.
func TestPrepareProposalKeepsLanesInOrder(t *testing.T) {
	d := withAlice(t) // psb lane 0 used once: the next is 1
	reg := func(lane uint32, seq uint64, name string, n int) []byte {
		return build(t, testChainID, d.psb.did, lane, seq, newResident(t, name, n).register(), d.psb.key)
	}
	s1, s2, s3, s5 := reg(0, 1, "r1", 11), reg(0, 2, "r2", 12), reg(0, 3, "r3", 13), reg(0, 5, "r5", 15)
	replay := reg(0, 0, "r0", 10)
	other := reg(4, 0, "l4", 14)
	junk := []byte(`not a transaction`)
	in := [][]byte{s2, other, s3, replay, s1, junk, s5}
	// As in a node, the mempool has checked them: its view is ahead of the
	// committed state the block builds on.
	for _, raw := range [][]byte{s1, s2, s3, other} {
		if c := d.check(raw); c != ledger.OK {
			t.Fatalf("CheckTx = %s", c.Name())
		}
	}
	res, err := d.app.PrepareProposal(context.Background(), &abci.RequestPrepareProposal{Txs: in, MaxTxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{other, s1, s2, s3, junk}
	if !equalTxs(res.Txs, want) {
		t.Fatalf("proposal = %v, want %v", txNames(res.Txs), txNames(want))
	}
	// The reordered block applies every lane transaction.
	d.want(res.Txs, ledger.OK, ledger.OK, ledger.OK, ledger.OK, ledger.CodeMalformed)

	// The byte limit still holds.
	res, _ = d.app.PrepareProposal(context.Background(), &abci.RequestPrepareProposal{Txs: [][]byte{s5}, MaxTxBytes: int64(len(s5) - 1)})
	if len(res.Txs) != 0 {
		t.Errorf("a transaction over MaxTxBytes was proposed")
	}
}

func equalTxs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// txNames labels transactions by signer, lane and sequence, for messages.
func txNames(txs [][]byte) []string {
	out := make([]string, len(txs))
	for i, raw := range txs {
		x, _, err := tx.Decode(raw)
		if err != nil {
			out[i] = "junk"
			continue
		}
		out[i] = fmt.Sprintf("%s…/%d/%d", x.Signer[:12], x.Lane, x.Seq)
	}
	return out
}
