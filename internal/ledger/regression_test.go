package ledger_test

// Regression tests for bugs found in review: each names what went wrong and
// what must happen instead.

import (
	"context"
	"fmt"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// TestValidatorUpdatesOnePerKey: CometBFT refuses a block whose validator
// updates name one key twice ("duplicate entry" in
// types.ValidatorSet.UpdateWithChangeSet) and the node panics with "failed
// to apply block"; every validator executes the same block, so the whole
// chain halts. FinalizeBlock must therefore merge the updates of a block into
// one per key (the last power wins).
func TestValidatorUpdatesOnePerKey(t *testing.T) {
	d := newDistrict(t, memApp(t))
	v2 := seedKey(t, "tax validator 2")
	// p-1 moves tax to a new consensus key, p-2 removes tax; both are
	// valid when proposed and both reach two-thirds in the same block.
	d.ok(
		d.tx(d.psb.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "tax", ValidatorKey: v2.Public().Bytes(), Power: 10})),
		d.tx(d.hrss.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "tax"})),
	)
	d.ok(d.tx(d.hrss.party, vote("p-1")), d.tx(d.psb.party, vote("p-2")))
	res := d.ok(d.tx(d.med.party, vote("p-1")), d.tx(d.med.party, vote("p-2")))
	// (The harness has already applied the updates as CometBFT would.)
	seen := map[string]bool{}
	for _, u := range res.ValidatorUpdates {
		k := string(u.PubKey.GetEd25519())
		if seen[k] {
			t.Errorf("validator updates %v name the key %X twice", res.ValidatorUpdates, k)
		}
		seen[k] = true
	}
}

// TestTxResultShowsTheApplyingInclusion: a transaction refused in one block
// (which leaves its sequence number unused) can be included again and
// applied. TxResult then still reports the refusal, for ever, while the
// state holds its effect and Watch reported success. The first *successful*
// outcome should be kept; a refusal should give way to a later success.
func TestTxResultShowsTheApplyingInclusion(t *testing.T) {
	d := withAlice(t)
	carol := newResident(t, "carol", 3)
	first := build(t, testChainID, d.psb.did, 0, 1, d.bob.register(), d.psb.key)
	second := build(t, testChainID, d.psb.did, 0, 2, carol.register(), d.psb.key)
	// A proposer includes the second before the first (a faulty or
	// malicious proposer can; ProcessProposal accepts any block).
	d.want1(second, ledger.CodeSequenceAhead)
	wait, cancel := d.app.Watch(tx.Hash(second))
	defer cancel()
	d.want([][]byte{first, second}, ledger.OK, ledger.OK)
	if _, err := d.app.Resolve(carol.did, 0); err != nil {
		t.Fatalf("carol's registration was not applied: %v", err)
	}
	ctx, cancelCtx := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelCtx()
	watched, err := wait(ctx)
	if err != nil || watched.Code != ledger.OK {
		t.Fatalf("watched = %+v, %v", watched, err)
	}
	tr, err := d.app.TxResult(tx.Hash(second))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Code != ledger.OK || tr.Height != d.height {
		t.Errorf("TxResult = %s at height %d, but the transaction was applied at height %d (Watch said %s)",
			tr.Code.Name(), tr.Height, d.height, watched.Code.Name())
	}
}

// TestInitialHeight: CometBFT lets a genesis start at initial_height > 1
// (a chain restarted after an upgrade). The iavl version must then equal the
// block height, or Info reports a LastBlockHeight CometBFT never produced and
// the handshake replays from the wrong block. (node.WriteGenesis always
// writes initial_height 1 today, so this is latent.)
func TestInitialHeight(t *testing.T) {
	psb := newAuthority(t, "psb", 10, ledger.RoleRegistrar)
	app := memApp(t)
	state, err := tx.Marshal(genesisOf(psb))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := app.InitChain(ctx, &abci.RequestInitChain{Time: genesisTime, ChainId: testChainID, InitialHeight: 100, AppStateBytes: state}); err != nil {
		t.Fatal(err)
	}
	fin, err := app.FinalizeBlock(ctx, &abci.RequestFinalizeBlock{Height: 100, Time: genesisTime.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Commit(ctx, &abci.RequestCommit{}); err != nil {
		t.Fatal(err)
	}
	info, _ := app.Info(ctx, &abci.RequestInfo{})
	if info.LastBlockHeight != 100 || string(info.LastBlockAppHash) != string(fin.AppHash) {
		t.Errorf("Info after block 100 = height %d hash %X, want 100 %X", info.LastBlockHeight, info.LastBlockAppHash, fin.AppHash)
	}
	if _, err := app.Resolve(psb.did, 100); err != nil {
		t.Errorf("Resolve at height 100: %v", err)
	}
}

// TestCheckTxBeforeTheFirstBlock: between InitChain and the first Commit,
// CheckTx judges against an empty state (InitChain's writes are in the
// working tree only), so every transaction sent to a fresh node is refused,
// typically with unknown_signer, although the first block would accept it.
// CheckTx's view should start from the genesis state.
func TestCheckTxBeforeTheFirstBlock(t *testing.T) {
	d := newDistrict(t, memApp(t))
	raw := d.tx(d.psb.party, d.alice.register())
	if got := d.check(raw); got != ledger.OK {
		t.Errorf("CheckTx before the first block = %s, want ok (the first block accepts it)", got.Name())
	}
	d.want1(raw, ledger.OK)
}

// TestConcurrentReadsDuringFinalizeBlock (meaningful with -race): the HTTP
// API calls Resolve, ProveDID, TxResult ... on request goroutines while
// CometBFT runs FinalizeBlock. FinalizeBlock writes the iavl working tree
// without taking App.mu, and iavl's MutableTree.Set clones nodes it shares
// with the committed ImmutableTree through the node cache, writing
// node.leftNode/rightNode = nil on the shared node (iavl node.go clone)
// while a reader walks it (Node.getLeftNode in Prove/Get): a data race.
func TestConcurrentReadsDuringFinalizeBlock(t *testing.T) {
	d := withAlice(t)
	stop := readers(t, d)
	defer stop()
	cur := d.alice.key
	for i := range 100 {
		r := newResident(t, fmt.Sprint("resident ", i), 100+i)
		next := seedKey(t, fmt.Sprint("alice ", i))
		d.ok(d.tx(d.psb.party, r.register()), d.txAs(d.alice.did, cur, &tx.RotateKey{NewKey: next.Public()}))
		cur = next
	}
}

// TestRemovedAuthorityDIDCannotBecomeAResident: a removed authority's DID
// keeps resolving, deactivated, so that what it signed stays attributable.
// But RegisterResident only checks the live authority index, so a registrar
// can register a "resident" with the removed authority's public key (no
// proof of possession is asked of a resident key): the DID then resolves as
// an active resident and the removed-authority record is hidden. Register
// should refuse the DID (did_exists), as add_authority's reuse of it is the
// only way back.
func TestRemovedAuthorityDIDCannotBecomeAResident(t *testing.T) {
	d := newDistrict(t, memApp(t))
	d.ok(d.tx(d.psb.party, propose(tx.ActionRemoveAuthority, tx.AuthoritySpec{ID: "med"})))
	d.ok(d.tx(d.hrss.party, vote("p-1")), d.tx(d.tax.party, vote("p-1")))
	body := d.alice.register()
	body.DID, body.Key = d.med.did, d.med.key.Public()
	d.want1(d.tx(d.psb.party, body), ledger.CodeDIDExists)
	if res, err := d.app.Resolve(d.med.did, 0); err != nil || res.Metadata.Kind != "authority" || !res.Metadata.Deactivated {
		t.Errorf("Resolve(removed authority) = %+v, %v", res.Metadata, err)
	}
}
