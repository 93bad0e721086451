package credential

import (
	"errors"
	"sync"

	"github.com/imi-city/imi/internal/ledger"
)

// Cached is a Ledger that remembers authorities and credential types for
// the height of the last block: they change rarely and decoding them was a
// sixth of a verification. Status entries are read every time, so a
// revocation counts from the next block as before.
type Cached struct {
	Ledger
	mu     sync.Mutex
	height int64
	auths  map[string]cachedAuthority
	types  map[string]*ledger.CredentialType
}

type cachedAuthority struct {
	a       *ledger.Authority
	removed *ledger.Stamp
	err     error
}

// maxCached bounds each map; a miss only costs a ledger read.
const maxCached = 4096

// NewCached wraps l.
func NewCached(l Ledger) *Cached { return &Cached{Ledger: l} }

// at returns the cache for the current height, emptying it on a new block.
func (c *Cached) at() {
	h := c.Ledger.LastBlock().Height
	if h != c.height || c.auths == nil {
		c.height, c.auths, c.types = h, map[string]cachedAuthority{}, map[string]*ledger.CredentialType{}
	}
}

// AuthorityByDID implements Ledger for the latest height (h 0).
func (c *Cached) AuthorityByDID(d string, h int64) (*ledger.Authority, *ledger.Stamp, int64, error) {
	if h != 0 {
		return c.Ledger.AuthorityByDID(d, h)
	}
	c.mu.Lock()
	c.at()
	e, ok := c.auths[d]
	height := c.height
	c.mu.Unlock()
	if !ok {
		var err error
		e.a, e.removed, height, err = c.Ledger.AuthorityByDID(d, 0)
		e.err = err
		if err != nil && !isNotFound(err) {
			return e.a, e.removed, height, err // not cached: may be transient
		}
		c.mu.Lock()
		if c.height == height && len(c.auths) < maxCached {
			c.auths[d] = e
		}
		c.mu.Unlock()
	}
	return e.a, e.removed, height, e.err
}

// CredentialTypeByVCT implements Ledger for the latest height (h 0).
func (c *Cached) CredentialTypeByVCT(vct string, h int64) (*ledger.CredentialType, int64, error) {
	if h != 0 {
		return c.Ledger.CredentialTypeByVCT(vct, h)
	}
	c.mu.Lock()
	c.at()
	t, ok := c.types[vct]
	height := c.height
	c.mu.Unlock()
	if ok {
		return t, height, nil
	}
	t, height, err := c.Ledger.CredentialTypeByVCT(vct, 0)
	if err != nil {
		return t, height, err
	}
	c.mu.Lock()
	if c.height == height && len(c.types) < maxCached {
		c.types[vct] = t
	}
	c.mu.Unlock()
	return t, height, nil
}

func isNotFound(err error) bool { return errors.Is(err, ledger.ErrNotFound) }
