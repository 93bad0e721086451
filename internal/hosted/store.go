package hosted

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/imi-city/imi/internal/service"
)

// Store holds hosted-wallet accounts and their inboxes. Wallets is its only
// consumer. The contract is small so that a deployment that outgrows the
// embedded store can implement it with PostgreSQL (one row per account with
// unique Lookup and DID columns, one row per inbox item, and a version
// check in the UPDATE's WHERE clause).
//
// Every method is safe for concurrent use. Accounts returned are the
// caller's to change; changing one changes nothing stored until Update.
type Store interface {
	// Account returns the account with id, or ErrNoAccount.
	Account(id string) (*Account, error)
	// ByLookup returns the account whose Lookup is lookup, or ErrNoAccount.
	ByLookup(lookup []byte) (*Account, error)
	// ByDID returns the account whose DID is did, or ErrNoAccount.
	ByDID(did string) (*Account, error)

	// Create stores a new account and sets a.Version to 1. It returns
	// ErrExists if an account with the same Lookup or DID is stored.
	Create(a *Account) error
	// Update stores a if the stored account with a.ID still has version
	// a.Version, and then increments a.Version. It returns ErrConflict if
	// the version moved and ErrNoAccount if the account is gone. ID,
	// Lookup and DID never change.
	Update(a *Account) error
	// Replace removes old, with its inbox, and stores next in its place
	// with Version 1, as one step for concurrent callers: none finds both
	// or neither by the lookup. It
	// returns ErrConflict if old is no longer stored at old.Version, and
	// ErrExists if next's DID belongs to a third account. next has
	// old's Lookup and a new ID.
	Replace(old, next *Account) error
	// Remove deletes a, its indexes and its inbox, lookup index first so
	// no sign-in finds it part way. ErrConflict if a is no longer stored
	// at a.Version.
	Remove(a *Account) error

	// AddItem appends it to the inbox of the account with id, or returns
	// ErrNoAccount.
	AddItem(id string, it Item) error
	// Items returns the inbox of the account with id in Item.ID order.
	Items(id string) ([]Item, error)
	// DeleteItems removes the items with ids from the account's inbox;
	// ids that are not there are ignored.
	DeleteItems(id string, ids []string) error
}

// Item is one sealed inbox item.
type Item struct {
	ID        string    `json:"id"` // sorts in delivery order
	Sealed    []byte    `json:"sealed"`
	Delivered time.Time `json:"delivered"`
}

// Keys in the off-chain store. Only hw/ holds an account; the others are
// indexes, checked against the account they name, so a stale index left by
// a crash between two writes reads as "no account".
const (
	accountPrefix = "hw/"    // hw/<id> → Account
	lookupPrefix  = "hwlk/"  // hwlk/<hex lookup> → id
	didPrefix     = "hwdid/" // hwdid/<did> → id
	inboxPrefix   = "hwin/"  // hwin/<id>/<item id> → Item
)

// kvStore is the default Store over the node's off-chain store.
// service.Store has no transactions, so mu makes each method one step
// within the process (goleveldb admits one process); writes are ordered so
// that a crash part way leaves either the old state or unreachable
// garbage: the account record first, the lookup index (which sign-in goes
// through) last.
type kvStore struct {
	mu sync.Mutex
	kv service.Store
}

// NewStore returns the default Store, which keeps accounts in kv under the
// prefixes hw/, hwlk/, hwdid/ and hwin/. Make one per kv and share it: two
// over the same kv would not see each other's locks.
func NewStore(kv service.Store) Store { return &kvStore{kv: kv} }

func (s *kvStore) Account(id string) (*Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.account(id)
}

func (s *kvStore) ByLookup(lookup []byte) (*Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byLookup(lookup)
}

func (s *kvStore) ByDID(did string) (*Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byDID(did)
}

func (s *kvStore) Create(a *Account) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.free(a.Lookup, a.DID, ""); err != nil {
		return err
	}
	b := *a
	b.Version = 1
	if err := s.putAccount(&b); err != nil {
		return err
	}
	a.Version = b.Version
	return nil
}

func (s *kvStore) Update(a *Account) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.account(a.ID)
	if err != nil {
		return err
	}
	if cur.Version != a.Version {
		return ErrConflict
	}
	if !bytes.Equal(cur.Lookup, a.Lookup) || cur.DID != a.DID {
		return errors.New("couldn't update hosted wallet: lookup and DID cannot change")
	}
	b := *a
	b.Version++
	if err := s.put(accountPrefix+b.ID, &b); err != nil {
		return fmt.Errorf("couldn't update hosted wallet: %w", err)
	}
	a.Version = b.Version
	return nil
}

func (s *kvStore) Replace(old, next *Account) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.account(old.ID)
	if errors.Is(err, ErrNoAccount) {
		return ErrConflict
	}
	if err != nil {
		return err
	}
	if cur.Version != old.Version {
		return ErrConflict
	}
	if !bytes.Equal(next.Lookup, cur.Lookup) || next.ID == cur.ID {
		return errors.New("couldn't replace hosted wallet: the new account must have the old lookup and a new id")
	}
	if err := s.free(nil, next.DID, cur.ID); err != nil {
		return err
	}
	b := *next
	b.Version = 1
	// putAccount writes the lookup index last: that one write switches
	// sign-in to the new account. What follows removes what nothing
	// reaches any more.
	if err := s.putAccount(&b); err != nil {
		return err
	}
	next.Version = b.Version
	if cur.DID != next.DID {
		if err := s.kv.Delete(didPrefix + cur.DID); err != nil {
			return fmt.Errorf("couldn't remove old hosted wallet: %w", err)
		}
	}
	if err := s.kv.Delete(accountPrefix + cur.ID); err != nil {
		return fmt.Errorf("couldn't remove old hosted wallet: %w", err)
	}
	items, err := s.items(cur.ID)
	if err != nil {
		return fmt.Errorf("couldn't remove old hosted wallet: %w", err)
	}
	for _, it := range items {
		if err := s.kv.Delete(itemKey(cur.ID, it.ID)); err != nil {
			return fmt.Errorf("couldn't remove old hosted wallet: %w", err)
		}
	}
	return nil
}

func (s *kvStore) Remove(a *Account) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.account(a.ID)
	if errors.Is(err, ErrNoAccount) {
		return ErrConflict
	}
	if err != nil {
		return err
	}
	if cur.Version != a.Version {
		return ErrConflict
	}
	items, err := s.items(cur.ID)
	if err != nil {
		return err
	}
	keys := []string{lookupPrefix + hex.EncodeToString(cur.Lookup), didPrefix + cur.DID, accountPrefix + cur.ID}
	for _, it := range items {
		keys = append(keys, itemKey(cur.ID, it.ID))
	}
	for _, k := range keys {
		if err := s.kv.Delete(k); err != nil {
			return fmt.Errorf("couldn't remove hosted wallet: %w", err)
		}
	}
	return nil
}

func (s *kvStore) AddItem(id string, it Item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.account(id); err != nil {
		return err
	}
	if !validItemID(it.ID) {
		return errors.New("couldn't deliver to hosted wallet: malformed item id")
	}
	if err := s.put(itemKey(id, it.ID), &it); err != nil {
		return fmt.Errorf("couldn't deliver to hosted wallet: %w", err)
	}
	return nil
}

func (s *kvStore) Items(id string) ([]Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !validID(id) {
		return nil, ErrNoAccount
	}
	return s.items(id)
}

func (s *kvStore) DeleteItems(id string, ids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !validID(id) {
		return ErrNoAccount
	}
	for _, it := range ids {
		if !validItemID(it) {
			continue
		}
		if err := s.kv.Delete(itemKey(id, it)); err != nil {
			return fmt.Errorf("couldn't clear hosted-wallet inbox: %w", err)
		}
	}
	return nil
}

// free returns ErrExists if lookup (when non-nil) or did is taken by an
// account other than except.
func (s *kvStore) free(lookup []byte, did, except string) error {
	if lookup != nil {
		switch a, err := s.byLookup(lookup); {
		case err == nil && a.ID != except:
			return ErrExists
		case err != nil && !errors.Is(err, ErrNoAccount):
			return err
		}
	}
	switch a, err := s.byDID(did); {
	case err == nil && a.ID != except:
		return ErrExists
	case err != nil && !errors.Is(err, ErrNoAccount):
		return err
	}
	return nil
}

// putAccount writes a new account and then its indexes, lookup last.
func (s *kvStore) putAccount(a *Account) error {
	if !validID(a.ID) || len(a.Lookup) == 0 || a.DID == "" {
		return errors.New("couldn't store hosted wallet: id, lookup and DID are required")
	}
	if err := s.put(accountPrefix+a.ID, a); err != nil {
		return fmt.Errorf("couldn't store hosted wallet: %w", err)
	}
	if err := s.put(didPrefix+a.DID, a.ID); err != nil {
		return fmt.Errorf("couldn't store hosted wallet: %w", err)
	}
	if err := s.put(lookupPrefix+hex.EncodeToString(a.Lookup), a.ID); err != nil {
		return fmt.Errorf("couldn't store hosted wallet: %w", err)
	}
	return nil
}

func (s *kvStore) account(id string) (*Account, error) {
	if !validID(id) {
		return nil, ErrNoAccount
	}
	var a Account
	if err := s.get(accountPrefix+id, &a); err != nil {
		return nil, err
	}
	if a.ID != id {
		return nil, fmt.Errorf("hosted wallet record %s names account %s", id, a.ID)
	}
	return &a, nil
}

func (s *kvStore) byLookup(lookup []byte) (*Account, error) {
	var id string
	if err := s.get(lookupPrefix+hex.EncodeToString(lookup), &id); err != nil {
		return nil, err
	}
	a, err := s.account(id)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(a.Lookup, lookup) {
		return nil, ErrNoAccount
	}
	return a, nil
}

func (s *kvStore) byDID(did string) (*Account, error) {
	if did == "" {
		return nil, ErrNoAccount
	}
	var id string
	if err := s.get(didPrefix+did, &id); err != nil {
		return nil, err
	}
	a, err := s.account(id)
	if err != nil {
		return nil, err
	}
	if a.DID != did {
		return nil, ErrNoAccount
	}
	return a, nil
}

func (s *kvStore) items(id string) ([]Item, error) {
	vs, err := s.kv.List(inboxPrefix + id + "/")
	if err != nil {
		return nil, err
	}
	out := make([]Item, 0, len(vs))
	for _, v := range vs {
		var it Item
		if err := decodeStrict(v, &it); err != nil {
			return nil, fmt.Errorf("hosted-wallet inbox item: %w", err)
		}
		out = append(out, it)
	}
	return out, nil
}

// get decodes the record at k; a missing record is ErrNoAccount, since
// every record here hangs off an account.
func (s *kvStore) get(k string, v any) error {
	b, err := s.kv.Get(k)
	if errors.Is(err, service.ErrNoRecord) {
		return ErrNoAccount
	}
	if err != nil {
		return fmt.Errorf("couldn't read hosted wallet: %w", err)
	}
	if err := decodeStrict(b, v); err != nil {
		return fmt.Errorf("hosted wallet record %s: %w", k, err)
	}
	return nil
}

func (s *kvStore) put(k string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.kv.Put(k, b)
}

func itemKey(id, item string) string { return inboxPrefix + id + "/" + item }

// decodeStrict refuses unknown fields and trailing data: a record written
// by a newer version is an error here, not silently truncated on re-save.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after record")
	}
	return nil
}

// validID reports whether id has the form newID makes, so an id can never
// reach across prefixes in the store.
func validID(id string) bool {
	if len(id) != 2*idSize {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isLowerHex(id[i]) {
			return false
		}
	}
	return true
}

func validItemID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isLowerHex(c) && c != '-' && c != '.' && c != 'T' {
			return false
		}
	}
	return true
}

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
