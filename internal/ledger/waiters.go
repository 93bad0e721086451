package ledger

import (
	"context"
	"sync"
)

// waiters lets the API return only once a transaction is committed: a caller
// registers the hash before submitting and is told after Commit persisted it.
type waiters struct {
	mu sync.Mutex
	m  map[[32]byte][]chan TxResult
}

// watch registers interest in hash. Call the returned cancel when done.
func (w *waiters) watch(hash [32]byte) (<-chan TxResult, func()) {
	ch := make(chan TxResult, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = map[[32]byte][]chan TxResult{}
	}
	w.m[hash] = append(w.m[hash], ch)
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		list := w.m[hash]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(w.m, hash)
		} else {
			w.m[hash] = list
		}
	}
}

func (w *waiters) notify(txs []committedTx) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range txs {
		for _, ch := range w.m[t.hash] {
			select {
			case ch <- t.res:
			default: // already told of an earlier inclusion
			}
		}
	}
}

// Watch registers interest in the transaction with hash; call it before
// submitting, so the commit cannot be missed. wait returns once the
// transaction is in a committed block, or when ctx ends; cancel unregisters.
func (a *App) Watch(hash [32]byte) (wait func(ctx context.Context) (TxResult, error), cancel func()) {
	ch, cancel := a.waiters.watch(hash)
	return func(ctx context.Context) (TxResult, error) {
		select {
		case r := <-ch:
			return r, nil
		case <-ctx.Done():
			return TxResult{}, ctx.Err()
		}
	}, cancel
}
