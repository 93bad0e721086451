package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// snapshotInterval is the snapshot interval of these tests; snapshotChunk
// is small, so that a test state spans many chunks.
const (
	snapshotInterval = 3
	snapshotChunk    = 512
)

// snapshotted returns a district whose App takes snapshots, after the
// scenario and two blocks of credential changes: height 9, with the two
// newest snapshots, the last at 9.
func snapshotted(t *testing.T) *district {
	t.Helper()
	dir := t.TempDir() // before the App, so removed after it closed
	d := newDistrict(t, memApp(t))
	enableSnapshots(t, d.app, dir)
	scenario(t, d)
	credentialBlocks(t, d)
	for d.height < 3*snapshotInterval {
		d.block()
	}
	waitSnapshot(t, d.app, uint64(d.height))
	return d
}

// credentialBlocks publish a credential type, reserve three status-list
// entries and revoke one.
func credentialBlocks(t *testing.T, d *district) {
	t.Helper()
	d.ok(d.tx(d.hrss.party, socialInsuranceType()))
	d.ok(d.tx(d.hrss.party, &tx.ReserveStatus{Type: "social_insurance", List: 0, Indices: []uint32{7, 11, 4000}}),
		d.tx(d.hrss.party, &tx.Revoke{StatusRef: tx.StatusRef{List: 0, Index: 11}}))
}

func enableSnapshots(t *testing.T, app *ledger.App, dir string) {
	t.Helper()
	if err := app.EnableSnapshots(ledger.SnapshotConfig{Dir: dir, Interval: snapshotInterval, ChunkSize: snapshotChunk}); err != nil {
		t.Fatal(err)
	}
}

func listSnapshots(t testing.TB, app *ledger.App) []*abci.Snapshot {
	t.Helper()
	res, err := app.ListSnapshots(context.Background(), &abci.RequestListSnapshots{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Snapshots
}

// waitSnapshot waits for the background export of height h.
func waitSnapshot(t *testing.T, app *ledger.App, h uint64) *abci.Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, s := range listSnapshots(t, app) {
			if s.Height == h {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot at height %d after 10 s; have %v", h, heightsOf(listSnapshots(t, app)))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func heightsOf(ss []*abci.Snapshot) []uint64 {
	var out []uint64
	for _, s := range ss {
		out = append(out, s.Height)
	}
	return out
}

// chunks loads every chunk of s from app, as peers would serve them.
func chunks(t *testing.T, app *ledger.App, s *abci.Snapshot) [][]byte {
	t.Helper()
	out := make([][]byte, s.Chunks)
	for i := range out {
		res, err := app.LoadSnapshotChunk(context.Background(), &abci.RequestLoadSnapshotChunk{Height: s.Height, Format: s.Format, Chunk: uint32(i)})
		if err != nil || len(res.Chunk) == 0 {
			t.Fatalf("LoadSnapshotChunk(%d, %d) = %d bytes, %v", s.Height, i, len(res.GetChunk()), err)
		}
		out[i] = res.Chunk
	}
	return out
}

func offer(t *testing.T, app *ledger.App, s *abci.Snapshot, appHash []byte) abci.ResponseOfferSnapshot_Result {
	t.Helper()
	res, err := app.OfferSnapshot(context.Background(), &abci.RequestOfferSnapshot{Snapshot: s, AppHash: appHash})
	if err != nil {
		t.Fatalf("OfferSnapshot: %v", err)
	}
	return res.Result
}

func apply(t *testing.T, app *ledger.App, i int, chunk []byte, sender string) *abci.ResponseApplySnapshotChunk {
	t.Helper()
	res, err := app.ApplySnapshotChunk(context.Background(), &abci.RequestApplySnapshotChunk{Index: uint32(i), Chunk: chunk, Sender: sender})
	if err != nil {
		t.Fatalf("ApplySnapshotChunk(%d): %v", i, err)
	}
	return res
}

// restore runs the restore CometBFT's state sync would: offer s with the
// app hash its light client verified, then apply every chunk in order.
func restore(t *testing.T, app *ledger.App, s *abci.Snapshot, appHash []byte, cs [][]byte) {
	t.Helper()
	if got := offer(t, app, s, appHash); got != abci.ResponseOfferSnapshot_ACCEPT {
		t.Fatalf("OfferSnapshot = %v, want ACCEPT", got)
	}
	for i, c := range cs {
		if got := apply(t, app, i, c, "peer").Result; got != abci.ResponseApplySnapshotChunk_ACCEPT {
			t.Fatalf("ApplySnapshotChunk(%d) = %v, want ACCEPT", i, got)
		}
	}
}

func info(t *testing.T, app *ledger.App) *abci.ResponseInfo {
	t.Helper()
	res, err := app.Info(context.Background(), &abci.RequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// state is all of an App's committed state, for comparing two.
func state(t *testing.T, app *ledger.App) map[string]string {
	t.Helper()
	out := map[string]string{}
	app.EachCommitted(t, func(k, v []byte) { out[string(k)] = string(v) })
	return out
}

func TestSnapshotRestore(t *testing.T) {
	d := snapshotted(t)
	ss := listSnapshots(t, d.app)
	// An export runs while blocks go on; one due meanwhile waits for it,
	// the newest due one replacing another: 3 or 6, then 9.
	if got := heightsOf(ss); len(got) != 2 || got[1] != 9 || got[0]%snapshotInterval != 0 {
		t.Fatalf("snapshots at %v, want two, the newest at 9", got)
	}
	s := ss[1]
	if s.Format != ledger.SnapshotFormat || s.Chunks < 3 {
		t.Fatalf("snapshot %+v: want format %d in several chunks of %d bytes", s, ledger.SnapshotFormat, snapshotChunk)
	}
	if sum := sha256.Sum256(s.Metadata); !bytes.Equal(s.Hash, sum[:]) || !bytes.Equal(s.Metadata[:32], d.hashes[9]) {
		t.Errorf("snapshot hash %X, metadata %X: want the SHA-256 of metadata that begins with the app hash %X", s.Hash, s.Metadata, d.hashes[9])
	}
	cs := chunks(t, d.app, s)

	// Deterministic: an App that executed the same blocks takes the same
	// snapshot, to the byte.
	twinDir := t.TempDir()
	twin := newDistrict(t, memApp(t))
	enableSnapshots(t, twin.app, twinDir)
	for _, b := range d.blocks {
		twin.blockAt(b.at, b.txs...)
	}
	ts := waitSnapshot(t, twin.app, 9)
	if ts.Hash == nil || !bytes.Equal(ts.Hash, s.Hash) || !bytes.Equal(ts.Metadata, s.Metadata) || ts.Chunks != s.Chunks {
		t.Errorf("a twin's snapshot at 9 is %X (%d chunks), the original's %X (%d chunks)", ts.Hash, ts.Chunks, s.Hash, s.Chunks)
	}
	for i, c := range chunks(t, twin.app, ts) {
		if !bytes.Equal(c, cs[i]) {
			t.Errorf("chunk %d differs between twins", i)
		}
	}

	// A fresh App restores it through the ABCI methods.
	fresh := memApp(t)
	if got := info(t, fresh); got.LastBlockHeight != 0 {
		t.Fatalf("a fresh App is at height %d", got.LastBlockHeight)
	}
	restore(t, fresh, s, d.hashes[9], cs)
	got := info(t, fresh)
	if got.LastBlockHeight != 9 || !bytes.Equal(got.LastBlockAppHash, d.hashes[9]) || got.AppVersion != info(t, d.app).AppVersion {
		t.Fatalf("Info after the restore = height %d hash %X version %d, want 9 %X", got.LastBlockHeight, got.LastBlockAppHash, got.AppVersion, d.hashes[9])
	}
	want, have := state(t, d.app), state(t, fresh)
	if len(want) != len(have) {
		t.Errorf("the restored state has %d keys, the original %d", len(have), len(want))
	}
	for k, v := range want {
		if have[k] != v {
			t.Errorf("key %q: restored %q, original %q", k, have[k], v)
		}
	}

	// The same answers: the chain id (InitChain is never called on a node
	// that state syncs), a DID, a credential type, a status entry, the
	// authorities and a proposal.
	if fresh.ChainID() != testChainID || fresh.Height() != 9 || !bytes.Equal(fresh.AppHash(), d.hashes[9]) {
		t.Errorf("restored ChainID %q Height %d AppHash %X", fresh.ChainID(), fresh.Height(), fresh.AppHash())
	}
	same := func(what string, f func(*ledger.App) (any, error)) {
		t.Helper()
		a, errA := f(d.app)
		b, errB := f(fresh)
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if errA != nil || errB != nil || !bytes.Equal(ja, jb) {
			t.Errorf("%s: original %s (%v), restored %s (%v)", what, ja, errA, jb, errB)
		}
	}
	same("alice's DID", func(a *ledger.App) (any, error) { return a.Resolve(d.alice.did, 0) })
	same("credential type", func(a *ledger.App) (any, error) {
		ct, _, err := a.CredentialType("social_insurance", 0)
		return ct, err
	})
	same("revoked entry", func(a *ledger.App) (any, error) {
		e, _, err := a.Status("hrss", 0, 11, 0)
		return e, err
	})
	same("authorities", func(a *ledger.App) (any, error) {
		as, _, err := a.Authorities(0)
		return as, err
	})
	same("proposal p-2", func(a *ledger.App) (any, error) {
		p, _, err := a.Proposal("p-2", 0)
		return p, err
	})
	same("proof of bob's DID", func(a *ledger.App) (any, error) { return a.ProveDID(d.bob.did, 9) })
	if e, _, err := fresh.Status("hrss", 0, 11, 0); err != nil || e.Status != ledger.StatusInvalid {
		t.Errorf("the revoked entry after the restore: %+v, %v", e, err)
	}
	if _, err := fresh.Resolve(d.alice.did, 8); err == nil {
		t.Error("the restored App answers for height 8, which no snapshot holds")
	}
	// Transaction results are not in a snapshot.
	if r, err := fresh.TxResult(tx.Hash(d.blocks[0].txs[0])); err == nil {
		t.Errorf("the restored App knows a result from block 1: %+v", r)
	}

	// It takes the mempool's transactions as the original does, and then
	// executes the next block identically: two of the votes that make psb
	// a validator of power 15, the last of which changes the validator
	// set, which the restored App reads from its state.
	dave := newResident(t, "dave", 4)
	reg := d.tx(d.psb.party, dave.register())
	for _, a := range []*ledger.App{d.app, fresh} {
		if res, err := a.CheckTx(context.Background(), &abci.RequestCheckTx{Tx: reg, Type: abci.CheckTxType_New}); err != nil || res.Code != uint32(ledger.OK) {
			t.Errorf("CheckTx of a registration: %+v, %v", res, err)
		}
	}
	r := &chain{t: t, app: fresh, height: d.height, now: d.now, hashes: map[int64][]byte{}, seq: map[seqKey]uint64{}, vals: d.vals}
	blocks := [][][]byte{
		{reg, d.tx(d.psb.party, vote("p-2"))},
		{d.tx(d.hrss.party, vote("p-2")), d.tx(d.tax.party, vote("p-2"))},
		{d.tx(dave.party, &tx.RotateKey{NewKey: seedKey(t, "dave 2").Public()})},
	}
	for _, txs := range blocks {
		at := d.now.Add(blockInterval)
		wantRes := d.blockAt(at, txs...)
		gotRes := r.blockAt(at, txs...)
		if !bytes.Equal(r.hashes[r.height], d.hashes[d.height]) {
			t.Fatalf("height %d: the restored App's app hash %X, the original's %X", d.height, r.hashes[r.height], d.hashes[d.height])
		}
		if !slices.Equal(resultCodes(gotRes), resultCodes(wantRes)) || !slices.EqualFunc(gotRes.ValidatorUpdates, wantRes.ValidatorUpdates, func(a, b abci.ValidatorUpdate) bool { return a.String() == b.String() }) {
			t.Fatalf("height %d: restored results %v updates %v, original %v %v", d.height, resultCodes(gotRes), gotRes.ValidatorUpdates, resultCodes(wantRes), wantRes.ValidatorUpdates)
		}
	}
	if d.proposal("p-2").Status != ledger.ProposalExecuted || d.votingPower(seedKey(t, "psb validator 2")) != 15 {
		t.Fatalf("the votes did not change psb's validator: %+v", d.proposal("p-2"))
	}
	for _, k := range []key.Private{d.psb.validator, seedKey(t, "psb validator 2")} {
		if r.votingPower(k) != d.votingPower(k) {
			t.Errorf("validator %s: power %d after the restored App's updates, %d after the original's", k.Public(), r.votingPower(k), d.votingPower(k))
		}
	}
	// Its own results are kept from the first block after the snapshot.
	if res, err := fresh.TxResult(tx.Hash(reg)); err != nil || res.Height != 10 || res.Code != ledger.OK {
		t.Errorf("the restored App's result of a later transaction: %+v, %v", res, err)
	}
}

// TestSnapshotRefusals feeds a fresh App what a faulty or hostile peer
// might: each is refused as the ABCI spec says, and a good snapshot still
// restores afterwards.
func TestSnapshotRefusals(t *testing.T) {
	d := snapshotted(t)
	ss := listSnapshots(t, d.app)
	// s6 is the older snapshot, at 3 or 6.
	s6, s9 := ss[0], ss[1]
	cs6, cs9 := chunks(t, d.app, s6), chunks(t, d.app, s9)
	h6, h9 := d.hashes[int64(s6.Height)], d.hashes[9]

	// forge describes other chunks with a metadata that claims root.
	forge := func(root []byte, height uint64, cs [][]byte) *abci.Snapshot {
		meta := bytes.Clone(root)
		for _, c := range cs {
			sum := sha256.Sum256(c)
			meta = append(meta, sum[:]...)
		}
		sum := sha256.Sum256(meta)
		return &abci.Snapshot{Height: height, Format: ledger.SnapshotFormat, Chunks: uint32(len(cs)), Hash: sum[:], Metadata: meta}
	}
	with := func(f func(s *abci.Snapshot)) *abci.Snapshot {
		c := *s9
		c.Metadata, c.Hash = bytes.Clone(s9.Metadata), bytes.Clone(s9.Hash)
		f(&c)
		return &c
	}

	t.Run("offers", func(t *testing.T) {
		app := memApp(t)
		for _, tt := range []struct {
			name    string
			s       *abci.Snapshot
			appHash []byte
			want    abci.ResponseOfferSnapshot_Result
		}{
			{"unknown format", with(func(s *abci.Snapshot) { s.Format = 2 }), h9, abci.ResponseOfferSnapshot_REJECT_FORMAT},
			{"hash not of the metadata", with(func(s *abci.Snapshot) { s.Hash[0] ^= 1 }), h9, abci.ResponseOfferSnapshot_REJECT},
			{"chunk count not the metadata's", with(func(s *abci.Snapshot) { s.Chunks++ }), h9, abci.ResponseOfferSnapshot_REJECT},
			{"no chunks", forge(h9, 9, nil), h9, abci.ResponseOfferSnapshot_REJECT},
			{"root not the verified app hash", s9, d.hashes[8], abci.ResponseOfferSnapshot_REJECT},
			{"no app hash", s9, nil, abci.ResponseOfferSnapshot_REJECT},
		} {
			if got := offer(t, app, tt.s, tt.appHash); got != tt.want {
				t.Errorf("%s: OfferSnapshot = %v, want %v", tt.name, got, tt.want)
			}
		}
		if got := apply(t, app, 0, cs9[0], "peer").Result; got != abci.ResponseApplySnapshotChunk_ABORT {
			t.Errorf("a chunk without an accepted snapshot: %v, want ABORT", got)
		}
		if got := info(t, app); got.LastBlockHeight != 0 {
			t.Errorf("refused offers left the App at height %d", got.LastBlockHeight)
		}
	})

	t.Run("damaged chunk", func(t *testing.T) {
		app := memApp(t)
		if got := offer(t, app, s9, h9); got != abci.ResponseOfferSnapshot_ACCEPT {
			t.Fatalf("OfferSnapshot = %v", got)
		}
		if got := apply(t, app, 0, cs9[0], "good").Result; got != abci.ResponseApplySnapshotChunk_ACCEPT {
			t.Fatalf("chunk 0: %v", got)
		}
		bad := bytes.Clone(cs9[1])
		bad[len(bad)/2] ^= 0x40
		res := apply(t, app, 1, bad, "liar")
		if res.Result != abci.ResponseApplySnapshotChunk_RETRY || !slices.Equal(res.RefetchChunks, []uint32{1}) || !slices.Equal(res.RejectSenders, []string{"liar"}) {
			t.Fatalf("a damaged chunk: %+v; want RETRY, refetch chunk 1, reject its sender", res)
		}
		// Out of order: CometBFT never does it; start over.
		if got := apply(t, app, 2, cs9[2], "good").Result; got != abci.ResponseApplySnapshotChunk_RETRY_SNAPSHOT {
			t.Errorf("chunk 2 before chunk 1: %v, want RETRY_SNAPSHOT", got)
		}
		// Starting over from the offer, with the refetched chunk.
		restore(t, app, s9, h9, cs9)
		if got := info(t, app); got.LastBlockHeight != 9 || !bytes.Equal(got.LastBlockAppHash, h9) {
			t.Errorf("after the retried restore: height %d hash %X", got.LastBlockHeight, got.LastBlockAppHash)
		}
	})

	t.Run("forged snapshots", func(t *testing.T) {
		app := memApp(t)
		// Chunks that match a metadata, but hold the state of an earlier
		// height while claiming that of 9: found out at the last chunk.
		lie := forge(h9, 9, cs6)
		if got := offer(t, app, lie, h9); got != abci.ResponseOfferSnapshot_ACCEPT {
			t.Fatalf("OfferSnapshot = %v", got)
		}
		for i, c := range cs6 {
			got := apply(t, app, i, c, "liar").Result
			want := abci.ResponseApplySnapshotChunk_ACCEPT
			if i == len(cs6)-1 {
				want = abci.ResponseApplySnapshotChunk_REJECT_SNAPSHOT
			}
			if got != want {
				t.Fatalf("chunk %d of %d: %v, want %v", i, len(cs6), got, want)
			}
		}
		if got := info(t, app); got.LastBlockHeight != 0 || got.LastBlockAppHash != nil {
			t.Fatalf("after a refused snapshot the App is at height %d hash %X, want empty", got.LastBlockHeight, got.LastBlockAppHash)
		}
		// Bytes that are no iavl export at all.
		junk := forge(h9, 9, [][]byte{[]byte("\x00\x05not a node")})
		if got := offer(t, app, junk, h9); got != abci.ResponseOfferSnapshot_ACCEPT {
			t.Fatalf("OfferSnapshot = %v", got)
		}
		if got := apply(t, app, 0, []byte("\x00\x05not a node"), "liar").Result; got != abci.ResponseApplySnapshotChunk_REJECT_SNAPSHOT {
			t.Errorf("a chunk of junk: %v, want REJECT_SNAPSHOT", got)
		}
		// Nodes in an order that makes no tree.
		shuffled := slices.Clone(cs6)
		slices.Reverse(shuffled)
		mess := forge(h6, s6.Height, shuffled)
		if got := offer(t, app, mess, h6); got != abci.ResponseOfferSnapshot_ACCEPT {
			t.Fatalf("OfferSnapshot = %v", got)
		}
		refused := false
		for i, c := range shuffled {
			got := apply(t, app, i, c, "liar").Result
			if got == abci.ResponseApplySnapshotChunk_REJECT_SNAPSHOT {
				refused = true
				break
			}
			if got != abci.ResponseApplySnapshotChunk_ACCEPT {
				t.Fatalf("shuffled chunk %d: %v", i, got)
			}
		}
		if !refused {
			t.Error("chunks in the wrong order were restored")
		}
		// And then the genuine snapshot restores.
		restore(t, app, s9, h9, cs9)
		if got := info(t, app); got.LastBlockHeight != 9 || !bytes.Equal(got.LastBlockAppHash, h9) {
			t.Errorf("after forged snapshots, the genuine one restores to height %d hash %X", got.LastBlockHeight, got.LastBlockAppHash)
		}
	})

	t.Run("state already there", func(t *testing.T) {
		// A node with state of its own refuses to overwrite it.
		if got := offer(t, d.app, s6, h6); got != abci.ResponseOfferSnapshot_ABORT {
			t.Errorf("offering a snapshot to an App at height %d: %v, want ABORT", d.height, got)
		}
		// A restore that finished before CometBFT recorded it is accepted
		// again without importing anything.
		app := memApp(t)
		restore(t, app, s9, h9, cs9)
		restore(t, app, s9, h9, cs9)
		if got := info(t, app); got.LastBlockHeight != 9 || !bytes.Equal(got.LastBlockAppHash, h9) {
			t.Errorf("after restoring twice: height %d hash %X", got.LastBlockHeight, got.LastBlockAppHash)
		}
	})
}

// TestSnapshotsOnDisk: snapshots survive a restart, an unfinished export
// is cleaned up, and a restore interrupted by a crash starts over from an
// empty state.
func TestSnapshotsOnDisk(t *testing.T) {
	dir := t.TempDir()
	snaps := filepath.Join(dir, "snapshots")
	app, err := ledger.Open(filepath.Join(dir, "state"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	enableSnapshots(t, app, snaps)
	d := newDistrict(t, app)
	d.ok(d.tx(d.psb.party, d.alice.register()), d.txLane(d.psb.did, d.psb.key, 1, d.bob.register()))
	credentialBlocks(t, d)
	s := waitSnapshot(t, app, 3)
	cs := chunks(t, app, s)
	// Blocks go on while nothing is due; Close waits for an export.
	d.block()
	d.block()
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(snaps, "6.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}

	app, err = ledger.Open(filepath.Join(dir, "state"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	enableSnapshots(t, app, snaps)
	if got := listSnapshots(t, app); len(got) != 1 || !bytes.Equal(got[0].Hash, s.Hash) {
		t.Errorf("after a restart the App offers %v, want the snapshot at 3", heightsOf(got))
	}
	if _, err := os.Stat(filepath.Join(snaps, "6.tmp")); err == nil {
		t.Error("an unfinished export was left behind")
	}
	app.Close()

	// A joining node's state directory.
	join := filepath.Join(dir, "join")
	fresh, err := ledger.Open(join, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := offer(t, fresh, s, d.hashes[3]); got != abci.ResponseOfferSnapshot_ACCEPT {
		t.Fatalf("OfferSnapshot = %v", got)
	}
	for i := range len(cs) - 1 {
		if got := apply(t, fresh, i, cs[i], "peer").Result; got != abci.ResponseApplySnapshotChunk_ACCEPT {
			t.Fatalf("chunk %d: %v", i, got)
		}
	}
	fresh.Close() // the process stops mid-restore
	fresh, err = ledger.Open(join, nil, nil)
	if err != nil {
		t.Fatalf("reopening after an unfinished restore: %v", err)
	}
	if got := info(t, fresh); got.LastBlockHeight != 0 {
		t.Fatalf("after an unfinished restore the App is at height %d", got.LastBlockHeight)
	}
	restore(t, fresh, s, d.hashes[3], cs)
	fresh.Close()
	fresh, err = ledger.Open(join, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if got := info(t, fresh); got.LastBlockHeight != 3 || !bytes.Equal(got.LastBlockAppHash, d.hashes[3]) || fresh.ChainID() != testChainID {
		t.Errorf("a restored state reopened: height %d hash %X chain %q, want 3 %X %s", got.LastBlockHeight, got.LastBlockAppHash, fresh.ChainID(), d.hashes[3], testChainID)
	}
	if _, err := os.Stat(filepath.Join(join, "restoring")); err == nil {
		t.Error("the restore marker outlived the restore")
	}
}

// TestSnapshotWhileBlocksGoOn exports large snapshots while blocks keep
// changing the state; with -race it shows the export shares nothing with
// the App's own tree.
func TestSnapshotWhileBlocksGoOn(t *testing.T) {
	dir := t.TempDir()
	d := newDistrict(t, memApp(t))
	if err := d.app.EnableSnapshots(ledger.SnapshotConfig{Dir: dir, Interval: 2, ChunkSize: 4 << 10}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		var txs [][]byte
		for j := range 25 {
			r := newResident(t, strconv.Itoa(i*25+j), i*25+j+10)
			txs = append(txs, d.txLane(d.psb.did, d.psb.key, uint32(j), r.register()))
		}
		d.ok(txs...)
		// Reads from other goroutines, as the HTTP API makes them.
		wg.Go(func() { d.app.Resolve(d.psb.did, 0) })
	}
	wg.Wait()
	s := waitSnapshot(t, d.app, 20)
	// The last two are kept, on disk too.
	if got := listSnapshots(t, d.app); len(got) != 2 {
		t.Errorf("%d snapshots kept, want 2", len(got))
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 2 {
		t.Errorf("%d entries in the snapshot directory, want 2 (%v)", len(entries), err)
	}
	fresh := memApp(t)
	restore(t, fresh, s, d.hashes[20], chunks(t, d.app, s))
	if m, _, err := fresh.Meta(0); err != nil || m.Residents != 500 {
		t.Errorf("restored %+v, %v; want 500 residents", m, err)
	}
}

// FuzzApplySnapshotChunk feeds arbitrary bytes to a restore as the one
// chunk of a snapshot whose metadata matches them: the bytes get past the
// hash check, as a hostile snapshot's would, and must be refused without
// a panic, leaving the App empty.
func FuzzApplySnapshotChunk(f *testing.F) {
	var export []byte
	dir := f.TempDir()
	src := newDistrict(f, memApp(f))
	if err := src.app.EnableSnapshots(ledger.SnapshotConfig{Dir: dir, Interval: 1, ChunkSize: 1 << 20}); err != nil {
		f.Fatal(err)
	}
	src.ok(src.tx(src.psb.party, src.alice.register()))
	for deadline := time.Now().Add(10 * time.Second); export == nil && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, s := range listSnapshots(f, src.app) {
			res, err := src.app.LoadSnapshotChunk(context.Background(), &abci.RequestLoadSnapshotChunk{Height: s.Height, Format: s.Format})
			if err == nil {
				export = res.Chunk
			}
		}
	}
	if export == nil {
		f.Fatal("no snapshot to seed the corpus with")
	}
	f.Add(export)
	f.Add(export[:len(export)/2])
	f.Add([]byte("\x00\x01\x01k\x01v"))
	f.Add([]byte("\x01\x01\x01k"))
	f.Add([]byte{})
	root := bytes.Repeat([]byte{0x5a}, 32)
	f.Fuzz(func(t *testing.T, chunk []byte) {
		app, err := ledger.OpenMemory(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer app.Close()
		sum := sha256.Sum256(chunk)
		meta := append(bytes.Clone(root), sum[:]...)
		hash := sha256.Sum256(meta)
		s := &abci.Snapshot{Height: 1, Format: ledger.SnapshotFormat, Chunks: 1, Hash: hash[:], Metadata: meta}
		if got := offer(t, app, s, root); got != abci.ResponseOfferSnapshot_ACCEPT {
			t.Fatalf("OfferSnapshot = %v", got)
		}
		if got := apply(t, app, 0, chunk, "fuzz").Result; got != abci.ResponseApplySnapshotChunk_REJECT_SNAPSHOT {
			t.Fatalf("ApplySnapshotChunk = %v, want REJECT_SNAPSHOT", got)
		}
		if got := info(t, app); got.LastBlockHeight != 0 {
			t.Fatalf("a refused chunk left the App at height %d", got.LastBlockHeight)
		}
	})
}
