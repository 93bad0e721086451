package credential

import (
	"errors"
	"testing"

	"github.com/imi-city/imi/internal/ledger"
)

// countingLedger counts reads and can fail on demand.
type countingLedger struct {
	height      int64
	auths, vcts int
	fail        error
}

func (l *countingLedger) AuthorityByDID(d string, h int64) (*ledger.Authority, *ledger.Stamp, int64, error) {
	l.auths++
	if l.fail != nil {
		return nil, nil, l.height, l.fail
	}
	return &ledger.Authority{ID: "a", DID: d}, nil, l.height, nil
}

func (l *countingLedger) CredentialTypeByVCT(vct string, h int64) (*ledger.CredentialType, int64, error) {
	l.vcts++
	if l.fail != nil {
		return nil, l.height, l.fail
	}
	return &ledger.CredentialType{}, l.height, nil
}

func (l *countingLedger) Status(string, uint32, uint32, int64) (*ledger.StatusEntry, int64, error) {
	return nil, l.height, ledger.ErrNotFound
}

func (l *countingLedger) LastBlock() ledger.Stamp { return ledger.Stamp{Height: l.height} }

func TestCachedForgetsOnNewBlock(t *testing.T) {
	l := &countingLedger{height: 5}
	c := NewCached(l)
	for range 3 {
		c.AuthorityByDID("did:imi:x", 0)
		c.CredentialTypeByVCT("urn:imi:vct:x", 0)
	}
	if l.auths != 1 || l.vcts != 1 {
		t.Fatalf("reads at one height: %d authorities, %d types; want 1 each", l.auths, l.vcts)
	}
	l.height = 6
	c.AuthorityByDID("did:imi:x", 0)
	c.CredentialTypeByVCT("urn:imi:vct:x", 0)
	if l.auths != 2 || l.vcts != 2 {
		t.Errorf("after a new block: %d authorities, %d types; want 2 each", l.auths, l.vcts)
	}
	// Past heights are never cached.
	c.AuthorityByDID("did:imi:x", 3)
	if l.auths != 3 {
		t.Errorf("a past height was served from the cache")
	}
}

func TestCachedKeepsNoTransientError(t *testing.T) {
	l := &countingLedger{height: 5, fail: errors.New("disk")}
	c := NewCached(l)
	if _, _, _, err := c.AuthorityByDID("did:imi:x", 0); err == nil {
		t.Fatal("error lost")
	}
	l.fail = nil
	if a, _, _, err := c.AuthorityByDID("did:imi:x", 0); err != nil || a == nil {
		t.Errorf("a transient error was cached: %v", err)
	}
	// Not found is an answer for this height and may be cached.
	l.fail = ledger.ErrNotFound
	c.AuthorityByDID("did:imi:y", 0)
	c.AuthorityByDID("did:imi:y", 0)
	if l.auths != 3 {
		t.Errorf("not-found was read %d times in all, want it cached", l.auths-1)
	}
}
