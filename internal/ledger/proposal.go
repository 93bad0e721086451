package ledger

import (
	"bytes"
	"context"
	"strconv"

	abci "github.com/cometbft/cometbft/abci/types"
)

// PrepareProposal puts each signer's lane in sequence order.
//
// CometBFT v0.38's mempool can list a lane's transaction n+1 before n: it
// adds a transaction to its list only after the application accepted it and
// released its lock, and with several peers gossiping the same lane two
// acceptances can land in the other order; a transaction the application
// accepted can also be dropped when the mempool is full, after the check
// view counted it. A block with n+1 before n refuses n+1 and every later
// transaction of the lane. So a transaction whose predecessor is not yet in
// the block waits for it, and is left out if it never comes: it stays in the
// mempool or is refused there, and the client sends it again. The order of
// everything else is kept, so dependencies between signers (a registration
// before the resident's first key rotation) hold as the mempool had them.
//
// This runs on the proposer only; other validators accept any order
// (ProcessProposal) and FinalizeBlock judges each transaction, so nothing
// here needs to be deterministic.
func (a *App) PrepareProposal(_ context.Context, req *abci.RequestPrepareProposal) (*abci.ResponsePrepareProposal, error) {
	next := map[laneKey]uint64{}
	held := map[laneKey]map[uint64][]byte{}
	out := make([][]byte, 0, len(req.Txs))
	var size int64
	emit := func(raw []byte) bool {
		if size+int64(len(raw)) > req.MaxTxBytes {
			return false
		}
		size += int64(len(raw))
		out = append(out, raw)
		return true
	}
	for _, raw := range req.Txs {
		k, seq, ok := peekLane(raw)
		if !ok {
			if !emit(raw) { // FinalizeBlock will refuse it and say why
				break
			}
			continue
		}
		want, seen := next[k]
		if !seen {
			want = a.committedSeq(k)
		}
		switch {
		case seq < want:
			continue // a replay; FinalizeBlock would only refuse it
		case seq > want:
			if held[k] == nil {
				held[k] = map[uint64][]byte{}
			}
			if _, dup := held[k][seq]; !dup {
				held[k][seq] = raw
			}
			next[k] = want
			continue
		}
		if !emit(raw) {
			break
		}
		want++
		for h := held[k]; h != nil; want++ {
			r, ok := h[want]
			if !ok || !emit(r) {
				break
			}
			delete(h, want)
		}
		next[k] = want
	}
	return &abci.ResponsePrepareProposal{Txs: out}, nil
}

type laneKey struct {
	signer string
	lane   uint32
}

// peekLane reads signer, lane and seq from a transaction's canonical
// envelope, {"v":1,"chain_id":…,"signer":…,"lane":…,"seq":…, without decoding
// it: a proposal of ten thousand transactions must be ready in milliseconds.
// Anything else is reported as not ok and left where it is.
func peekLane(raw []byte) (laneKey, uint64, bool) {
	var k laneKey
	i := bytes.Index(raw, []byte(`","signer":"`))
	if !bytes.HasPrefix(raw, []byte(`{"v":1,"chain_id":"`)) || i < 0 {
		return k, 0, false
	}
	rest := raw[i+len(`","signer":"`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return k, 0, false
	}
	k.signer = string(rest[:j])
	rest = rest[j:]
	lane, rest, ok := number(rest, `","lane":`)
	if !ok || lane >= 1<<32 {
		return k, 0, false
	}
	k.lane = uint32(lane)
	seq, _, ok := number(rest, `,"seq":`)
	return k, seq, ok
}

// number reads the unsigned integer after prefix at the start of b.
func number(b []byte, prefix string) (uint64, []byte, bool) {
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return 0, nil, false
	}
	b = b[len(prefix):]
	n := 0
	for n < len(b) && n < 20 && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	v, err := strconv.ParseUint(string(b[:n]), 10, 64)
	return v, b[n:], err == nil
}

// committedSeq is the lane's next sequence number in the last committed
// state, which the block builds on; NextSeq answers for the mempool's view,
// which already counts the transactions being proposed.
func (a *App) committedSeq(k laneKey) uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return decodeSeq(treeKV{a.latest}.get(seqKey(k.signer, k.lane)))
}
