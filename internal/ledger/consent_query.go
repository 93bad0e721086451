package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/imi-city/imi/internal/tx"
)

// ErrNoBlockTime is returned by CheckAccess before this node has seen a block
// since it started: without the last block's time it cannot judge expiry, and
// it will not guess.
var ErrNoBlockTime = errors.New("this node has not seen a block since it started; retry shortly")

// Services lists the published services as of height h.
func (a *App) Services(h int64) ([]Service, int64, error) {
	return listAt[Service](a, pService, h)
}

// Service returns one service.
func (a *App) Service(id string, h int64) (*Service, int64, error) {
	return recordAt[Service](a, pService+id, h)
}

// Consent returns subject's latest consent to service.
func (a *App) Consent(subject, service string, h int64) (*Consent, int64, error) {
	return recordAt[Consent](a, consentKey(subject, service), h)
}

// ConsentBoxes returns the sealed subjects of subject's latest grant to service.
func (a *App) ConsentBoxes(subject, service string, h int64) ([]tx.SealedSubject, int64, error) {
	p, h2, err := recordAt[[]tx.SealedSubject](a, pConsentBox+subject+"/"+service, h)
	if err != nil {
		return nil, h2, err
	}
	return *p, h2, nil
}

// Consents lists subject's consents, one per service.
func (a *App) Consents(subject string, h int64) ([]Consent, int64, error) {
	return listAt[Consent](a, pConsent+subject+"/", h)
}

// AccessLog lists every access record of subject.
func (a *App) AccessLog(subject string, h int64) ([]Access, int64, error) {
	return listAt[Access](a, pAccess+subject+"/", h)
}

// AccessRecord returns one access record.
func (a *App) AccessRecord(subject string, id []byte, h int64) (*Access, int64, error) {
	return recordAt[Access](a, accessKey(subject, id), h)
}

// ProveAccess proves one access record (or its absence) at height h.
func (a *App) ProveAccess(subject string, id []byte, h int64) (*Proof, error) {
	return a.Prove([]byte(accessKey(subject, id)), h)
}

// AccessFromProof decodes the access record a verified proof carries.
func AccessFromProof(p *Proof) (*Access, error) {
	if !bytes.HasPrefix(p.Key, []byte(pAccess)) || p.Value == nil {
		return nil, ErrNotFound
	}
	var r Access
	if err := tx.Unmarshal(p.Value, &r); err != nil {
		return nil, err
	}
	if accessKey(r.Subject, r.ID) != string(p.Key) {
		return nil, fmt.Errorf("%w: the record is not the one under its key", ErrBadProof)
	}
	return &r, nil
}

// AuthorityAccess lists the access records in which authority is the reader
// or the source, from height from on, at most limit of them. Use
// AuthorityAccessAfter with the cursor it returns for the next page.
func (a *App) AuthorityAccess(authority string, from int64, limit int, h int64) ([]Access, int64, error) {
	out, _, height, err := a.authorityAccess(authority, fmt.Sprintf("%016x/", max(from, 0)), limit, h)
	return out, height, err
}

// AuthorityAccessAfter lists the records after cursor, a value a previous
// page returned, and the cursor of its own last record ("" if the page is
// not full). Pages never skip or repeat records, however many one block has.
func (a *App) AuthorityAccessAfter(authority, cursor string, limit int, h int64) ([]Access, string, int64, error) {
	// The smallest key after cursor: cursor followed by a zero byte.
	return a.authorityAccess(authority, cursor+"\x00", limit, h)
}

func (a *App) authorityAccess(authority, start string, limit int, h int64) ([]Access, string, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, "", 0, err
	}
	p := []byte(pAccessBy + authority + "/")
	it, err := v.t.Iterator(append(bytes.Clone(p), start...), append(bytes.Clone(p), 0xff), true)
	if err != nil {
		return nil, "", 0, err
	}
	defer it.Close()
	var out []Access
	next := ""
	st := treeKV{v.t}
	for ; it.Valid() && len(out) < limit; it.Next() {
		suffix := it.Key()[len(p):]
		if len(suffix) < 17 {
			return nil, "", 0, fmt.Errorf("bad access index %q", it.Key())
		}
		rest := suffix[17:] // height and its slash
		i := bytes.IndexByte(rest, '/')
		if i < 0 {
			return nil, "", 0, fmt.Errorf("bad access index %q", it.Key())
		}
		r := getRecord[Access](st, pAccess+string(rest[:i])+"/"+string(rest[i+1:]))
		if r == nil {
			return nil, "", 0, fmt.Errorf("access index %q points nowhere", it.Key())
		}
		out = append(out, *r)
		next = string(suffix)
	}
	if len(out) < limit {
		next = ""
	}
	return out, next, v.height, it.Error()
}

// Decision is the answer to "may this access happen now?".
type Decision struct {
	Allowed bool      `json:"allowed"`
	Reason  string    `json:"reason,omitempty"`
	Consent *Consent  `json:"consent,omitempty"`
	Height  int64     `json:"height"`
	Time    time.Time `json:"time"`
}

// CheckAccess judges r against the consent state of the latest committed
// block and that block's time, by the same rule the ledger applies when the
// access record's block runs.
func (a *App) CheckAccess(r *tx.AccessRecord) (*Decision, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(0)
	if err != nil {
		return nil, err
	}
	if a.lastBlock.Height != v.height || a.lastBlock.Time.IsZero() {
		return nil, ErrNoBlockTime
	}
	st := treeKV{v.t}
	if err := checkRequest(st, r); err != nil {
		return &Decision{Reason: DenyBadRequest, Height: v.height, Time: a.lastBlock.Time}, nil
	}
	c := getRecord[Consent](st, consentKey(r.Subject, r.Service))
	s := services.get(st, pService+r.Service)
	why := decideIn(st, c, s, r, a.lastBlock.Time)
	return &Decision{Allowed: why == "", Reason: why, Consent: c, Height: v.height, Time: a.lastBlock.Time}, nil
}

// Delegations lists the delegations recorded for ward.
func (a *App) Delegations(ward string, h int64) ([]Delegation, int64, error) {
	return listAt[Delegation](a, pDelegation+ward+"/", h)
}

// GuardianOf lists the delegations in which guardian acts for someone.
func (a *App) GuardianOf(guardian string, h int64) ([]Delegation, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, 0, err
	}
	p := []byte(pGuardianOf + guardian + "/")
	var out []Delegation
	st := treeKV{v.t}
	err = v.scan(p, func(k, _ []byte) error {
		d := getRecord[Delegation](st, pDelegation+string(k[len(p):]))
		if d == nil {
			return fmt.Errorf("delegation index %q points nowhere", k)
		}
		out = append(out, *d)
		return nil
	})
	return out, v.height, err
}

// listAt decodes every record under prefix p as of height h.
func listAt[T any](a *App, p string, h int64) ([]T, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, 0, err
	}
	var out []T
	err = v.scan([]byte(p), func(k, val []byte) error {
		var r T
		if err := tx.Unmarshal(val, &r); err != nil {
			return fmt.Errorf("corrupt record %q: %w", k, err)
		}
		out = append(out, r)
		return nil
	})
	return out, v.height, err
}
