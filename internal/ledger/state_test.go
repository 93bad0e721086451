package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// scenario runs a few blocks that touch every transaction type, refusals
// included, and an empty block.
func scenario(t testing.TB, d *district) {
	t.Helper()
	carol := newResident(t, "carol", 3)
	water := newAuthority(t, "water", 10, ledger.RoleServiceProvider)
	d.ok(
		d.txLane(d.psb.did, d.psb.key, 0, d.alice.register()),
		d.txLane(d.psb.did, d.psb.key, 1, d.bob.register()),
		d.txLane(d.psb.did, d.psb.key, 2, carol.register()),
	)
	d.want([][]byte{
		d.tx(d.alice.party, &tx.RotateKey{NewKey: seedKey(t, "alice 2").Public()}),
		d.tx(d.psb.party, propose(tx.ActionAddAuthority, water.spec)),
		d.tx(d.hrss.party, d.bob.register()),
		[]byte("junk"),
	}, ledger.OK, ledger.OK, ledger.CodeNotAuthorized, ledger.CodeMalformed)
	d.ok(d.tx(d.hrss.party, vote("p-1")), d.tx(d.tax.party, vote("p-1")))
	d.block()
	d.ok(
		d.tx(d.bob.party, &tx.Deactivate{DID: d.bob.did, Reason: ledger.ReasonResidentRequest}),
		d.tx(d.psb.party, &tx.Deactivate{DID: carol.did, Reason: ledger.ReasonMovedAway}),
		d.txAs(d.alice.did, d.alice.recovery, &tx.Recover{RecoveryKey: d.alice.recovery.Public(),
			NewKey: seedKey(t, "alice 3").Public(), NewRecoveryHash: key.RecoveryHash(seedKey(t, "alice rec 2").Public())}),
	)
	d.ok(d.tx(d.psb.party, &tx.Reproof{DID: carol.did, UniquenessTag: carol.tag, NewKey: seedKey(t, "carol 2").Public(),
		NewRecoveryHash: key.RecoveryHash(seedKey(t, "carol rec 2").Public()), Assurance: "high"}))
	d.ok(d.tx(water.party, propose(tx.ActionSetValidator, tx.AuthoritySpec{ID: "psb", ValidatorKey: seedKey(t, "psb validator 2").Public().Bytes(), Power: 15})))
}

// replay feeds the blocks recorded on from to a chain on another App.
func replay(t testing.TB, app *ledger.App, from *chain) *chain {
	t.Helper()
	d := newDistrict(t, app)
	if !bytes.Equal(d.hashes[0], from.hashes[0]) {
		t.Fatalf("InitChain app hash %X, want %X", d.hashes[0], from.hashes[0])
	}
	for _, b := range from.blocks {
		d.blockAt(b.at, b.txs...)
		if !bytes.Equal(d.hashes[d.height], from.hashes[d.height]) {
			t.Fatalf("height %d: app hash %X, want %X", d.height, d.hashes[d.height], from.hashes[d.height])
		}
	}
	return d.chain
}

func TestDeterminism(t *testing.T) {
	a := newDistrict(t, memApp(t))
	scenario(t, a)

	// The same blocks on fresh Apps give the same app hash at every height;
	// several replicas give Go's map order several chances to differ.
	for i := range 4 {
		t.Run(fmt.Sprint("replica ", i), func(t *testing.T) {
			var app *ledger.App
			if i == 0 {
				var err error
				if app, err = ledger.Open(t.TempDir(), nil, nil); err != nil {
					t.Fatal(err)
				}
				defer app.Close()
			} else {
				app = memApp(t)
			}
			b := replay(t, app, a.chain)
			for _, id := range []string{a.alice.did, a.bob.did, a.psb.did} {
				ra, _ := a.app.Resolve(id, 0)
				rb, _ := b.app.Resolve(id, 0)
				ja, _ := json.Marshal(ra)
				jb, _ := json.Marshal(rb)
				if !bytes.Equal(ja, jb) {
					t.Errorf("Resolve(%s) differs:\n%s\n%s", id, ja, jb)
				}
			}
		})
	}

	// Building the scenario again from scratch gives the same bytes too:
	// keys, tags and Ed25519 signatures are all deterministic.
	again := newDistrict(t, memApp(t))
	scenario(t, again)
	for h := int64(0); h <= a.height; h++ {
		if !bytes.Equal(a.hashes[h], again.hashes[h]) {
			t.Errorf("height %d: a second run gave another app hash", h)
		}
	}

	// The app hash moves with the state, and only with it.
	for h := int64(1); h <= a.height; h++ {
		changed := !bytes.Equal(a.hashes[h], a.hashes[h-1])
		if empty := len(a.blocks[h-1].txs) == 0; changed == empty {
			t.Errorf("height %d (%d transactions): app hash changed = %v", h, len(a.blocks[h-1].txs), changed)
		}
	}
}

// TestBlockTimeIsState: the same transactions at another block time give
// another app hash, since records carry block time.
func TestBlockTimeIsState(t *testing.T) {
	a := newDistrict(t, memApp(t))
	b := newDistrict(t, memApp(t))
	a.blockAt(genesisTime.Add(time.Second), a.tx(a.psb.party, a.alice.register()))
	b.blockAt(genesisTime.Add(2*time.Second), b.tx(b.psb.party, b.alice.register()))
	if bytes.Equal(a.hashes[1], b.hashes[1]) {
		t.Error("block time did not reach the app hash")
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	app, err := ledger.Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := newDistrict(t, app)
	scenario(t, d)
	infoBefore, err := app.Info(context.Background(), &abci.RequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	aliceBefore, _ := app.Resolve(d.alice.did, 0)
	nextBefore := app.NextSeq(d.psb.did, 0)
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}

	app, err = ledger.Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	info, err := app.Info(context.Background(), &abci.RequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if info.LastBlockHeight != d.height || !bytes.Equal(info.LastBlockAppHash, d.hashes[d.height]) ||
		info.LastBlockHeight != infoBefore.LastBlockHeight || !bytes.Equal(info.LastBlockAppHash, infoBefore.LastBlockAppHash) {
		t.Fatalf("Info after reopening = height %d hash %X, want %d %X", info.LastBlockHeight, info.LastBlockAppHash, d.height, d.hashes[d.height])
	}
	if app.Height() != d.height || app.ChainID() != testChainID {
		t.Errorf("Height %d ChainID %q", app.Height(), app.ChainID())
	}
	aliceAfter, err := app.Resolve(d.alice.did, 0)
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(aliceBefore)
	jb, _ := json.Marshal(aliceAfter)
	if !bytes.Equal(ja, jb) {
		t.Errorf("alice before closing:\n%s\nafter reopening:\n%s", ja, jb)
	}
	if old, err := app.Resolve(d.alice.did, 1); err != nil || old.Document.VerificationMethod[0].PublicKeyJwk.X != jwkX(d.alice.key.Public()) {
		t.Errorf("history lost: %+v, %v", old, err)
	}
	if n := app.NextSeq(d.psb.did, 0); n != nextBefore {
		t.Errorf("NextSeq = %d, want %d", n, nextBefore)
	}
	if ids := (&chain{t: t, app: app}).authorityIDs(); len(ids) != 5 {
		t.Errorf("authorities after reopening = %v", ids)
	}

	// The reopened App continues the chain exactly as one that never
	// stopped: it knows its chain id, rejects replays, and agrees on hashes.
	twin := replay(t, memApp(t), d.chain)
	resumed := &chain{t: t, app: app, height: d.height, now: d.now, hashes: d.hashes, seq: map[seqKey]uint64{}, vals: d.vals}
	dave := newResident(t, "dave", 4)
	reg := resumed.tx(d.psb.party, dave.register())
	if got := resumed.check(d.blocks[0].txs[0]); got != ledger.CodeBadSequence {
		t.Errorf("CheckTx of an old transaction after reopening = %s, want bad_sequence", got.Name())
	}
	if got := resumed.check(reg); got != ledger.OK {
		t.Errorf("CheckTx after reopening = %s", got.Name())
	}
	resumed.ok(reg)
	twin.ok(reg)
	if !bytes.Equal(resumed.hashes[resumed.height], twin.hashes[twin.height]) {
		t.Error("the reopened App and one that never stopped disagree on the next block")
	}
}

func TestProofs(t *testing.T) {
	d := withAlice(t)
	registered := d.height
	d.ok(d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()}))
	rotated := d.height

	p, err := d.app.ProveDID(d.alice.did, registered)
	if err != nil {
		t.Fatal(err)
	}
	if p.Height != registered || !bytes.Equal(p.Root, d.hashes[registered]) {
		t.Errorf("proof height %d root %X, want %d %X", p.Height, p.Root, registered, d.hashes[registered])
	}
	if err := p.Verify(d.hashes[registered]); err != nil {
		t.Fatalf("Verify against the app hash of height %d: %v", registered, err)
	}
	r, err := ledger.ResidentFromProof(p)
	if err != nil || !r.Key.Equal(d.alice.key.Public()) || r.DID != d.alice.did {
		t.Errorf("ResidentFromProof = %+v, %v", r, err)
	}
	latest, err := d.app.ProveDID(d.alice.did, 0)
	if err != nil || latest.Height != rotated || latest.Verify(d.hashes[rotated]) != nil {
		t.Fatalf("latest proof = %+v, %v", latest, err)
	}
	if r, _ := ledger.ResidentFromProof(latest); r == nil || !r.Key.Equal(d.bob.key.Public()) {
		t.Errorf("latest proof carries %+v", r)
	}

	absent, err := d.app.ProveDID(d.bob.did, registered)
	if err != nil {
		t.Fatal(err)
	}
	if absent.Value != nil {
		t.Fatalf("proof of an unregistered DID carries %q", absent.Value)
	}
	if err := absent.Verify(d.hashes[registered]); err != nil {
		t.Errorf("non-membership proof: %v", err)
	}
	if _, err := ledger.ResidentFromProof(absent); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("ResidentFromProof(absence) = %v, want ErrNotFound", err)
	}

	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	bad := []struct {
		name    string
		p       ledger.Proof
		appHash []byte
	}{
		{"another height's app hash", *p, d.hashes[rotated]},
		{"the genesis app hash", *p, d.hashes[0]},
		{"tampered value", ledger.Proof{Height: p.Height, Key: p.Key, Value: flip(p.Value, len(p.Value)/2), Root: p.Root, Proof: p.Proof}, d.hashes[registered]},
		{"value swapped for a later one", ledger.Proof{Height: p.Height, Key: p.Key, Value: latest.Value, Root: p.Root, Proof: p.Proof}, d.hashes[registered]},
		{"another key", ledger.Proof{Height: p.Height, Key: []byte("did/" + d.bob.did), Value: p.Value, Root: p.Root, Proof: p.Proof}, d.hashes[registered]},
		{"membership claimed absent", ledger.Proof{Height: p.Height, Key: p.Key, Root: p.Root, Proof: p.Proof}, d.hashes[registered]},
		{"absence claimed present", ledger.Proof{Height: absent.Height, Key: absent.Key, Value: p.Value, Root: absent.Root, Proof: absent.Proof}, d.hashes[registered]},
		{"corrupt proof bytes", ledger.Proof{Height: p.Height, Key: p.Key, Value: p.Value, Root: p.Root, Proof: flip(p.Proof, 3)}, d.hashes[registered]},
		{"no proof", ledger.Proof{Height: p.Height, Key: p.Key, Value: p.Value, Root: p.Root}, d.hashes[registered]},
		{"trusting the proof's own root", *latest, p.Root},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Verify(tt.appHash); !errors.Is(err, ledger.ErrBadProof) {
				t.Errorf("Verify = %v, want ErrBadProof", err)
			}
		})
	}

	// Once bob registers, the old absence proof is still true of its
	// height and false of the new one.
	d.ok(d.tx(d.psb.party, d.bob.register()))
	if err := absent.Verify(d.hashes[d.height]); !errors.Is(err, ledger.ErrBadProof) {
		t.Errorf("old absence proof against the new app hash: %v", err)
	}
	if err := absent.Verify(d.hashes[registered]); err != nil {
		t.Errorf("old absence proof against its own height: %v", err)
	}
	if _, err := d.app.ProveDID(d.alice.did, d.height+1); !errors.Is(err, ledger.ErrBadHeight) {
		t.Errorf("ProveDID above the last height = %v, want ErrBadHeight", err)
	}
}

func TestABCIQuery(t *testing.T) {
	d := withAlice(t)
	want, err := d.app.ProveDID(d.alice.did, 0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.app.Query(context.Background(), &abci.RequestQuery{Path: "/store", Data: want.Key, Prove: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 0 || !bytes.Equal(res.Value, want.Value) || res.Height != d.height || !bytes.Equal(res.Key, want.Key) {
		t.Fatalf("Query = %+v", res)
	}
	var p ledger.Proof
	if err := json.Unmarshal([]byte(res.Info), &p); err != nil {
		t.Fatalf("proof in Info: %v", err)
	}
	if err := p.Verify(d.hashes[d.height]); err != nil {
		t.Errorf("proof from Query: %v", err)
	}
	res, _ = d.app.Query(context.Background(), &abci.RequestQuery{Path: "/store", Data: want.Key})
	if res.Info != "" || !bytes.Equal(res.Value, want.Value) {
		t.Errorf("Query without prove = %+v", res)
	}
	for _, q := range []*abci.RequestQuery{
		{Path: "/app/version", Data: want.Key},
		{Path: "/store", Data: want.Key, Height: d.height + 5},
	} {
		if res, err := d.app.Query(context.Background(), q); err != nil || res.Code != uint32(ledger.CodeNotFound) {
			t.Errorf("Query(%s, height %d) = %+v, %v; want not_found", q.Path, q.Height, res, err)
		}
	}
}

func TestWatch(t *testing.T) {
	d := newDistrict(t, memApp(t))
	good := d.tx(d.psb.party, d.alice.register())
	bad := d.tx(d.hrss.party, d.bob.register())
	later := d.tx(d.alice.party, &tx.RotateKey{NewKey: d.bob.key.Public()})

	waitGood, cancelGood := d.app.Watch(tx.Hash(good))
	defer cancelGood()
	waitGood2, cancelGood2 := d.app.Watch(tx.Hash(good))
	defer cancelGood2()
	waitBad, cancelBad := d.app.Watch(tx.Hash(bad))
	defer cancelBad()
	waitLater, cancelLater := d.app.Watch(tx.Hash(later))
	defer cancelLater()
	_, cancelGone := d.app.Watch(tx.Hash(good))
	cancelGone() // cancelling before the commit is harmless

	// A waiter started before the block, as the API does.
	type outcome struct {
		r   ledger.TxResult
		err error
	}
	early := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := waitGood2(ctx)
		early <- outcome{r, err}
	}()

	d.finalize(d.now.Add(blockInterval), bad, good)
	// Executed but not committed: nobody is told yet.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if r, err := waitGood(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("before Commit: %+v, %v; want to keep waiting", r, err)
	}
	d.commit()

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := waitGood(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.TxResult{Height: 1, Index: 1, Code: ledger.OK, Type: string(tx.TypeRegisterResident), Signer: d.psb.did}
	if r != want {
		t.Errorf("watched result = %+v, want %+v", r, want)
	}
	if stored, _ := d.app.TxResult(tx.Hash(good)); stored == nil || *stored != r {
		t.Errorf("TxResult = %+v, watched %+v", stored, r)
	}
	if o := <-early; o.err != nil || o.r != want {
		t.Errorf("waiter started before the block: %+v, %v", o.r, o.err)
	}
	r, err = waitBad(ctx)
	if err != nil || r.Code != ledger.CodeNotAuthorized || r.Index != 0 || r.Log == "" || r.Signer != d.hrss.did {
		t.Errorf("watched refusal = %+v, %v", r, err)
	}

	// The same bytes twice in one block: the watcher hears of the first,
	// applying inclusion.
	twice := d.tx(d.psb.party, d.bob.register())
	waitTwice, cancelTwice := d.app.Watch(tx.Hash(twice))
	defer cancelTwice()
	d.want([][]byte{twice, twice}, ledger.OK, ledger.CodeBadSequence)
	if r, err := waitTwice(ctx); err != nil || r.Code != ledger.OK || r.Index != 0 {
		t.Errorf("included twice: watched %+v, %v; want the first inclusion", r, err)
	}

	// A watch waits across blocks that do not carry its transaction.
	d.block()
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := waitLater(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("told of a transaction not yet included: %v", err)
	}
	d.ok(later)
	if r, err := waitLater(ctx); err != nil || r.Height != d.height || r.Code != ledger.OK {
		t.Errorf("later = %+v, %v", r, err)
	}
}

// TestNoPersonalData: after registration the state holds the keyed
// uniqueness tag and nothing from which the ID number can be read or
// brute-forced: not the number, not its digits, not its plain SHA-256.
func TestNoPersonalData(t *testing.T) {
	d := newDistrict(t, memApp(t))
	raw := d.tx(d.psb.party, d.alice.register())
	d.ok(raw)
	d.ok(d.tx(d.psb.party, &tx.Reproof{DID: d.alice.did, UniquenessTag: d.alice.tag, NewKey: d.bob.key.Public(),
		NewRecoveryHash: key.RecoveryHash(d.bob.recovery.Public()), Assurance: "high"}))

	number := d.alice.number.String()
	sum := sha256.Sum256([]byte(number))
	y, m, day := d.alice.number.BirthDate()
	forbidden := map[string][]byte{
		"ID number":               []byte(number),
		"ID number without check": []byte(number[:17]),
		"birth date":              fmt.Appendf(nil, "%04d%02d%02d", y, m, day),
		"SHA-256":                 sum[:],
		"SHA-256 hex":             []byte(hex.EncodeToString(sum[:])),
		"SHA-256 HEX":             fmt.Appendf(nil, "%X", sum[:]),
		"SHA-256 base64":          []byte(base64.StdEncoding.EncodeToString(sum[:])),
		"SHA-256 base64url":       []byte(base64.RawURLEncoding.EncodeToString(sum[:])),
	}
	tag := []byte(base64.RawURLEncoding.EncodeToString(d.alice.tag[:]))
	sawTag, n := false, 0
	d.app.EachCommitted(t, func(k, v []byte) {
		n++
		for what, b := range forbidden {
			if bytes.Contains(k, b) || bytes.Contains(v, b) {
				t.Errorf("the state holds the %s under %q", what, k)
			}
		}
		sawTag = sawTag || bytes.Contains(k, tag) || bytes.Contains(v, tag)
	})
	if !sawTag || n < 5 {
		t.Fatalf("looked at %d records and found the uniqueness tag: %v; the check saw nothing", n, sawTag)
	}
	// Nor does the transaction CometBFT stores in its blocks.
	for what, b := range forbidden {
		if bytes.Contains(raw, b) {
			t.Errorf("the registration transaction holds the %s", what)
		}
	}
}

// readers starts goroutines that read committed state the way the HTTP API
// does, until the returned stop is called.
func readers(t *testing.T, d *district) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := d.app.Resolve(d.alice.did, 0); err != nil {
					t.Error(err)
					return
				}
				d.app.Resolve(d.bob.did, 0)
				d.app.Resolve(d.alice.did, 1)
				d.app.ResidentRecord(d.alice.did, 0)
				d.app.Authorities(0)
				d.app.Proposals(0)
				d.app.Meta(0)
				d.app.NextSeq(d.psb.did, 0)
				d.app.Height()
				d.app.ChainID()
				if p, err := d.app.ProveDID(d.alice.did, int64(1+i%2)); err == nil {
					p.Verify(nil)
				}
				d.app.ProveDID(d.bob.did, 0)
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}

// TestConcurrentReadsDuringCommit: the HTTP API reads committed state from
// other goroutines while Commit saves a version (run with -race).
func TestConcurrentReadsDuringCommit(t *testing.T) {
	d := withAlice(t)
	cur := d.alice.key
	for i := range 30 {
		r := newResident(t, fmt.Sprint("resident ", i), 100+i)
		next := seedKey(t, fmt.Sprint("alice ", i))
		d.finalize(d.now.Add(blockInterval), d.tx(d.psb.party, r.register()), d.txAs(d.alice.did, cur, &tx.RotateKey{NewKey: next.Public()}))
		stop := readers(t, d)
		d.commit()
		stop()
		cur = next
	}
	if r := d.resident(d.alice.did); !r.Key.Equal(cur.Public()) {
		t.Error("the rotations were not applied")
	}
}

func TestQueryErrors(t *testing.T) {
	app := memApp(t)
	info, err := app.Info(context.Background(), &abci.RequestInfo{})
	if err != nil || info.LastBlockHeight != 0 || info.LastBlockAppHash != nil {
		t.Errorf("Info of an empty state = %+v, %v", info, err)
	}
	if _, _, err := app.Authorities(0); !errors.Is(err, ledger.ErrNoVersions) {
		t.Errorf("Authorities before any block = %v", err)
	}
	d := withAlice(t)
	if _, _, err := d.app.Proposal("p-1", 0); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Proposal(p-1) = %v, want ErrNotFound", err)
	}
	if _, err := d.app.TxResult([32]byte{1}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("TxResult(unknown) = %v, want ErrNotFound", err)
	}
	for name, call := range map[string]func() error{
		"Meta":           func() error { _, _, err := d.app.Meta(9); return err },
		"Authorities":    func() error { _, _, err := d.app.Authorities(9); return err },
		"Proposals":      func() error { _, _, err := d.app.Proposals(9); return err },
		"Proposal":       func() error { _, _, err := d.app.Proposal("p-1", 9); return err },
		"ResidentRecord": func() error { _, _, err := d.app.ResidentRecord(d.alice.did, 9); return err },
		"Prove":          func() error { _, err := d.app.Prove([]byte("meta"), 9); return err },
	} {
		if err := call(); !errors.Is(err, ledger.ErrBadHeight) {
			t.Errorf("%s above the last height = %v, want ErrBadHeight", name, err)
		}
	}
	p, err := d.app.Prove([]byte("meta"), 0)
	if err != nil || p.Verify(d.hashes[d.height]) != nil {
		t.Fatalf("Prove(meta) = %+v, %v", p, err)
	}
	if _, err := ledger.ResidentFromProof(p); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("ResidentFromProof(meta) = %v, want ErrNotFound", err)
	}
	// A long field is clipped in the log, not echoed whole.
	b := d.bob.register()
	b.Assurance = strings.Repeat("x", 1000)
	res := d.want1(d.tx(d.psb.party, b), ledger.CodeInvalidField)
	if l := res.TxResults[0].Log; len(l) > 300 || !strings.Contains(l, "…") {
		t.Errorf("log of a long field = %q", l)
	}
}
