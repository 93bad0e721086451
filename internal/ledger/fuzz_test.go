package ledger_test

import (
	"context"
	"testing"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// FuzzTransaction feeds arbitrary bytes to CheckTx and FinalizeBlock: the
// App must never fail or panic on a transaction, must give CheckTx and
// FinalizeBlock the same verdict on the same state, and must refuse
// anything that does not decode as malformed.
func FuzzTransaction(f *testing.F) {
	d := newDistrict(f, memApp(f))
	seeds := [][]byte{
		d.tx(d.psb.party, d.alice.register()),
		d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()}),
		d.tx(d.psb.party, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonMovedAway}),
		d.tx(d.psb.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "tax"})),
		d.tx(d.hrss.party, vote("p-1")),
		[]byte("{}"),
		nil,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := newDistrict(t, memApp(t))
		d.block() // CheckTx judges by the last committed block
		check := d.check(raw)
		res, err := d.app.FinalizeBlock(context.Background(), &abci.RequestFinalizeBlock{Height: 2, Time: d.now.Add(blockInterval), Txs: [][]byte{raw}})
		if err != nil || len(res.TxResults) != 1 {
			t.Fatalf("FinalizeBlock = %v, %v", res, err)
		}
		got := ledger.Code(res.TxResults[0].Code)
		if got != check {
			t.Errorf("CheckTx said %s, FinalizeBlock %s", check.Name(), got.Name())
		}
		if _, _, err := tx.Decode(raw); err != nil && got != ledger.CodeMalformed {
			t.Errorf("undecodable input got %s, want malformed", got.Name())
		}
		if _, err := d.app.Commit(context.Background(), &abci.RequestCommit{}); err != nil {
			t.Fatal(err)
		}
		if tr, err := d.app.TxResult(tx.Hash(raw)); err != nil || tr.Code != got {
			t.Errorf("TxResult = %+v, %v", tr, err)
		}
	})
}
