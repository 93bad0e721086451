package ledger_test

import (
	"bytes"
	"fmt"
	"testing"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

func TestReplay(t *testing.T) {
	t.Run("same bytes in a later block", func(t *testing.T) {
		d := newDistrict(t, memApp(t))
		raw := d.tx(d.psb.party, d.alice.register())
		d.ok(raw)
		first := d.height
		if got := d.check(raw); got != ledger.CodeBadSequence {
			t.Errorf("CheckTx of a committed transaction = %s, want bad_sequence", got.Name())
		}
		d.want1(raw, ledger.CodeBadSequence)
		tr, err := d.app.TxResult(tx.Hash(raw))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Code != ledger.OK || tr.Height != first {
			t.Errorf("TxResult after the replay = %+v, want the first outcome (ok at %d)", tr, first)
		}
		if meta, _, _ := d.app.Meta(0); meta.Residents != 1 {
			t.Errorf("Residents = %d after a replay, want 1", meta.Residents)
		}
	})
	t.Run("same bytes twice in one block", func(t *testing.T) {
		d := withAlice(t)
		raw := d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()})
		d.want([][]byte{raw, raw}, ledger.OK, ledger.CodeBadSequence)
		if tr, _ := d.app.TxResult(tx.Hash(raw)); tr == nil || tr.Code != ledger.OK || tr.Index != 0 {
			t.Errorf("TxResult = %+v, want ok at index 0", tr)
		}
		if r := d.resident(d.alice.did); r.KeyVersion != 2 {
			t.Errorf("key version %d, want 2 (applied once)", r.KeyVersion)
		}
	})
	t.Run("sequence gap", func(t *testing.T) {
		d := withAlice(t)
		gap := build(t, testChainID, d.psb.did, 0, 5, d.bob.register(), d.psb.key)
		if got := d.check(gap); got != ledger.CodeSequenceAhead {
			t.Errorf("CheckTx = %s, want sequence_ahead", got.Name())
		}
		d.want1(gap, ledger.CodeSequenceAhead)
	})
	t.Run("old sequence number, new content", func(t *testing.T) {
		d := withAlice(t)
		old := build(t, testChainID, d.psb.did, 0, 0, d.bob.register(), d.psb.key)
		d.want1(old, ledger.CodeBadSequence)
	})
}

func TestLanes(t *testing.T) {
	d := newDistrict(t, memApp(t))
	carol := newResident(t, "carol", 3)
	// Three counters of the registrar, each on its own lane, in one block;
	// lane 1 twice in order.
	l0 := d.txLane(d.psb.did, d.psb.key, 0, d.alice.register())
	l1a := d.txLane(d.psb.did, d.psb.key, 1, d.bob.register())
	l1b := d.txLane(d.psb.did, d.psb.key, 1, carol.register())
	l7 := build(t, testChainID, d.psb.did, 7, 0, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonMovedAway}, d.psb.key)
	d.want([][]byte{l0, l1b, l1a, l7}, ledger.OK, ledger.CodeSequenceAhead, ledger.OK, ledger.OK)
	for lane, want := range map[uint32]uint64{0: 1, 1: 1, 7: 1, 2: 0} {
		if got := d.app.NextSeq(d.psb.did, lane); got != want {
			t.Errorf("NextSeq lane %d = %d, want %d", lane, got, want)
		}
	}
	// A gap on one lane does not block another.
	d.want([][]byte{
		build(t, testChainID, d.psb.did, 1, 3, carol.register(), d.psb.key),
		build(t, testChainID, d.psb.did, 2, 0, carol.register(), d.psb.key),
	}, ledger.CodeSequenceAhead, ledger.OK)
	// The same sequence number on two lanes is two transactions.
	if n := d.app.NextSeq(d.psb.did, 2); n != 1 {
		t.Errorf("NextSeq lane 2 = %d, want 1", n)
	}
	lane256 := build(t, testChainID, d.psb.did, 0, 0, carol.register(), d.psb.key)
	lane256 = bytes.Replace(lane256, []byte(`"lane":0,`), []byte(`"lane":256,`), 1)
	d.want1(lane256, ledger.CodeMalformed)
}

func TestEnvelopeRefusals(t *testing.T) {
	tampered := func(raw []byte, edit func(x *tx.Tx)) []byte {
		x, _, err := tx.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		edit(x)
		return x.Encode()
	}
	tests := []struct {
		name string
		make func(d *district) []byte
		want ledger.Code
	}{
		{"another chain", func(d *district) []byte {
			return build(t, "imi-other-1", d.alice.did, 0, 0, &tx.RotateKey{NewKey: d.bob.key.Public()}, d.alice.key)
		}, ledger.CodeWrongChain},
		{"tampered signature", func(d *district) []byte {
			return tampered(d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()}), func(x *tx.Tx) { x.Sig[10] ^= 1 })
		}, ledger.CodeBadSignature},
		{"tampered body", func(d *district) []byte {
			return tampered(d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()}), func(x *tx.Tx) {
				x.Body = []byte(`{"new_key":"` + d.alice.recovery.Public().String() + `"}`)
			})
		}, ledger.CodeBadSignature},
		{"chain id changed after signing", func(d *district) []byte {
			return tampered(build(t, "imi-other-1", d.alice.did, 0, 0, &tx.RotateKey{NewKey: d.bob.key.Public()}, d.alice.key),
				func(x *tx.Tx) { x.ChainID = testChainID })
		}, ledger.CodeBadSignature},
		{"signed by someone else", func(d *district) []byte {
			return d.txAs(d.alice.did, d.bob.key, &tx.RotateKey{NewKey: d.bob.key.Public()})
		}, ledger.CodeBadSignature},
		{"registrar signature tampered", func(d *district) []byte {
			return tampered(d.tx(d.psb.party, d.bob.register()), func(x *tx.Tx) { x.Sig[0] ^= 0x80 })
		}, ledger.CodeBadSignature},
		{"signer is not a DID", func(d *district) []byte {
			return build(t, testChainID, "did:example:alice", 0, 0, &tx.RotateKey{NewKey: d.bob.key.Public()}, d.alice.key)
		}, ledger.CodeMalformed},
		{"signer not registered", func(d *district) []byte {
			return d.tx(d.bob.party, &tx.RotateKey{NewKey: d.alice.key.Public()})
		}, ledger.CodeNotFound},
		{"not JSON", func(*district) []byte { return []byte("\x00\x01\x02") }, ledger.CodeMalformed},
		{"empty", func(*district) []byte { return []byte{} }, ledger.CodeMalformed},
		{"empty object", func(*district) []byte { return []byte("{}") }, ledger.CodeMalformed},
		{"not canonical", func(d *district) []byte {
			raw := d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()})
			return bytes.Replace(raw, []byte(`"v":1,`), []byte(`"v": 1,`), 1)
		}, ledger.CodeMalformed},
		{"unknown type", func(d *district) []byte {
			raw := d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()})
			return bytes.Replace(raw, []byte(`"type":"rotate_key"`), []byte(`"type":"mint"`), 1)
		}, ledger.CodeMalformed},
		{"oversized", func(*district) []byte { return bytes.Repeat([]byte(" "), tx.MaxBytes+1) }, ledger.CodeMalformed},
		{"well formed, for contrast", func(d *district) []byte {
			return d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()})
		}, ledger.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := withAlice(t)
			raw := tt.make(d)
			if got := d.check(raw); got != tt.want {
				t.Errorf("CheckTx = %s, want %s", got.Name(), tt.want.Name())
			}
			d.want1(raw, tt.want)
			tr, err := d.app.TxResult(tx.Hash(raw))
			if err != nil || tr.Code != tt.want {
				t.Errorf("TxResult = %+v, %v; want code %s", tr, err, tt.want.Name())
			}
			wantKey := d.alice.key.Public()
			if tt.want == ledger.OK {
				wantKey = d.bob.key.Public()
			}
			if r := d.resident(d.alice.did); !r.Key.Equal(wantKey) {
				t.Errorf("alice's key is %s, want %s", r.Key, wantKey)
			}
		})
	}
}

// TestCheckTxMempoolView: CheckTx sees the transactions it already accepted,
// so the mempool is ordered by sequence; Commit resets the view to the block.
func TestCheckTxMempoolView(t *testing.T) {
	d := withAlice(t)
	seq0 := build(t, testChainID, d.psb.did, 0, 1, d.bob.register(), d.psb.key)
	carol := newResident(t, "carol", 3)
	seq1 := build(t, testChainID, d.psb.did, 0, 2, carol.register(), d.psb.key)

	if got := d.check(seq1); got != ledger.CodeSequenceAhead {
		t.Errorf("CheckTx(seq 2 before seq 1) = %s, want sequence_ahead", got.Name())
	}
	if got := d.check(seq0); got != ledger.OK {
		t.Fatalf("CheckTx(seq 1) = %s", got.Name())
	}
	if n := d.app.NextSeq(d.psb.did, 0); n != 2 {
		t.Errorf("NextSeq with one pending = %d, want 2", n)
	}
	if got := d.check(seq0); got != ledger.CodeBadSequence {
		t.Errorf("CheckTx of a pending transaction again = %s, want bad_sequence", got.Name())
	}
	if got := d.check(seq1); got != ledger.OK {
		t.Errorf("CheckTx(seq 2 after seq 1) = %s", got.Name())
	}
	// A registration pending in the mempool is visible to the next check:
	// bob may rotate before his registration is in a block.
	bobRotate := build(t, testChainID, d.bob.did, 0, 0, &tx.RotateKey{NewKey: newParty(t, "bob 2").key.Public()}, d.bob.key)
	if got := d.check(bobRotate); got != ledger.OK {
		t.Errorf("CheckTx(rotate by a resident pending registration) = %s", got.Name())
	}

	// The proposer included only seq0; Commit resets the view and CometBFT
	// re-checks what is left.
	d.ok(seq0)
	if n := d.app.NextSeq(d.psb.did, 0); n != 2 {
		t.Errorf("NextSeq after Commit = %d, want 2", n)
	}
	if got := d.checkType(seq1, abci.CheckTxType_Recheck); got != ledger.OK {
		t.Errorf("Recheck(seq 2) = %s", got.Name())
	}
	if got := d.checkType(seq0, abci.CheckTxType_Recheck); got != ledger.CodeBadSequence {
		t.Errorf("Recheck(committed seq 1) = %s, want bad_sequence", got.Name())
	}
	// The mempool view never reaches the committed state.
	if _, _, err := d.app.ResidentRecord(carol.did, 0); err == nil {
		t.Error("a transaction accepted by CheckTx is in the committed state")
	}
	d.block()
	if n := d.app.NextSeq(d.psb.did, 0); n != 2 {
		t.Errorf("NextSeq after an empty block = %d, want 2 (the mempool view is dropped)", n)
	}
}

// TestCheckTxRechecksSkipSignature pins the documented trade-off: a re-check
// after a block does not verify the signature again, the block does.
func TestCheckTxRechecksSkipSignature(t *testing.T) {
	d := withAlice(t)
	x, _, err := tx.Decode(d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()}))
	if err != nil {
		t.Fatal(err)
	}
	x.Sig[0] ^= 1
	bad := x.Encode()
	if got := d.check(bad); got != ledger.CodeBadSignature {
		t.Errorf("CheckTx(new) = %s, want bad_signature", got.Name())
	}
	if got := d.checkType(bad, abci.CheckTxType_Recheck); got != ledger.OK {
		t.Errorf("CheckTx(recheck) = %s, want ok (signature not re-verified)", got.Name())
	}
	d.want1(bad, ledger.CodeBadSignature)
}

// TestSignaturesWhenKeysChangeInTheBlock: a block's signatures may be
// checked ahead against the keys of the last commit; a key that changes
// earlier in the same block must still decide.
func TestSignaturesWhenKeysChangeInTheBlock(t *testing.T) {
	d := withAlice(t)
	k2 := seedKey(t, "alice key 2")
	k3 := seedKey(t, "alice key 3")
	water := newAuthority(t, "water", 0, ledger.RoleRegistrar)
	carol := newResident(t, "carol", 3)
	d.want([][]byte{
		// bob is registered and acts in the same block.
		d.tx(d.psb.party, d.bob.register()),
		d.tx(d.bob.party, &tx.RotateKey{NewKey: seedKey(t, "bob 2").Public()}),
		// alice rotates, then signs with the new key: accepted ...
		d.tx(d.alice.party, &tx.RotateKey{NewKey: k2.Public()}),
		d.txAs(d.alice.did, k2, &tx.RotateKey{NewKey: k3.Public()}),
		// ... and with a key that was current at the last commit: refused.
		build(t, testChainID, d.alice.did, 0, 2, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonResidentRequest}, d.alice.key),
		build(t, testChainID, d.alice.did, 0, 2, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonResidentRequest}, k2),
		build(t, testChainID, d.alice.did, 0, 2, &tx.Deactivate{DID: d.alice.did, Reason: ledger.ReasonResidentRequest}, k3),
	}, ledger.OK, ledger.OK, ledger.OK, ledger.OK, ledger.CodeBadSignature, ledger.CodeBadSignature, ledger.OK)

	// An authority removed earlier in a block cannot sign later in it; one
	// added earlier can.
	d.ok(d.tx(d.psb.party, propose(tx.ActionAddAuthority, water.spec)), d.tx(d.hrss.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "med"})))
	d.ok(d.tx(d.hrss.party, vote("p-1")), d.tx(d.psb.party, vote("p-2")))
	d.want([][]byte{
		d.tx(d.tax.party, vote("p-2")), // med leaves: 3 authorities
		d.tx(d.tax.party, vote("p-1")), // 3 of 3: water joins
		d.tx(water.party, carol.register()),
		d.tx(d.med.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "tax"})),
	}, ledger.OK, ledger.OK, ledger.OK, ledger.CodeUnknownSigner)
}

// TestLargeBlock: a block big enough to be checked by several workers gives
// each transaction its own verdict, in order.
func TestLargeBlock(t *testing.T) {
	d := newDistrict(t, memApp(t))
	var txs [][]byte
	var want []ledger.Code
	for i := range 200 {
		r := newResident(t, fmt.Sprint("resident ", i), 100+i)
		raw := build(t, testChainID, d.psb.did, 0, uint64(len(txs)-countBad(want)), r.register(), d.psb.key)
		code := ledger.OK
		if i%7 == 3 {
			x, _, err := tx.Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			x.Sig[i%64] ^= 0x10
			raw, code = x.Encode(), ledger.CodeBadSignature
		}
		txs = append(txs, raw)
		want = append(want, code)
	}
	d.want(txs, want...)
	if meta, _, _ := d.app.Meta(0); meta.Residents != uint64(len(txs)-countBad(want)) {
		t.Errorf("Residents = %d", meta.Residents)
	}
}

func countBad(cs []ledger.Code) int {
	n := 0
	for _, c := range cs {
		if c != ledger.OK {
			n++
		}
	}
	return n
}
