package ledger

import (
	"testing"

	dbm "github.com/cosmos/cosmos-db"
	"github.com/cosmos/iavl"
	idb "github.com/cosmos/iavl/db"

	"github.com/imi-city/imi/internal/tx"
)

// ConsentLoad is what one accepted grant_consent leaves in the state for
// its consent: the consent and, unless Boxes is nil, the grant's sealed
// subjects.
type ConsentLoad struct {
	Consent Consent
	Boxes   []tx.SealedSubject
}

// LoadConsents writes loads, and each signer's next sequence number from
// seqs, straight into the working tree under the keys and in the encoding
// grant_consent uses, and commits them as one version. It skips the
// transactions, their signatures and their checks: benchmarks use it to
// build states of millions of consents, which would take hours to sign and
// verify. Call it between blocks only; the next block is at the returned
// version plus one.
func (a *App) LoadConsents(tb testing.TB, loads []ConsentLoad, seqs map[string]uint64) int64 {
	tb.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	o := newOverlay(treeKV{a.tree})
	for i := range loads {
		c := &loads[i].Consent
		putJSON(o, []byte(consentKey(c.Subject, c.Service)), c)
		if loads[i].Boxes != nil {
			putJSON(o, []byte(pConsentBox+c.Subject+"/"+c.Service), loads[i].Boxes)
		}
	}
	for s, n := range seqs {
		o.set(seqKey(s, 0), encodeSeq(n))
	}
	o.flush() // in key order, as a block's writes
	if _, _, err := a.tree.SaveVersion(); err != nil {
		tb.Fatalf("couldn't save the loaded consents: %v", err)
	}
	if err := a.refreshLatest(); err != nil {
		tb.Fatal(err)
	}
	return a.tree.Version()
}

// OpenBaselineTree opens a bare iavl tree in dir the way Open opens the
// state (goleveldb with the same options, the same node cache), for
// benchmarks that compare the ledger's write rate with iavl's own.
func OpenBaselineTree(tb testing.TB, dir string) *iavl.MutableTree {
	tb.Helper()
	db, err := dbm.NewGoLevelDBWithOpts("baseline", dir, stateDBOptions)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	t := iavl.NewMutableTree(idb.NewWrapper(db), cacheNodes, false, iavl.NewNopLogger())
	if _, err := t.Load(); err != nil {
		tb.Fatal(err)
	}
	return t
}
