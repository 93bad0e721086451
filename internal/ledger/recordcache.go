package ledger

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/imi-city/imi/internal/tx"
)

// recordCache keeps the decoded form of records that are read far more often
// than they change (services, credential types), keyed by state key and
// checked against the exact stored bytes, so a hit is the same value a fresh
// decode would give: the cache changes speed, never results. Values it
// returns are shared and must not be modified.
type recordCache[T any] struct {
	mu sync.RWMutex
	m  map[string]cachedRecord[T]
}

type cachedRecord[T any] struct {
	raw []byte
	v   *T
}

// maxCachedRecords bounds each cache; past it, entries are replaced at random by
// map order, which affects only speed.
const maxCachedRecords = 4096

var (
	services  = &recordCache[Service]{}
	credTypes = &recordCache[CredentialType]{}
)

func (d *recordCache[T]) get(st kv, k string) *T {
	raw := st.get([]byte(k))
	if raw == nil {
		return nil
	}
	d.mu.RLock()
	e, ok := d.m[k]
	d.mu.RUnlock()
	if ok && bytes.Equal(e.raw, raw) {
		return e.v
	}
	var v T
	if err := tx.Unmarshal(raw, &v); err != nil {
		panic(fmt.Sprintf("ledger: corrupt record %q: %v", k, err))
	}
	d.mu.Lock()
	if d.m == nil {
		d.m = map[string]cachedRecord[T]{}
	}
	if len(d.m) >= maxCachedRecords {
		for old := range d.m {
			delete(d.m, old)
			break
		}
	}
	d.m[k] = cachedRecord[T]{raw: bytes.Clone(raw), v: &v}
	d.mu.Unlock()
	return &v
}
