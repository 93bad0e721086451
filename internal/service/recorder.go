package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// DeskLane is the sequence lane a node's desk signs on, apart from the lanes
// the authority's staff use from the command line.
const DeskLane = tx.MaxLanes - 1

// recordWait bounds how long a caller waits for its access record's block.
const recordWait = 20 * time.Second

type pending struct {
	r    tx.AccessRecord
	done chan result
}

type result struct {
	a   *ledger.Access
	err error
}

// recorder batches one authority's access records into record_access
// transactions: under load many records share one signature and one
// transaction, which is how a node keeps up with a city's reads.
type recorder struct {
	d      *Desk
	signer string
	in     chan pending
}

func newRecorder(d *Desk, signer string) *recorder {
	r := &recorder{d: d, signer: signer, in: make(chan pending, 4*ledger.MaxAccessBatch)}
	go r.loop()
	return r
}

func (r *recorder) record(ctx context.Context, a tx.AccessRecord) (*ledger.Access, error) {
	p := pending{r: a, done: make(chan result, 1)}
	select {
	case r.in <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-p.done:
		return res.a, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *recorder) loop() {
	for first := range r.in {
		batch := []pending{first}
	fill:
		for len(batch) < ledger.MaxAccessBatch {
			select {
			case p := <-r.in:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		r.flush(batch)
	}
}

func (r *recorder) flush(batch []pending) {
	ctx, cancel := context.WithTimeout(context.Background(), recordWait)
	defer cancel()
	body := &tx.RecordAccess{}
	for _, p := range batch {
		body.Records = append(body.Records, p.r)
	}
	err := r.submit(ctx, body)
	for _, p := range batch {
		if err != nil {
			p.done <- result{err: err}
			continue
		}
		a, _, gerr := r.d.app.AccessRecord(p.r.Subject, p.r.ID, 0)
		if gerr != nil {
			gerr = fmt.Errorf("%w: %v", ErrLedgerBusy, gerr)
		}
		p.done <- result{a: a, err: gerr}
	}
}

// submit signs body on the desk lane, submits it and waits for its block. A
// sequence clash (another desk of the same authority, or a restart) is
// retried with the number the ledger expects.
func (r *recorder) submit(ctx context.Context, body tx.Body) error {
	k := r.d.keys[r.signer]
	did, err := r.d.authorityDID(r.signer)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 5; attempt++ {
		t, err := tx.New(r.d.app.ChainID(), did, DeskLane, r.d.app.NextSeq(did, DeskLane), body)
		if err != nil {
			return err
		}
		t.Sign(k)
		raw := t.Encode()
		wait, cancel := r.d.app.Watch(tx.Hash(raw))
		res, err := r.d.chain.Submit(ctx, raw)
		if err != nil {
			cancel()
			return fmt.Errorf("%w: %v", ErrLedgerBusy, err)
		}
		if res.Code != 0 {
			cancel()
			c := ledger.Code(res.Code)
			if c == ledger.CodeBadSequence || c == ledger.CodeSequenceAhead {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("%w: %s: %s", errRecordRejected, c.Name(), res.Log)
		}
		tr, err := wait(ctx)
		cancel()
		if err != nil {
			return ErrLedgerBusy
		}
		if tr.Code != ledger.OK {
			return fmt.Errorf("%w: %s: %s", errRecordRejected, tr.Code.Name(), tr.Log)
		}
		return nil
	}
	return errors.Join(ErrLedgerBusy, errors.New("sequence kept clashing"))
}
