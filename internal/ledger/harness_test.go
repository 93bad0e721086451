package ledger_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	cmted25519 "github.com/cometbft/cometbft/crypto/ed25519"
	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// The test harness drives an App through its ABCI methods the way CometBFT
// does: InitChain once, then FinalizeBlock + Commit per block, with block
// time from an injected clock that advances deterministically.

const (
	testChainID   = "imi-test-1"
	blockInterval = 5 * time.Second
)

var genesisTime = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// party is anyone who signs: an authority or a resident. Keys come from a
// seed derived from the name, so runs and twin Apps see the same bytes.
type party struct {
	name string
	key  key.Private
	did  string
}

func seedKey(t testing.TB, name string) key.Private {
	t.Helper()
	seed := sha256.Sum256([]byte("imi ledger test key: " + name))
	k, err := key.FromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newParty(t testing.TB, name string) *party {
	t.Helper()
	k := seedKey(t, name)
	return &party{name: name, key: k, did: did.FromKey(k.Public()).String()}
}

// authority is a party with a consortium seat.
type authority struct {
	*party
	id        string
	validator key.Private // consensus key
	spec      tx.AuthoritySpec
}

func newAuthority(t testing.TB, id string, power int64, roles ...string) *authority {
	t.Helper()
	p := newParty(t, "authority "+id)
	val := seedKey(t, "validator "+id)
	a := &authority{party: p, id: id, validator: val}
	a.spec = tx.AuthoritySpec{
		ID: id, NameZH: id + " 局", NameEN: id + " bureau", Key: p.key.Public(),
		Roles: roles, Endpoint: "http://" + id + ".example:8080",
	}
	if power > 0 {
		a.spec.ValidatorKey, a.spec.Power = val.Public().Bytes(), power
	}
	return a
}

// resident is a party with an ID number, a recovery key and a uniqueness tag.
type resident struct {
	*party
	recovery key.Private
	number   idnumber.Number
	tag      tx.Hash32
}

// fixedHMAC is the registrars' uniqueness key. It is read from a file with a
// fixed secret so that tags (and so app hashes) are the same on every run.
func fixedHMAC(t testing.TB) key.HMAC {
	t.Helper()
	secret := sha256.Sum256([]byte("imi ledger test uniqueness key"))
	path := filepath.Join(t.TempDir(), "uniqueness.key")
	b := fmt.Sprintf(`{"type":"imi-hmac-sha256-key","secret":%q}`, base64.RawURLEncoding.EncodeToString(secret[:]))
	if err := os.WriteFile(path, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := key.ReadHMACFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newResident makes a resident with a synthetic ID number; seq makes the
// number distinct.
func newResident(t testing.TB, name string, seq int) *resident {
	t.Helper()
	n, err := idnumber.Example("440604", 1990, 3, 7, seq)
	if err != nil {
		t.Fatal(err)
	}
	return &resident{
		party:    newParty(t, "resident "+name),
		recovery: seedKey(t, "recovery "+name),
		number:   n,
		tag:      idnumber.UniquenessTag(fixedHMAC(t), n),
	}
}

// register is the registration body a registrar signs after proofing r.
func (r *resident) register() *tx.RegisterResident {
	return &tx.RegisterResident{
		DID: r.did, Key: r.key.Public(), RecoveryHash: key.RecoveryHash(r.recovery.Public()),
		UniquenessTag: r.tag, Assurance: "high",
	}
}

func genesisOf(auths ...*authority) ledger.Genesis {
	g := ledger.Genesis{DistrictZH: "禅城区", DistrictEN: "Chancheng District"}
	for _, a := range auths {
		g.Authorities = append(g.Authorities, a.spec)
	}
	return g
}

// chain is an App under test with its block clock.
type chain struct {
	t      testing.TB
	app    *ledger.App
	height int64
	now    time.Time
	// hashes are the app hashes FinalizeBlock returned, by height; hashes[0]
	// is InitChain's.
	hashes map[int64][]byte
	// seq is the next sequence number per signer and lane as the harness
	// sees it; it is re-read from the App after every block, so a refused
	// transaction does not leave a gap.
	seq      map[seqKey]uint64
	initVals []abci.ValidatorUpdate
	last     *abci.ResponseFinalizeBlock
	// vals is the validator set as CometBFT would track it from InitChain
	// and every block's updates; an update CometBFT would refuse (and halt
	// on) fails the test.
	vals *cmttypes.ValidatorSet
	// blocks records every block, so that another App can be fed the same.
	blocks []recordedBlock
}

type recordedBlock struct {
	at  time.Time
	txs [][]byte
}

type seqKey struct {
	signer string
	lane   uint32
}

func memApp(t testing.TB) *ledger.App {
	t.Helper()
	app, err := ledger.OpenMemory(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app
}

// newChain runs InitChain on app with the genesis g, passing the validators
// CometBFT would take from the same genesis file.
func newChain(t testing.TB, app *ledger.App, g ledger.Genesis) *chain {
	t.Helper()
	state, err := tx.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var vals []abci.ValidatorUpdate
	for _, s := range g.Authorities {
		if s.Power > 0 {
			vals = append(vals, abci.UpdateValidator(s.ValidatorKey, s.Power, "ed25519"))
		}
	}
	res, err := app.InitChain(context.Background(), &abci.RequestInitChain{
		Time: genesisTime, ChainId: testChainID, InitialHeight: 1, Validators: vals, AppStateBytes: state,
	})
	if err != nil {
		t.Fatalf("InitChain: %v", err)
	}
	if len(res.AppHash) == 0 {
		t.Fatal("InitChain returned no app hash")
	}
	c := &chain{
		t: t, app: app, now: genesisTime, hashes: map[int64][]byte{0: res.AppHash},
		seq: map[seqKey]uint64{}, initVals: res.Validators,
	}
	if len(res.Validators) > 0 {
		vs, err := cmttypes.PB2TM.ValidatorUpdates(res.Validators)
		if err != nil {
			t.Fatal(err)
		}
		c.vals = cmttypes.NewValidatorSet(vs)
	}
	return c
}

// applyValidatorUpdates does what CometBFT's state execution does with a
// block's validator updates, and reports what would make it halt.
func (c *chain) applyValidatorUpdates(ups []abci.ValidatorUpdate) error {
	if len(ups) == 0 || c.vals == nil {
		return nil
	}
	vs, err := cmttypes.PB2TM.ValidatorUpdates(ups)
	if err != nil {
		return err
	}
	next := c.vals.Copy()
	if err := next.UpdateWithChangeSet(vs); err != nil {
		return err
	}
	c.vals = next
	return nil
}

// build signs body for signer with k, on any chain id, lane and sequence.
func build(t testing.TB, chainID, signer string, lane uint32, seq uint64, body tx.Body, k key.Private) []byte {
	t.Helper()
	x, err := tx.New(chainID, signer, lane, seq, body)
	if err != nil {
		t.Fatal(err)
	}
	x.Sign(k)
	return x.Encode()
}

// tx signs body as p with p's key on lane 0 with the next sequence number.
func (c *chain) tx(p *party, body tx.Body) []byte { return c.txAs(p.did, p.key, body) }

// txAs signs body for signer with k (which may not be signer's key).
func (c *chain) txAs(signer string, k key.Private, body tx.Body) []byte {
	return c.txLane(signer, k, 0, body)
}

func (c *chain) txLane(signer string, k key.Private, lane uint32, body tx.Body) []byte {
	c.t.Helper()
	sk := seqKey{signer, lane}
	if _, ok := c.seq[sk]; !ok {
		c.seq[sk] = c.app.NextSeq(signer, lane)
	}
	n := c.seq[sk]
	c.seq[sk]++
	return build(c.t, testChainID, signer, lane, n, body, k)
}

// block executes and commits the next block, one interval after the last.
func (c *chain) block(txs ...[]byte) *abci.ResponseFinalizeBlock {
	c.t.Helper()
	return c.blockAt(c.now.Add(blockInterval), txs...)
}

// blockAt executes and commits the next block with block time at. It checks
// the ABCI invariants every block must keep: one result per transaction, and
// Info reporting the height and the app hash FinalizeBlock announced.
func (c *chain) blockAt(at time.Time, txs ...[]byte) *abci.ResponseFinalizeBlock {
	c.t.Helper()
	c.finalize(at, txs...)
	return c.commit()
}

// finalize runs FinalizeBlock only; commit must follow.
func (c *chain) finalize(at time.Time, txs ...[]byte) *abci.ResponseFinalizeBlock {
	c.t.Helper()
	c.height++
	c.now = at
	res, err := c.app.FinalizeBlock(context.Background(), &abci.RequestFinalizeBlock{Height: c.height, Time: at, Txs: txs})
	if err != nil {
		c.t.Fatalf("FinalizeBlock %d: %v", c.height, err)
	}
	if len(res.TxResults) != len(txs) {
		c.t.Fatalf("FinalizeBlock %d: %d results for %d transactions", c.height, len(res.TxResults), len(txs))
	}
	c.hashes[c.height] = res.AppHash
	c.last = res
	c.blocks = append(c.blocks, recordedBlock{at: at, txs: txs})
	if err := c.applyValidatorUpdates(res.ValidatorUpdates); err != nil {
		c.t.Errorf("height %d: CometBFT would refuse the validator updates %v and halt: %v", c.height, res.ValidatorUpdates, err)
	}
	return res
}

func (c *chain) commit() *abci.ResponseFinalizeBlock {
	c.t.Helper()
	if _, err := c.app.Commit(context.Background(), &abci.RequestCommit{}); err != nil {
		c.t.Fatalf("Commit %d: %v", c.height, err)
	}
	info, err := c.app.Info(context.Background(), &abci.RequestInfo{})
	if err != nil {
		c.t.Fatal(err)
	}
	if info.LastBlockHeight != c.height || string(info.LastBlockAppHash) != string(c.hashes[c.height]) {
		c.t.Fatalf("after Commit %d: Info = height %d hash %X, want height %d hash %X",
			c.height, info.LastBlockHeight, info.LastBlockAppHash, c.height, c.hashes[c.height])
	}
	for k := range c.seq {
		c.seq[k] = c.app.NextSeq(k.signer, k.lane)
	}
	return c.last
}

// ok executes a block whose transactions must all succeed.
func (c *chain) ok(txs ...[]byte) *abci.ResponseFinalizeBlock {
	c.t.Helper()
	res := c.block(txs...)
	for i, r := range res.TxResults {
		if r.Code != uint32(ledger.OK) {
			c.t.Fatalf("height %d tx %d: %s (%s), want ok", c.height, i, ledger.Code(r.Code).Name(), r.Log)
		}
	}
	return res
}

// want executes a block and checks each transaction's code.
func (c *chain) want(txs [][]byte, want ...ledger.Code) *abci.ResponseFinalizeBlock {
	c.t.Helper()
	res := c.block(txs...)
	wantCodes(c.t, res, want...)
	return res
}

// want1 executes a one-transaction block and checks its code.
func (c *chain) want1(raw []byte, want ledger.Code) *abci.ResponseFinalizeBlock {
	c.t.Helper()
	return c.want([][]byte{raw}, want)
}

// check runs CheckTx (a new transaction) and returns its code.
func (c *chain) check(raw []byte) ledger.Code {
	c.t.Helper()
	return c.checkType(raw, abci.CheckTxType_New)
}

func (c *chain) checkType(raw []byte, typ abci.CheckTxType) ledger.Code {
	c.t.Helper()
	res, err := c.app.CheckTx(context.Background(), &abci.RequestCheckTx{Tx: raw, Type: typ})
	if err != nil {
		c.t.Fatalf("CheckTx: %v", err)
	}
	if res.Code != uint32(ledger.OK) && (res.Codespace != ledger.Codespace || res.Info != ledger.Code(res.Code).Name()) {
		c.t.Errorf("CheckTx refusal has codespace %q info %q", res.Codespace, res.Info)
	}
	return ledger.Code(res.Code)
}

func resultCodes(res *abci.ResponseFinalizeBlock) []ledger.Code {
	out := make([]ledger.Code, len(res.TxResults))
	for i, r := range res.TxResults {
		out[i] = ledger.Code(r.Code)
	}
	return out
}

func wantCodes(t testing.TB, res *abci.ResponseFinalizeBlock, want ...ledger.Code) {
	t.Helper()
	got := resultCodes(res)
	if slices.Equal(got, want) {
		for _, r := range res.TxResults {
			if r.Code != 0 && (r.Codespace != ledger.Codespace || r.Info != ledger.Code(r.Code).Name()) {
				t.Errorf("refusal %d has codespace %q info %q", r.Code, r.Codespace, r.Info)
			}
		}
		return
	}
	var b strings.Builder
	for i, r := range res.TxResults {
		fmt.Fprintf(&b, "\n  tx %d: %s %s", i, ledger.Code(r.Code).Name(), r.Log)
	}
	t.Fatalf("codes = %v, want %v%s", names(got), names(want), b.String())
}

func names(cs []ledger.Code) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name()
	}
	return out
}

// district is the usual fixture: four authorities of power 10, of which only
// psb is a registrar, and two residents not yet registered.
type district struct {
	*chain
	psb, hrss, tax, med *authority
	alice, bob          *resident
}

func newDistrict(t testing.TB, app *ledger.App) *district {
	t.Helper()
	d := &district{
		psb:   newAuthority(t, "psb", 10, ledger.RoleRegistrar),
		hrss:  newAuthority(t, "hrss", 10, "issuer:social_insurance"),
		tax:   newAuthority(t, "tax", 10, ledger.RoleServiceProvider),
		med:   newAuthority(t, "med", 10, "issuer:medical_insurance", ledger.RoleServiceProvider),
		alice: newResident(t, "alice", 1),
		bob:   newResident(t, "bob", 2),
	}
	d.chain = newChain(t, app, genesisOf(d.psb, d.hrss, d.tax, d.med))
	return d
}

// withAlice returns a district whose first block registered alice.
func withAlice(t testing.TB) *district {
	t.Helper()
	d := newDistrict(t, memApp(t))
	d.ok(d.tx(d.psb.party, d.alice.register()))
	return d
}

// resident reads a committed resident record.
func (c *chain) resident(d string) *ledger.Resident {
	c.t.Helper()
	r, _, err := c.app.ResidentRecord(d, 0)
	if err != nil {
		c.t.Fatalf("ResidentRecord(%s): %v", d, err)
	}
	return r
}

// currentKey is the JWK x of the DID's only verification method.
func (c *chain) currentKey(d string, h int64) string {
	c.t.Helper()
	res, err := c.app.Resolve(d, h)
	if err != nil {
		c.t.Fatalf("Resolve(%s, %d): %v", d, h, err)
	}
	if n := len(res.Document.VerificationMethod); n != 1 {
		c.t.Fatalf("Resolve(%s, %d): %d verification methods, want 1", d, h, n)
	}
	return res.Document.VerificationMethod[0].PublicKeyJwk.X
}

func jwkX(k key.Public) string { return base64.RawURLEncoding.EncodeToString(k.Bytes()) }

// votingPower is a validator's power in the set CometBFT would have.
func (c *chain) votingPower(k key.Private) int64 {
	_, v := c.vals.GetByAddress(cmted25519.PubKey(k.Public().Bytes()).Address())
	if v == nil {
		return 0
	}
	return v.VotingPower
}
