// Package ledger is IMI's ABCI application: the deterministic state machine
// that holds the district's shared registries (authorities, residents' DIDs,
// governance proposals) in a Merkle tree whose root is the app hash.
//
// The ledger reads no clock, draws no randomness and never lets map order
// reach state: block time comes from the block, writes are applied in key
// order. It imports no HTTP and no wallet.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"

	abci "github.com/cometbft/cometbft/abci/types"
	dbm "github.com/cosmos/cosmos-db"
	"github.com/cosmos/iavl"
	idb "github.com/cosmos/iavl/db"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"

	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/tx"
)

// cacheNodes is the iavl node cache size: enough for the upper levels of a
// tree of tens of millions of keys.
const cacheNodes = 500_000

// App is the ABCI application.
type App struct {
	abci.BaseApplication

	log *slog.Logger
	db  idb.DB
	// results holds each included transaction's TxResult by hash, outside
	// the Merkle tree: a result is a deterministic function of the blocks,
	// and CometBFT's LastResultsHash already commits to its code.
	results idb.DB
	tree    *iavl.MutableTree
	chainID string

	// mu guards latest and check; ABCI calls are already serialised by
	// CometBFT's local client, but HTTP reads come from other goroutines.
	mu     sync.RWMutex
	latest *iavl.ImmutableTree
	check  *overlay // CheckTx's view: committed state plus pending txs

	// staged between FinalizeBlock and Commit
	staged    []committedTx
	stagedAt  Stamp
	stagedIdx map[[32]byte]int // index in staged of each hash's latest record
	lastBlock Stamp            // CheckTx judges time-bound rules by the last block

	waiters waiters
	metrics *Metrics

	// sigs remembers, by transaction hash, the key a new transaction's
	// signature was found valid against in CheckTx, so that FinalizeBlock
	// needn't verify it again: verification is a pure function of the key
	// and the bytes. Losing an entry costs only a verification.
	sigsMu sync.Mutex
	sigs   map[[32]byte]key.Public
	// decoded remembers, by transaction hash, what CheckTx decoded, so that
	// the re-checks after each block and FinalizeBlock need not parse a
	// large transaction again: decoding is a pure function of the bytes,
	// and bodies are never modified once decoded. Guarded by sigsMu.
	decoded map[[32]byte]decodedTx

	// State sync (snapshot.go): dir is the state directory ("" in memory),
	// snaps the snapshots taken and served (nil: none), restore the
	// snapshot being restored. restore is touched by ABCI calls only.
	dir     string
	snaps   *snapshotStore
	restore *restore
}

// maxSigs bounds the signature cache; about two mempools' worth.
const maxSigs = 100_000

func (a *App) rememberSig(h [32]byte, k key.Public) {
	a.sigsMu.Lock()
	defer a.sigsMu.Unlock()
	if a.sigs == nil || len(a.sigs) >= maxSigs {
		a.sigs = make(map[[32]byte]key.Public)
	}
	a.sigs[h] = k
}

type decodedTx struct {
	t    *tx.Tx
	body tx.Body
}

// maxDecodedTxs bounds the remembered decodings; past it they are forgotten at
// once, which costs only parsing again.
const maxDecodedTxs = 4096

// decode decodes raw (hash h), or returns what an earlier call decoded; if
// take, the entry is forgotten, as for a transaction in a block.
func (a *App) decode(h [32]byte, raw []byte, take bool) (*tx.Tx, tx.Body, error) {
	a.sigsMu.Lock()
	d, ok := a.decoded[h]
	if ok && take {
		delete(a.decoded, h)
	}
	a.sigsMu.Unlock()
	if ok {
		return d.t, d.body, nil
	}
	t, body, err := tx.Decode(raw)
	if err != nil || take {
		return t, body, err
	}
	a.sigsMu.Lock()
	if a.decoded == nil || len(a.decoded) >= maxDecodedTxs {
		a.decoded = make(map[[32]byte]decodedTx)
	}
	a.decoded[h] = decodedTx{t: t, body: body}
	a.sigsMu.Unlock()
	return t, body, nil
}

// verifiedSig reports whether CheckTx found the signature on the
// transaction with hash h valid against k, and forgets it.
func (a *App) verifiedSig(h [32]byte, k key.Public) bool {
	a.sigsMu.Lock()
	defer a.sigsMu.Unlock()
	got, ok := a.sigs[h]
	delete(a.sigs, h)
	return ok && got.Equal(k)
}

// committedTx is a transaction's outcome as the API reports it.
type committedTx struct {
	hash [32]byte
	res  TxResult
}

// stateDBOptions tune goleveldb for the state database. Its defaults (an
// 8 MiB block cache, a 4 MiB write buffer) suit a small store: once the tree
// outgrows them, every iavl read that misses iavl's own cache - each node a
// Set walks past, each absent key a registration checks - re-reads index and
// filter blocks with a system call, and small memtables flush into many
// level-0 tables that compaction rewrites again and again.
var stateDBOptions = &opt.Options{
	Filter:             filter.NewBloomFilter(10), // as cosmos-db's default
	BlockCacheCapacity: 256 << 20,
	WriteBuffer:        64 << 20,
}

// Open opens (or creates) the state database in dir.
func Open(dir string, log *slog.Logger, m *Metrics) (*App, error) {
	db, err := dbm.NewGoLevelDBWithOpts("state", dir, stateDBOptions)
	if err != nil {
		return nil, fmt.Errorf("couldn't open state database: %w", err)
	}
	rdb, err := dbm.NewGoLevelDB("txresults", dir, nil)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("couldn't open transaction results database: %w", err)
	}
	sdb := idb.NewWrapper(db)
	if err := clearUnfinishedRestore(dir, sdb); err != nil {
		return nil, errors.Join(err, db.Close(), rdb.Close())
	}
	a, err := newApp(sdb, idb.NewWrapper(rdb), log, m)
	if err != nil {
		return nil, err
	}
	a.dir = dir
	return a, nil
}

// OpenMemory opens an in-memory state, for tests and tools.
func OpenMemory(log *slog.Logger) (*App, error) {
	return newApp(idb.NewMemDB(), idb.NewMemDB(), log, nil)
}

func newApp(db, results idb.DB, log *slog.Logger, m *Metrics) (*App, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tree := iavl.NewMutableTree(db, cacheNodes, false, iavl.NewNopLogger())
	if _, err := tree.Load(); err != nil {
		return nil, fmt.Errorf("couldn't load state: %w", err)
	}
	a := &App{log: log, db: db, results: results, tree: tree, metrics: m}
	if err := a.refreshLatest(); err != nil {
		return nil, err
	}
	a.chainID = getMeta(treeKV{a.latest}).ChainID
	return a, nil
}

// Close releases the database.
func (a *App) Close() error {
	a.closeSnapshots()
	return errors.Join(a.db.Close(), a.results.Close())
}

// refreshLatest points readers at the newest version. The caller holds
// a.mu for writing, or is the constructor.
func (a *App) refreshLatest() error {
	v := a.tree.Version()
	im, err := a.tree.GetImmutable(v)
	if err != nil && v != 0 {
		return fmt.Errorf("couldn't load version %d: %w", v, err)
	}
	if im == nil {
		im = iavl.NewImmutableTree(idb.NewMemDB(), 0, true, iavl.NewNopLogger())
	}
	a.latest = im
	a.check = newOverlay(treeKV{im})
	return nil
}

// committed is the last committed state, for ABCI calls only: CometBFT
// never runs them concurrently with Commit.
func (a *App) committed() kv { return treeKV{a.latest} }

// treeKV adapts an iavl tree to kv.
type treeKV struct {
	t interface{ Get([]byte) ([]byte, error) }
}

func (t treeKV) get(k []byte) []byte {
	v, err := t.t.Get(k)
	if err != nil {
		panic(fmt.Sprintf("ledger: state read failed: %v", err))
	}
	return v
}

func (t treeKV) set(k, v []byte) {
	mt, ok := t.t.(*iavl.MutableTree)
	if !ok {
		panic("ledger: write to a read-only tree")
	}
	var err error
	if v == nil {
		_, _, err = mt.Remove(k)
	} else {
		_, err = mt.Set(k, v)
	}
	if err != nil {
		panic(fmt.Sprintf("ledger: state write failed: %v", err))
	}
}

// Info reports the last committed height and app hash, so that CometBFT
// replays exactly the blocks this state has not seen.
func (a *App) Info(context.Context, *abci.RequestInfo) (*abci.ResponseInfo, error) {
	return &abci.ResponseInfo{
		Data:             "imi",
		Version:          "1",
		AppVersion:       1,
		LastBlockHeight:  a.tree.Version(),
		LastBlockAppHash: a.lastHash(),
	}, nil
}

func (a *App) lastHash() []byte {
	if a.tree.Version() == 0 {
		return nil
	}
	return a.tree.Hash()
}

// InitChain loads the founding authorities from the genesis app state.
func (a *App) InitChain(_ context.Context, req *abci.RequestInitChain) (*abci.ResponseInitChain, error) {
	var g Genesis
	if err := tx.Unmarshal(req.AppStateBytes, &g); err != nil {
		return nil, fmt.Errorf("couldn't read the genesis app state: %w", err)
	}
	if req.InitialHeight > 1 {
		// Versions are heights: the first SaveVersion must be the first block.
		a.tree.SetInitialVersion(uint64(req.InitialHeight))
	}
	st := newOverlay(treeKV{a.tree})
	at := Stamp{Height: req.InitialHeight, Time: req.Time}
	m := &Meta{ChainID: req.ChainId, DistrictZH: g.DistrictZH, DistrictEN: g.DistrictEN}
	var vals []abci.ValidatorUpdate
	for i := range g.Authorities {
		s := &g.Authorities[i]
		if err := checkAction(st, m, tx.ActionAddAuthority, s); err != nil {
			return nil, fmt.Errorf("genesis authority %d: %w", i, err)
		}
		au := authorityFromSpec(s, at)
		putAuthority(st, au)
		st.set([]byte(pAuthorityBy+au.DID), []byte(au.ID))
		m.Authorities = append(m.Authorities, au.ID)
		slices.Sort(m.Authorities)
		if au.Power > 0 {
			vals = append(vals, abci.UpdateValidator(au.ValidatorKey, au.Power, "ed25519"))
		}
	}
	if len(m.Authorities) == 0 {
		return nil, errors.New("the genesis has no authorities")
	}
	for i := range g.CredentialTypes {
		gt := &g.CredentialTypes[i]
		au := getAuthority(st, gt.Issuer)
		if au == nil || !au.HasRole(RoleIssuerPrefix+gt.Type.ID) {
			return nil, fmt.Errorf("genesis credential type %d: %q does not hold the role issuer:%s", i, gt.Issuer, gt.Type.ID)
		}
		if err := checkCredentialType(st, &gt.Type); err != nil {
			return nil, fmt.Errorf("genesis credential type %s: %w", gt.Type.ID, err)
		}
		putJSON(st, []byte(pCredType+gt.Type.ID), &CredentialType{RegisterCredentialType: gt.Type, Issuer: au.ID, Version: 1, Registered: at})
		st.set([]byte(pVCT+gt.Type.VCT), []byte(gt.Type.ID))
	}
	for i, k := range g.KEMKeys {
		au := getAuthority(st, k.Authority)
		if au == nil || len(k.Key) != 32 {
			return nil, fmt.Errorf("genesis KEM key %d: no authority %q or not 32 bytes", i, k.Authority)
		}
		au.KEMKey = k.Key
		putAuthority(st, au)
	}
	for i := range g.Services {
		gs := &g.Services[i]
		au := getAuthority(st, gs.Authority)
		if au == nil || !au.HasRole(RoleServiceProvider) {
			return nil, fmt.Errorf("genesis service %d: %q is not a service provider", i, gs.Authority)
		}
		if getRecord[Service](st, pService+gs.Service.ID) != nil {
			return nil, fmt.Errorf("genesis service %s is listed twice", gs.Service.ID)
		}
		if err := checkService(st, &gs.Service); err != nil {
			return nil, fmt.Errorf("genesis service %s: %w", gs.Service.ID, err)
		}
		putJSON(st, []byte(pService+gs.Service.ID), &Service{RegisterService: gs.Service, Authority: au.ID, Version: 1, Registered: at})
	}
	putMeta(st, m)
	// Until block one commits, the mempool must already see the founding
	// authorities, or it would refuse every transaction of a new chain.
	a.mu.Lock()
	a.check = &overlay{base: treeKV{a.latest}, writes: maps.Clone(st.writes)}
	a.lastBlock = Stamp{Height: req.InitialHeight - 1, Time: req.Time}
	a.mu.Unlock()
	st.flush()
	a.chainID = req.ChainId
	if err := checkGenesisValidators(req.Validators, vals); err != nil {
		return nil, err
	}
	return &abci.ResponseInitChain{Validators: vals, AppHash: a.tree.WorkingHash()}, nil
}

// checkGenesisValidators refuses a genesis whose CometBFT validators differ
// from the authorities' validator keys: the ledger's registry is the truth.
func checkGenesisValidators(got, want []abci.ValidatorUpdate) error {
	if len(got) == 0 {
		return nil
	}
	norm := func(vs []abci.ValidatorUpdate) []string {
		out := make([]string, 0, len(vs))
		for _, v := range vs {
			out = append(out, fmt.Sprintf("%x/%d", v.PubKey.GetEd25519(), v.Power))
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(norm(got), norm(want)) {
		return errors.New("genesis validators do not match the authorities' validator keys")
	}
	return nil
}

// CheckTx runs the state machine on the mempool's view. A re-check after a
// block skips the signature, which was verified when the transaction arrived
// and is verified again when its block executes.
func (a *App) CheckTx(_ context.Context, req *abci.RequestCheckTx) (*abci.ResponseCheckTx, error) {
	// Parsing needs no lock; a re-check reuses the first check's parse.
	h := tx.Hash(req.Tx)
	t, body, err := a.decode(h, req.Tx, false)
	// The lock keeps NextSeq readers off the overlay while it changes.
	a.mu.Lock()
	c := execCtx{chainID: a.chainID, at: a.lastBlock, verifySig: req.Type == abci.CheckTxType_New,
		mempool: true, recheck: req.Type == abci.CheckTxType_Recheck}
	c.verified = func(k key.Public) { a.rememberSig(h, k) }
	var rej *Rejection
	if err != nil {
		rej = reject(CodeMalformed, err.Error())
	} else {
		_, rej = applyDecoded(a.check, t, body, c)
	}
	a.mu.Unlock()
	if rej != nil {
		a.metrics.checkRejected(rej.Code)
		return &abci.ResponseCheckTx{Code: uint32(rej.Code), Codespace: Codespace, Log: rej.Error(), Info: rej.Code.Name()}, nil
	}
	return &abci.ResponseCheckTx{Code: uint32(OK)}, nil
}

// FinalizeBlock executes the block's transactions in order on the working tree.
func (a *App) FinalizeBlock(_ context.Context, req *abci.RequestFinalizeBlock) (*abci.ResponseFinalizeBlock, error) {
	c := execCtx{chainID: a.chainID, at: Stamp{Height: req.Height, Time: req.Time}, verifySig: true}
	st := treeKV{a.tree}
	results := make([]*abci.ExecTxResult, len(req.Txs))
	var vals validatorUpdates
	a.staged = a.staged[:0]
	a.stagedIdx = map[[32]byte]int{}
	a.stagedAt = c.at
	pre := a.preverify(req.Txs)
	// iavl's Set rewires nodes the committed tree shares; no reader may walk
	// it meanwhile.
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, raw := range req.Txs {
		var (
			t   *tx.Tx
			eff *effect
			rej *Rejection
		)
		if p := pre[i]; p.err != nil {
			rej = reject(CodeMalformed, p.err.Error())
		} else {
			cc := c
			cc.pre = p.verdict
			t = p.t
			eff, rej = applyDecoded(st, p.t, p.body, cc)
		}
		r := TxResult{Height: req.Height, Index: uint32(i)}
		if t != nil {
			r.Type, r.Signer = string(t.Type), t.Signer
		}
		if rej != nil {
			r.Code, r.Log = rej.Code, rej.Error()
			results[i] = &abci.ExecTxResult{Code: uint32(rej.Code), Codespace: Codespace, Log: rej.Error(), Info: rej.Code.Name()}
		} else {
			results[i] = &abci.ExecTxResult{Code: uint32(OK)}
			for _, v := range eff.validators {
				vals.add(v)
			}
		}
		a.metrics.delivered(r.Type, r.Code)
		h := tx.Hash(raw)
		// A hash's record is its applying inclusion: a refusal is replaced
		// by a later success of the same bytes, a success is never replaced.
		if prev, had := a.txResultBefore(h); had && !(prev.Code != OK && r.Code == OK) {
			r = prev
		}
		a.stagedIdx[h] = len(a.staged)
		a.staged = append(a.staged, committedTx{hash: h, res: r})
	}
	return &abci.ResponseFinalizeBlock{TxResults: results, ValidatorUpdates: vals.updates(a.validatorKeys), AppHash: a.tree.WorkingHash()}, nil
}

// validatorUpdates merges a block's validator changes to one per key, in the
// order keys first appear, the last power winning: CometBFT halts on a block
// that names a key twice.
type validatorUpdates struct {
	order []string
	power map[string]int64
}

func (v *validatorUpdates) add(c validatorChange) {
	if v.power == nil {
		v.power = map[string]int64{}
	}
	k := string(c.key)
	if _, ok := v.power[k]; !ok {
		v.order = append(v.order, k)
	}
	v.power[k] = c.power
}

// updates drops removals of keys that were not validators when the block
// started (added and removed within it): CometBFT refuses to remove a
// validator it does not have.
// current is read only for a block that changes validators, which is rare.
func (v *validatorUpdates) updates(current func() map[string]bool) []abci.ValidatorUpdate {
	if len(v.order) == 0 {
		return nil
	}
	was := current()
	var out []abci.ValidatorUpdate
	for _, k := range v.order {
		p := v.power[k]
		if p == 0 && !was[k] {
			continue
		}
		out = append(out, abci.UpdateValidator([]byte(k), p, "ed25519"))
	}
	return out
}

// validatorKeys are the validator keys of the last committed state.
func (a *App) validatorKeys() map[string]bool {
	st := a.committed()
	out := map[string]bool{}
	for _, id := range getMeta(st).Authorities {
		if au := getAuthority(st, id); au != nil && au.Power > 0 {
			out[string(au.ValidatorKey)] = true
		}
	}
	return out
}

type preverified struct {
	t       *tx.Tx
	body    tx.Body
	err     error
	verdict *sigVerdict
}

// preverify decodes the block's transactions and checks their signatures
// against the signers' keys at the last commit, spread over the CPUs.
// Signature checks dominate a block's cost and are independent of order.
func (a *App) preverify(txs [][]byte) []preverified {
	out := make([]preverified, len(txs))
	st := a.committed()
	workers := min(runtime.GOMAXPROCS(0), max(1, len(txs)/16))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := signerKeys{st: st, m: map[string]key.Public{}}
			for i := w; i < len(txs); i += workers {
				p := &out[i]
				h := tx.Hash(txs[i])
				p.t, p.body, p.err = a.decode(h, txs[i], true)
				if p.err != nil {
					continue
				}
				if k, ok := keys.of(p.t, p.body); ok {
					valid := a.verifiedSig(h, k) || p.t.VerifySig(k)
					p.verdict = &sigVerdict{key: k, ok: valid}
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// signerKeys memoises, for one worker of one block, each signer's key at the
// last commit: a block's registrations come from a few registrars, and their
// records need not be decoded once per transaction.
type signerKeys struct {
	st kv
	m  map[string]key.Public
}

func (s signerKeys) of(t *tx.Tx, body tx.Body) (key.Public, bool) {
	if _, ok := body.(*tx.Recover); ok {
		return signingKey(s.st, t, body)
	}
	if k, ok := s.m[t.Signer]; ok {
		return k, true
	}
	k, ok := signingKey(s.st, t, body)
	if ok {
		s.m[t.Signer] = k
	}
	return k, ok
}

// Commit persists the block's state as version = height and resets the
// mempool's view to it.
func (a *App) Commit(context.Context, *abci.RequestCommit) (*abci.ResponseCommit, error) {
	// Results first: if the process dies before SaveVersion, CometBFT
	// replays the block, which rewrites the same results.
	b := a.results.NewBatch()
	for _, t := range a.staged {
		v, err := tx.Marshal(t.res)
		if err == nil {
			err = b.Set(txResultKey(t.hash), v)
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("couldn't save transaction results: %w", err)
		}
	}
	err := b.WriteSync()
	b.Close()
	if err != nil {
		return nil, fmt.Errorf("couldn't save transaction results: %w", err)
	}
	a.mu.Lock()
	_, _, err = a.tree.SaveVersion()
	if err == nil {
		err = a.refreshLatest()
		// Under the lock: LastBlock is read by API goroutines.
		a.lastBlock = a.stagedAt
	}
	a.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("couldn't save state: %w", err)
	}
	a.metrics.committed(a.tree.Version(), len(a.staged))
	a.waiters.notify(a.staged)
	a.staged = a.staged[:0]
	a.snapshotAfterCommit(a.tree.Version())
	return &abci.ResponseCommit{}, nil
}

// Query answers CometBFT's ABCI query for raw state: path "/store", data =
// key, with a Merkle proof when asked.
func (a *App) Query(_ context.Context, req *abci.RequestQuery) (*abci.ResponseQuery, error) {
	if req.Path != "/store" {
		return &abci.ResponseQuery{Code: uint32(CodeNotFound), Log: "unknown path; use /store"}, nil
	}
	p, err := a.Prove(req.Data, req.Height)
	if err != nil {
		return &abci.ResponseQuery{Code: uint32(CodeNotFound), Log: err.Error()}, nil
	}
	res := &abci.ResponseQuery{Key: req.Data, Value: p.Value, Height: p.Height}
	if req.Prove {
		b, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		res.Info = string(b)
	}
	return res, nil
}

// txResultBefore returns the recorded result of the transaction with hash
// h from an earlier inclusion: in this block, else in a committed one.
func (a *App) txResultBefore(h [32]byte) (TxResult, bool) {
	if i, ok := a.stagedIdx[h]; ok {
		return a.staged[i].res, true
	}
	return a.committedTxResult(h)
}

// committedTxResult returns the result of the transaction with hash h
// from a committed block.
func (a *App) committedTxResult(h [32]byte) (TxResult, bool) {
	var r TxResult
	b, err := a.results.Get(txResultKey(h))
	if err != nil {
		panic(fmt.Sprintf("ledger: transaction results read failed: %v", err))
	}
	if b == nil {
		return r, false
	}
	if err := tx.Unmarshal(b, &r); err != nil {
		panic(fmt.Sprintf("ledger: corrupt transaction result %x: %v", h, err))
	}
	return r, true
}
