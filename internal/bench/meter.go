package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	abcitypes "github.com/cometbft/cometbft/abci/types"
)

// meter wraps an application to record, as the node commits them, which of
// the load's transactions each block carried and when. A transaction counts
// as committed when the application returns from Commit for its block: its
// effects are then durable and visible to queries. Both apps are wrapped
// alike, so whatever the wrapping costs, it costs both the same.
//
// CometBFT calls the application one call at a time (see node.Start), so
// the fields the ABCI methods touch need no lock of their own; what other
// goroutines read is atomic, or read only after done is closed.
type meter struct {
	abcitypes.Application
	load *Load
	// release is told how many of the load's transactions a block
	// committed, so submitters can send that many more; nil for none.
	release func(n int)

	sent        []atomic.Int64 // when each transaction was first submitted, UnixNano
	committedAt []int64        // when its block was committed, UnixNano; 0 if not (yet)

	// staged are the load's transactions in the block being executed.
	staged []stagedTx

	firstHeight, lastHeight int64 // blocks carrying the load's transactions
	txBlocks                int   // how many blocks carried any
	maxPerBlock             int
	lastCommit              int64 // UnixNano of the last Commit that carried any

	// trace, if set, gets a line per block: how long the app took to
	// execute and commit it, and the gap since the previous commit.
	trace          io.Writer
	finalizeStart  time.Time
	finalizeTook   time.Duration
	prevCommitDone time.Time

	settled  atomic.Int64 // transactions committed so far, whatever their code
	rejected int
	// firstRejection describes the first of the load's transactions a
	// block carried with a non-zero code; read it once done is closed, or
	// through firstRejected.
	rejectMu       sync.Mutex
	firstRejection string
	done           chan struct{} // closed once every transaction is committed

	// The load's setup transactions: how many the block being executed
	// carries, how many were committed so far, and the first a block
	// carried with a non-zero code.
	stagedSetup         int
	setupSettled        atomic.Int64
	firstSetupRejection string // under rejectMu

	// height is the last height the application committed; appHashes its
	// app hash after each height, so nodes can be compared at one height.
	height       atomic.Int64
	stagedHeight int64
	stagedHash   []byte
	hashMu       sync.Mutex
	appHashes    map[int64][]byte
}

type stagedTx struct {
	i    int32
	code uint32
}

func newMeter(app abcitypes.Application, l *Load, release func(int)) *meter {
	return &meter{
		Application: app,
		load:        l,
		release:     release,
		sent:        make([]atomic.Int64, l.Len()),
		committedAt: make([]int64, l.Len()),
		done:        make(chan struct{}),
		appHashes:   make(map[int64][]byte),
	}
}

// appHash is the application's app hash after height h, or nil if it
// hasn't committed h.
func (m *meter) appHash(h int64) []byte {
	m.hashMu.Lock()
	defer m.hashMu.Unlock()
	return m.appHashes[h]
}

// firstRejected describes the first of the load's transactions a block
// carried with a non-zero code, or is empty.
func (m *meter) firstRejected() string {
	m.rejectMu.Lock()
	defer m.rejectMu.Unlock()
	return m.firstRejection
}

// markSent records the first submission of transaction i.
func (m *meter) markSent(i int32, at time.Time) {
	m.sent[i].CompareAndSwap(0, at.UnixNano())
}

// FinalizeBlock notes which of the load's transactions the block carries,
// with their results.
func (m *meter) FinalizeBlock(ctx context.Context, req *abcitypes.RequestFinalizeBlock) (*abcitypes.ResponseFinalizeBlock, error) {
	m.finalizeStart = time.Now()
	res, err := m.Application.FinalizeBlock(ctx, req)
	m.finalizeTook = time.Since(m.finalizeStart)
	if err != nil {
		return res, err
	}
	m.stagedHeight, m.stagedHash = req.Height, res.AppHash
	m.staged = m.staged[:0]
	m.stagedSetup = 0
	for j, raw := range req.Txs {
		i, ok := m.load.index[string(raw)]
		if !ok {
			m.stageSetup(raw, req.Height, res.TxResults[j])
			continue
		}
		if m.committedAt[i] != 0 {
			continue
		}
		r := res.TxResults[j]
		m.staged = append(m.staged, stagedTx{i: i, code: r.Code})
		if r.Code != 0 {
			m.rejectMu.Lock()
			if m.firstRejection == "" {
				m.firstRejection = fmt.Sprintf("transaction %d (stream %d) at height %d, position %d of %d: code %d: %s",
					i, m.load.streamOf(int(i)), req.Height, j, len(req.Txs), r.Code, r.Log)
			}
			m.rejectMu.Unlock()
		}
	}
	if len(m.staged) > 0 {
		if m.firstHeight == 0 {
			m.firstHeight = req.Height
		}
		m.lastHeight = req.Height
	}
	return res, nil
}

// stageSetup counts raw if it is one of the load's setup transactions.
func (m *meter) stageSetup(raw []byte, height int64, r *abcitypes.ExecTxResult) {
	if _, ok := m.load.setupIndex[string(raw)]; !ok {
		return
	}
	m.stagedSetup++
	if r.Code != 0 {
		m.rejectMu.Lock()
		if m.firstSetupRejection == "" {
			m.firstSetupRejection = fmt.Sprintf("a setup transaction at height %d: code %d: %s", height, r.Code, r.Log)
		}
		m.rejectMu.Unlock()
	}
}

// firstSetupRejected describes the first setup transaction a block
// carried with a non-zero code, or is empty.
func (m *meter) firstSetupRejected() string {
	m.rejectMu.Lock()
	defer m.rejectMu.Unlock()
	return m.firstSetupRejection
}

// Commit stamps the staged transactions committed once the application
// has committed.
func (m *meter) Commit(ctx context.Context, req *abcitypes.RequestCommit) (*abcitypes.ResponseCommit, error) {
	commitStart := time.Now()
	res, err := m.Application.Commit(ctx, req)
	if m.trace != nil && err == nil {
		done := time.Now()
		if !m.prevCommitDone.IsZero() {
			fmt.Fprintf(m.trace, "block txs=%d since last commit %v: finalize %v, commit %v\n",
				len(m.staged), m.finalizeStart.Sub(m.prevCommitDone).Round(time.Millisecond),
				m.finalizeTook.Round(time.Millisecond), done.Sub(commitStart).Round(time.Millisecond))
		}
		m.prevCommitDone = done
	}
	if err != nil {
		return res, err
	}
	m.hashMu.Lock()
	m.appHashes[m.stagedHeight] = m.stagedHash
	m.hashMu.Unlock()
	m.height.Store(m.stagedHeight)
	if m.stagedSetup > 0 {
		m.setupSettled.Add(int64(m.stagedSetup))
		m.stagedSetup = 0
	}
	if len(m.staged) == 0 {
		return res, nil
	}
	now := time.Now().UnixNano()
	for _, s := range m.staged {
		m.committedAt[s.i] = now
		if s.code != 0 {
			m.rejected++
		}
	}
	m.txBlocks++
	m.maxPerBlock = max(m.maxPerBlock, len(m.staged))
	m.lastCommit = now
	if m.release != nil {
		m.release(len(m.staged))
	}
	if m.settled.Add(int64(len(m.staged))) == int64(m.load.Len()) {
		close(m.done)
	}
	m.staged = m.staged[:0]
	return res, nil
}
