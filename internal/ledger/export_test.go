package ledger

import "testing"

// EachCommitted calls fn with every key and value of the latest committed
// state, in key order. Tests use it to look at all of the state at once.
func (a *App) EachCommitted(t testing.TB, fn func(k, v []byte)) {
	t.Helper()
	// Held for the whole walk: iavl's node database must not be read while
	// Commit writes it.
	a.mu.RLock()
	defer a.mu.RUnlock()
	if _, err := a.latest.Iterate(func(k, v []byte) bool { fn(k, v); return false }); err != nil {
		t.Fatalf("couldn't iterate the state: %v", err)
	}
}
