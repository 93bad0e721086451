// Package wallet holds a resident's keys and credentials in one file,
// encrypted at rest under a passphrase.
//
// The key is derived with Argon2id (RFC 9106): it is memory-hard, so each
// passphrase guess against a stolen file costs tens of megabytes of RAM as
// well as time, which is what makes GPU and ASIC guessing expensive; the "id"
// variant also resists the side channels of a shared host, where the hosted
// wallet runs. The contents are sealed with XChaCha20-Poly1305: an AEAD, so a
// modified file fails to open rather than decrypting to something else, and
// with a 192-bit nonce, so a fresh random nonce on every save never repeats in
// practice, with no counter to keep.
//
// The file is a fixed-size header followed by the ciphertext:
//
//	magic       "imi-wallet/v1" (13 bytes)
//	time        uint32, big endian   Argon2id passes
//	memory      uint32, big endian   Argon2id memory, KiB
//	threads     uint8                Argon2id lanes
//	salt        16 bytes
//	check       32 bytes             passphrase check, see below
//	nonce       24 bytes
//	ciphertext  JSON of Contents, sealed with the whole header as
//	            associated data
//
// Authenticating the header means a changed parameter or salt fails to open.
// The check value, derived from the passphrase like the key but under another
// label, lets Open tell a wrong passphrase from a damaged file; it helps a
// guesser no more than the ciphertext itself does, since both cost one Argon2id
// run to test.
package wallet

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

const (
	magic      = "imi-wallet/v1"
	saltSize   = 16
	checkSize  = 32
	nonceSize  = chacha20poly1305.NonceSizeX
	headerSize = len(magic) + 4 + 4 + 1 + saltSize + checkSize + nonceSize

	// Domain-separation labels for the two values derived from the
	// Argon2id output.
	keyLabel   = "imi/v1/wallet/key"
	checkLabel = "imi/v1/wallet/check"

	// MinPassphrase is the shortest passphrase Seal accepts, in characters.
	MinPassphrase = 8

	// maxFileSize bounds a wallet file; a wallet holds keys and a few
	// dozen credentials of a few kilobytes each.
	maxFileSize = 16 << 20

	fileMode = 0o600
)

var (
	// ErrWrongPassphrase is returned by Open when the passphrase does not
	// match. A file whose header was altered also reports it, since the
	// check value then no longer matches either.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrCorrupt is returned by Open for a file that is not a wallet, is
	// truncated, names unacceptable parameters, or fails authentication.
	ErrCorrupt = errors.New("wallet file is corrupt")
	// ErrPassphrase is returned by Seal for a passphrase that is too short
	// or not UTF-8.
	ErrPassphrase = errors.New("passphrase must be valid UTF-8 of at least 8 characters")
)

// Credential is one credential as the wallet stores it.
type Credential struct {
	ID        string
	SDJWT     string // as issued, with all its disclosures
	Type      string // credential type id, e.g. "resident_identity"
	VCT       string
	Issuer    string // issuer DID
	IssuerID  string // authority id
	IssuedAt  time.Time
	ExpiresAt time.Time
	StatusURI string
	StatusIdx uint64
	Added     time.Time
}

// Contents is everything a wallet file holds.
type Contents struct {
	DID         string
	Key         []byte // Ed25519 private key or seed
	RecoveryKey []byte `json:",omitempty"`
	Credentials []Credential
	// Extra is room for later features (consents, pseudonym seeds) without
	// a new file version.
	Extra map[string]json.RawMessage `json:"extra,omitempty"`
}

// String keeps keys and personal data out of logs when Contents is printed.
func (c Contents) String() string {
	return fmt.Sprintf("wallet.Contents(%s, %d credentials)", c.DID, len(c.Credentials))
}

// GoString is String, for %#v.
func (c Contents) GoString() string { return c.String() }

// Wipe zeroes the key material in c. Go may have left copies elsewhere; this
// shortens the life of the ones we hold.
func (c *Contents) Wipe() {
	clear(c.Key)
	clear(c.RecoveryKey)
}

// Params are the Argon2id costs; they are stored in the file.
type Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultParams is the second recommended option of RFC 9106 §4: t=3,
// 64 MiB, 4 lanes. The first option (2 GiB) does not fit a node that opens
// hosted wallets for several residents at once; 64 MiB still puts each guess
// far beyond what a GPU core has to itself.
var DefaultParams = Params{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// limits bound the parameters a file may name, so a crafted file cannot make
// Open allocate or compute without bound.
type limits struct {
	maxTime, maxMemoryKiB uint32
	maxThreads            uint8
}

var fileLimits = limits{maxTime: 16, maxMemoryKiB: 1 << 20, maxThreads: 16}

func (p Params) check(l limits) error {
	switch {
	case p.Time < 1 || p.Time > l.maxTime:
		return fmt.Errorf("argon2id time %d not in [1, %d]", p.Time, l.maxTime)
	case p.Threads < 1 || p.Threads > l.maxThreads:
		return fmt.Errorf("argon2id threads %d not in [1, %d]", p.Threads, l.maxThreads)
	// RFC 9106 §3.1: at least 8 KiB per lane.
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > l.maxMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB not in [%d, %d]", p.MemoryKiB, 8*uint32(p.Threads), l.maxMemoryKiB)
	}
	return nil
}

// derive returns the AEAD key and the passphrase check value.
func derive(passphrase, salt []byte, p Params) (key, check []byte, err error) {
	secret := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, 32)
	defer clear(secret)
	key, err = hkdf.Key(sha256.New, secret, nil, keyLabel, chacha20poly1305.KeySize)
	if err != nil {
		return nil, nil, err
	}
	check, err = hkdf.Key(sha256.New, secret, nil, checkLabel, checkSize)
	if err != nil {
		clear(key)
		return nil, nil, err
	}
	return key, check, nil
}

// Seal encrypts c under passphrase with a fresh salt and nonce read from
// random (crypto/rand.Reader if nil).
func Seal(c *Contents, passphrase []byte, p Params, random io.Reader) ([]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	if !utf8.Valid(passphrase) || utf8.RuneCount(passphrase) < MinPassphrase {
		return nil, ErrPassphrase
	}
	if err := p.check(fileLimits); err != nil {
		return nil, fmt.Errorf("couldn't seal wallet: %w", err)
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("couldn't encode wallet: %w", err)
	}
	defer clear(plain)
	return seal(plain, passphrase, p, random)
}

func seal(plain, passphrase []byte, p Params, random io.Reader) ([]byte, error) {
	if headerSize+len(plain)+chacha20poly1305.Overhead > maxFileSize {
		return nil, fmt.Errorf("couldn't seal wallet: contents exceed %d bytes", maxFileSize)
	}

	var salt [saltSize]byte
	var nonce [nonceSize]byte
	if _, err := io.ReadFull(random, salt[:]); err != nil {
		return nil, fmt.Errorf("couldn't read random salt: %w", err)
	}
	if _, err := io.ReadFull(random, nonce[:]); err != nil {
		return nil, fmt.Errorf("couldn't read random nonce: %w", err)
	}
	key, check, err := derive(passphrase, salt[:], p)
	if err != nil {
		return nil, err
	}
	defer clear(key)

	out := make([]byte, 0, headerSize+len(plain)+chacha20poly1305.Overhead)
	out = append(out, magic...)
	out = binary.BigEndian.AppendUint32(out, p.Time)
	out = binary.BigEndian.AppendUint32(out, p.MemoryKiB)
	out = append(out, p.Threads)
	out = append(out, salt[:]...)
	out = append(out, check...)
	out = append(out, nonce[:]...)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	return aead.Seal(out, nonce[:], plain, out[:headerSize]), nil
}

// Open decrypts a wallet file.
func Open(file []byte, passphrase []byte) (*Contents, error) {
	return open(file, passphrase, fileLimits)
}

func open(file, passphrase []byte, l limits) (*Contents, error) {
	if len(file) > maxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCorrupt, maxFileSize)
	}
	if len(file) < headerSize+chacha20poly1305.Overhead {
		return nil, fmt.Errorf("%w: too short", ErrCorrupt)
	}
	if !bytes.HasPrefix(file, []byte(magic)) {
		return nil, fmt.Errorf("%w: not an %s file", ErrCorrupt, magic)
	}
	h := file[len(magic):headerSize]
	p := Params{
		Time:      binary.BigEndian.Uint32(h[0:4]),
		MemoryKiB: binary.BigEndian.Uint32(h[4:8]),
		Threads:   h[8],
	}
	// Checked before deriving: these numbers come from the file.
	if err := p.check(l); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	h = h[9:]
	salt, check, nonce := h[:saltSize], h[saltSize:saltSize+checkSize], h[saltSize+checkSize:]

	key, want, err := derive(passphrase, salt, p)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if subtle.ConstantTimeCompare(want, check) != 1 {
		return nil, ErrWrongPassphrase
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, nonce, file[headerSize:], file[:headerSize])
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrCorrupt)
	}
	defer clear(plain)

	// Unknown fields are rejected, not dropped: a wallet written by a newer
	// version and re-saved by this one would otherwise lose them silently.
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	var c Contents
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after contents", ErrCorrupt)
	}
	return &c, nil
}

// Save seals c and replaces the file at path atomically: the new file is
// written and synced beside the old one, renamed over it and the directory
// synced, so a crash leaves either the old wallet or the new one, never a
// torn file.
func Save(path string, c *Contents, passphrase []byte, p Params) error {
	b, err := Seal(c, passphrase, p, nil)
	if err != nil {
		return err
	}
	return writeAtomic(path, b, (*os.File).Write)
}

// writeAtomic takes the write step as a parameter so tests can make it fail.
func writeAtomic(path string, b []byte, write func(*os.File, []byte) (int, error)) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("couldn't save wallet: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp already uses 0600; Chmod makes it independent of that.
	if err := f.Chmod(fileMode); err != nil {
		return fmt.Errorf("couldn't save wallet: %w", err)
	}
	if _, err := write(f, b); err != nil {
		return fmt.Errorf("couldn't save wallet: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("couldn't save wallet: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("couldn't save wallet: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("couldn't save wallet: %w", err)
	}
	ok = true
	// The rename is durable only once the directory entry is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("couldn't sync wallet directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("couldn't sync wallet directory: %w", err)
	}
	return nil
}

// Load reads and opens the wallet file at path.
func Load(path string, passphrase []byte) (*Contents, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("couldn't load wallet: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("couldn't load wallet: %w", err)
	}
	return Open(b, passphrase)
}

// CredentialID names a credential by a digest of its issuer-signed JWT, so
// the same credential added twice is recognised.
func CredentialID(sdjwt string) string {
	jwt, _, _ := strings.Cut(sdjwt, "~")
	d := sha256.Sum256([]byte(jwt))
	return "c-" + hex.EncodeToString(d[:6])
}
