package service

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/imi-city/imi/internal/consent"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// Submitter puts a transaction into the mempool (httpapi.Chain does).
type Submitter interface {
	Submit(ctx context.Context, raw []byte) (*abci.ResponseCheckTx, error)
}

// Desk is one node's service desk: it acts for the authorities whose keys the
// node holds, opening applications, answering back-office reads and
// recording every access on the ledger before any data leaves.
type Desk struct {
	app   *ledger.App
	chain Submitter
	store Store
	log   *slog.Logger
	now   func() time.Time
	keys  map[string]key.Private
	kems  map[string]*ecdh.PrivateKey

	mu        sync.Mutex
	recorders map[string]*recorder
	open      sync.Mutex      // guards busy and application state changes
	busy      map[string]bool // applications being submitted

	sweepMu sync.Mutex
	swept   time.Time // when expired applications were last cleared
}

// DeskConfig configures a Desk.
type DeskConfig struct {
	App   *ledger.App
	Chain Submitter
	Store Store
	// Keys are the authority keys this node holds, by authority id.
	Keys map[string]key.Private
	Log  *slog.Logger
	// Now is the clock for application deadlines (never for consent
	// expiry, which is block time); nil means time.Now.
	Now func() time.Time
}

// NewDesk makes a desk.
func NewDesk(c DeskConfig) (*Desk, error) {
	d := &Desk{app: c.App, chain: c.Chain, store: c.Store, log: c.Log, now: c.Now,
		keys: c.Keys, kems: map[string]*ecdh.PrivateKey{}, recorders: map[string]*recorder{}, busy: map[string]bool{}}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for id, k := range c.Keys {
		kem, err := consent.KEMKey(k.Seed())
		if err != nil {
			return nil, err
		}
		d.kems[id] = kem
	}
	return d, nil
}

// Holds reports whether this node acts for authority id.
func (d *Desk) Holds(id string) bool { _, ok := d.keys[id]; return ok }

// Public errors of the desk; each reaches the caller with its words.
var (
	ErrNotHere        = errors.New("this node does not act for that authority")
	ErrNoApplication  = errors.New("no such application, or it has expired")
	ErrClosed         = errors.New("the application was already submitted or declined")
	ErrRejected       = errors.New("the application was refused")
	ErrNotAvailable   = errors.New("the authority holds no record of that item for this resident")
	ErrLedgerBusy     = errors.New("the ledger did not confirm the access record in time; nothing was released, retry")
	errRecordRejected = errors.New("the ledger refused the access record")
)

// Denied is a refused access: the reason code, in words, and the record that
// now stands in the resident's log.
type Denied struct {
	Reason string
	Record *ledger.Access
}

func (e *Denied) Error() string {
	en, _ := ledger.DenyReasonText(e.Reason)
	return "access denied: " + en
}

// recordOne records r as authority signer and returns the record as the
// ledger stored it, after its block committed.
func (d *Desk) recordOne(ctx context.Context, signer string, r tx.AccessRecord) (*ledger.Access, error) {
	d.mu.Lock()
	rec, ok := d.recorders[signer]
	if !ok {
		rec = newRecorder(d, signer)
		d.recorders[signer] = rec
	}
	d.mu.Unlock()
	return rec.record(ctx, r)
}

func newRecordID() tx.Bytes {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return b
}

// openSubject opens the box a grant sealed to authority and checks the
// resident's (and guardian's) signature and delegation on the ledger.
func (d *Desk) openSubject(authority, subject, service string, boxes []tx.SealedSubject, byGuardian bool) (*consent.Subject, string) {
	kem := d.kems[authority]
	ctx := consent.Context{ChainID: d.app.ChainID(), Pseudonym: subject, Service: service, Authority: authority}
	for _, b := range boxes {
		if b.Authority != authority {
			continue
		}
		s, err := consent.Open(kem, ctx, b.Box)
		if err != nil {
			return nil, ledger.DenySubjectUnknown
		}
		res, _, err := d.app.ResidentRecord(s.DID, 0)
		if err != nil || res.Deactivated {
			return nil, ledger.DenySubjectUnknown
		}
		var gk key.Public
		if s.Guardian != "" {
			g, _, err := d.app.ResidentRecord(s.Guardian, 0)
			if err != nil || g.Deactivated {
				return nil, ledger.DenyNotGuardian
			}
			gk = g.Key
		}
		if err := s.Check(ctx, res.Key, gk); err != nil {
			return nil, ledger.DenySubjectUnknown
		}
		if why := d.checkGuardian(s, service, byGuardian); why != "" {
			return nil, why
		}
		return s, ""
	}
	return nil, ledger.DenySubjectUnknown
}

// checkGuardian applies the delegations on the ledger: a ward who may not
// consent alone needs a guardian, and a guardian must hold a delegation in
// force that covers the service. The ledger cannot check this itself: it
// sees only pseudonyms, and only the authority that opens the box learns the
// DID.
func (d *Desk) checkGuardian(s *consent.Subject, service string, byGuardian bool) string {
	if (s.Guardian != "") != byGuardian {
		return ledger.DenyNotGuardian
	}
	dels, _, err := d.app.Delegations(s.DID, 0)
	if err != nil {
		return ledger.DenyNotGuardian
	}
	now := d.app.LastBlock().Time
	needGuardian, guardianOK := false, false
	for i := range dels {
		dl := &dels[i]
		if !dl.ActiveAt(now) {
			continue
		}
		if dl.GuardianConsent {
			needGuardian = true
		}
		if s.Guardian != "" && dl.Guardian == s.Guardian && dl.Covers(service) {
			guardianOK = true
		}
	}
	switch {
	case s.Guardian != "" && !guardianOK:
		return ledger.DenyNotGuardian
	case needGuardian && s.Guardian == "":
		return ledger.DenyNotGuardian
	}
	return ""
}

// authorityDID returns the DID of authority id.
func (d *Desk) authorityDID(id string) (string, error) {
	a, _, err := d.app.Authority(id, 0)
	if err != nil {
		return "", fmt.Errorf("no authority %q", id)
	}
	return a.DID, nil
}
