package hosted

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/imi-city/imi/internal/wallet"
)

const (
	// InboxKeyField is where wallet contents keep the inbox private key.
	InboxKeyField = "hosted_inbox_key"

	inboxLabel = "imi/v1/hosted-inbox"

	// MaxItem bounds one inbox item: an SD-JWT credential is a few
	// kilobytes.
	MaxItem = 256 << 10
	// MaxItems bounds the items waiting in one inbox, so a resident who
	// never signs in does not make the node's store grow without end.
	MaxItems = 64
)

// ErrInboxFull is returned by Deliver when MaxItems wait uncollected.
var ErrInboxFull = errors.New("hosted-wallet inbox is full")

// The one HPKE suite, as in package consent: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, ChaCha20Poly1305. No negotiation, so nothing to downgrade.
var (
	suiteKEM  = hpke.DHKEM(ecdh.X25519())
	suiteKDF  = hpke.HKDFSHA256()
	suiteAEAD = hpke.ChaCha20Poly1305()
)

// inboxInfo binds an item to the account it was delivered to.
func inboxInfo(accountID string) []byte { return []byte(inboxLabel + "\x00" + accountID) }

// newInboxKey puts a new inbox private key into c and returns the public
// key.
func newInboxKey(c *wallet.Contents) ([]byte, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("couldn't generate inbox key: %w", err)
	}
	raw, err := json.Marshal(k.Bytes())
	if err != nil {
		return nil, err
	}
	if c.Extra == nil {
		c.Extra = map[string]json.RawMessage{}
	}
	c.Extra[InboxKeyField] = raw
	return k.PublicKey().Bytes(), nil
}

func inboxKey(c *wallet.Contents) (*ecdh.PrivateKey, error) {
	raw, ok := c.Extra[InboxKeyField]
	if !ok {
		return nil, errors.New("wallet has no inbox key")
	}
	var b []byte
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, errors.New("wallet's inbox key is damaged")
	}
	defer clear(b)
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return nil, errors.New("wallet's inbox key is damaged")
	}
	return k, nil
}

// checkInboxKey makes sure c holds the private half of a's inbox key.
func checkInboxKey(a *Account, c *wallet.Contents) error {
	k, err := inboxKey(c)
	if err != nil {
		return err
	}
	if !bytes.Equal(k.PublicKey().Bytes(), a.InboxKey) {
		return errors.New("wallet's inbox key is not the account's")
	}
	return nil
}

// Deliver seals item (at most MaxItem bytes, typically an issued credential)
// to the inbox of did's hosted wallet. ErrNoAccount if did has none (the
// resident uses another wallet); ErrInboxFull if MaxItems wait.
func (w *Wallets) Deliver(did string, item []byte) error {
	if err := w.check(nil); err != nil {
		return err
	}
	if len(item) > MaxItem {
		return fmt.Errorf("couldn't deliver to hosted wallet: item is %d bytes, at most %d", len(item), MaxItem)
	}
	a, err := w.Store.ByDID(did)
	if err != nil {
		return err
	}
	waiting, err := w.Store.Items(a.ID)
	if err != nil {
		return err
	}
	if len(waiting) >= MaxItems {
		return ErrInboxFull
	}
	pk, err := suiteKEM.NewPublicKey(a.InboxKey)
	if err != nil {
		return fmt.Errorf("couldn't deliver to hosted wallet: inbox key: %w", err)
	}
	sealed, err := hpke.Seal(pk, suiteKDF, suiteAEAD, inboxInfo(a.ID), item)
	if err != nil {
		return fmt.Errorf("couldn't deliver to hosted wallet: %w", err)
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return fmt.Errorf("couldn't deliver to hosted wallet: %w", err)
	}
	now := w.now().UTC()
	// The time first, so that the store's key order is delivery order.
	id := now.Format("20060102T150405.000000000") + "-" + hex.EncodeToString(r[:])
	return w.Store.AddItem(a.ID, Item{ID: id, Sealed: sealed, Delivered: now})
}

// Collect opens a's inbox with the inbox key in c, a's contents, and
// returns the items in delivery order. Nothing is removed until the caller
// has put the items into c, saved it, and called done. Items that do not
// open (changed in the store, or sealed to another key) are never returned;
// done removes them too, since nobody can ever open them.
func (w *Wallets) Collect(a *Account, c *wallet.Contents) (items [][]byte, done func() error, err error) {
	if err := w.check(nil); err != nil {
		return nil, nil, err
	}
	// A key that is missing or not the account's would make every item
	// look bad; refuse rather than let done remove them.
	if err := checkInboxKey(a, c); err != nil {
		return nil, nil, fmt.Errorf("couldn't open hosted-wallet inbox: %w", err)
	}
	k, err := inboxKey(c)
	if err != nil {
		return nil, nil, err
	}
	sk, err := hpke.NewDHKEMPrivateKey(k)
	if err != nil {
		return nil, nil, fmt.Errorf("couldn't open hosted-wallet inbox: %w", err)
	}
	waiting, err := w.Store.Items(a.ID)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, 0, len(waiting))
	for _, it := range waiting {
		ids = append(ids, it.ID)
		item, err := hpke.Open(sk, suiteKDF, suiteAEAD, inboxInfo(a.ID), it.Sealed)
		if err != nil {
			continue
		}
		items = append(items, item)
	}
	done = func() error { return w.Store.DeleteItems(a.ID, ids) }
	return items, done, nil
}
