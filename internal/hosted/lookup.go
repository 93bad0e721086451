package hosted

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
)

const (
	lookupLabel     = "imi/v1/hosted/lookup"
	activationLabel = "imi/v1/hosted/activation"

	// CodeLength is the length of an activation code. From an alphabet of
	// 32 that is 50 bits: far too many to guess in the MaxFailures tries
	// a lockout period allows, and short enough to type from a slip.
	CodeLength = 10

	// codeAlphabet leaves out 0, O, 1 and I, which a resident cannot
	// tell apart on a printed slip. 32 symbols, so a random byte mod 32
	// picks each one with equal chance.
	codeAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
)

// LoadLookupKey reads the node-local lookup key at path, creating it (owner
// read/write only) if there is none. The key is published with a hard link
// from a fully written temporary file, so a crash leaves no half-written key
// and two processes starting at once end up with the same one.
//
// Losing this file loses every hosted wallet's sign-in: back it up with the
// node's other keys. It is not the registrars' uniqueness key and must not
// be: that one is shared between registrars, this one never leaves the node.
func LoadLookupKey(path string) (key.HMAC, error) {
	k, err := key.ReadHMACFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if k, err = key.GenerateHMAC(); err != nil {
		return key.HMAC{}, err
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return key.HMAC{}, fmt.Errorf("couldn't create lookup key: %w", err)
	}
	tmp := path + ".tmp-" + hex.EncodeToString(r[:])
	if err := k.WriteFile(tmp); err != nil {
		return key.HMAC{}, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return key.ReadHMACFile(path) // another process was first
	} else if err != nil {
		return key.HMAC{}, fmt.Errorf("couldn't create lookup key: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return key.HMAC{}, fmt.Errorf("couldn't sync lookup key directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return key.HMAC{}, fmt.Errorf("couldn't sync lookup key directory: %w", err)
	}
	return k, nil
}

// Lookup is what an account is found by: HMAC-SHA256 under the node's lookup
// key of the normalised ID number. A plain hash would not do: ID numbers
// are few enough (region, birth date, sequence) to hash them all. It panics
// on an unparsed Number, as idnumber.UniquenessTag does.
func Lookup(k key.HMAC, n idnumber.Number) []byte {
	if n.String() == "" {
		panic("hosted: Lookup of an unparsed ID number")
	}
	m := hmac.New(sha256.New, k.Bytes())
	m.Write([]byte(lookupLabel))
	m.Write([]byte{0})
	m.Write([]byte(n.String()))
	return m.Sum(nil)
}

// newCode returns a fresh activation code.
func newCode() (string, error) {
	var b [CodeLength]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("couldn't generate activation code: %w", err)
	}
	for i := range b {
		b[i] = codeAlphabet[b[i]%byte(len(codeAlphabet))]
	}
	return string(b[:]), nil
}

// codeHash is what the store keeps of an activation code. Keyed, because
// 50 bits hashed without a secret could be searched from a stolen store;
// bound to the account id, so a hash copied to another account is useless.
func codeHash(k key.HMAC, accountID, code string) []byte {
	m := hmac.New(sha256.New, k.Bytes())
	m.Write([]byte(activationLabel))
	m.Write([]byte{0})
	m.Write([]byte(accountID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// normCode accepts a code as a resident may type it: lower case, with
// spaces or dashes between groups.
func normCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == ' ' || r == '-':
			return -1
		case 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
}
