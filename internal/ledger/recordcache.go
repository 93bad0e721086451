package ledger

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/imi-city/imi/internal/tx"
)

// decoded keeps the decoded form of records that are read far more often
// than they change (services, credential types), keyed by state key and
// checked against the exact stored bytes, so a hit is the same value a fresh
// decode would give: the cache changes speed, never results. Values it
// returns are shared and must not be modified.
type decoded[T any] struct {
	mu sync.RWMutex
	m  map[string]decodedEntry[T]
}

type decodedEntry[T any] struct {
	raw []byte
	v   *T
}

// maxDecoded bounds each cache; past it, entries are replaced at random by
// map order, which affects only speed.
const maxDecoded = 4096

var (
	services  = &decoded[Service]{}
	credTypes = &decoded[CredentialType]{}
)

func (d *decoded[T]) get(st kv, k string) *T {
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
		d.m = map[string]decodedEntry[T]{}
	}
	if len(d.m) >= maxDecoded {
		for old := range d.m {
			delete(d.m, old)
			break
		}
	}
	d.m[k] = decodedEntry[T]{raw: bytes.Clone(raw), v: &v}
	d.mu.Unlock()
	return &v
}
