// Package tx is the wire format of IMI's ledger transactions.
//
// A transaction is one JSON object in a single canonical form: compact, fields
// in the order the Go structs below declare them, no HTML escaping, and base64url
// without padding for bytes. Decode accepts a transaction only if re-encoding it
// gives back exactly the bytes received, which rejects duplicate keys, unknown
// fields, reordered fields, whitespace and alternative spellings in one rule, and
// means the hash of a transaction identifies it uniquely.
//
// The signature covers SignBytes: a domain-separation label, then the canonical
// encoding with "sig" empty. The chain id is inside, so a transaction signed for
// one district cannot be replayed on another; the per-signer lane and sequence
// number stop replays on the same chain.
package tx

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/imi-city/imi/internal/key"
)

const (
	// Version is the only transaction version this code accepts.
	Version = 1
	// MaxBytes bounds one encoded transaction. Most are under 2 KiB; a batch
	// of access records is the largest.
	MaxBytes = 64 << 10
	// MaxLanes bounds the independent sequence lanes of one signer. Lanes let
	// several counters of one registrar submit in parallel, each in order.
	MaxLanes  = 256
	signLabel = "imi/v1/tx"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed transaction")

// Type names what a transaction does.
type Type string

// Transaction types.
const (
	TypeRegisterResident Type = "register_resident"
	TypeRotateKey        Type = "rotate_key"
	TypeRecover          Type = "recover"
	TypeDeactivate       Type = "deactivate"
	TypeReproof          Type = "reproof"
	TypePropose          Type = "propose"
	TypeVote             Type = "vote"

	TypeRotateAuthorityKey     Type = "rotate_authority_key"
	TypeRegisterCredentialType Type = "register_credential_type"
	TypeReserveStatus          Type = "reserve_status"
	TypeRevoke                 Type = "revoke"
	TypeSuspend                Type = "suspend"
	TypeUnsuspend              Type = "unsuspend"
)

// Tx is a signed transaction. Body holds the canonical encoding of the body
// type that Type names.
type Tx struct {
	V       int             `json:"v"`
	ChainID string          `json:"chain_id"`
	Signer  string          `json:"signer"`
	Lane    uint32          `json:"lane"`
	Seq     uint64          `json:"seq"`
	Type    Type            `json:"type"`
	Body    json.RawMessage `json:"body"`
	Sig     Bytes           `json:"sig"`
}

// Bytes is binary data in base64url without padding.
type Bytes []byte

// MarshalText implements encoding.TextMarshaler.
func (b Bytes) MarshalText() ([]byte, error) {
	return []byte(base64.RawURLEncoding.EncodeToString(b)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler, strictly.
func (b *Bytes) UnmarshalText(t []byte) error {
	d, err := base64.RawURLEncoding.Strict().DecodeString(string(t))
	if err != nil {
		return fmt.Errorf("bad base64url: %w", err)
	}
	*b = d
	return nil
}

// Hash32 is a 32-byte digest in base64url.
type Hash32 [32]byte

// MarshalText implements encoding.TextMarshaler.
func (h Hash32) MarshalText() ([]byte, error) {
	return []byte(base64.RawURLEncoding.EncodeToString(h[:])), nil
}

// UnmarshalText implements encoding.TextUnmarshaler, strictly.
func (h *Hash32) UnmarshalText(t []byte) error {
	d, err := base64.RawURLEncoding.Strict().DecodeString(string(t))
	if err != nil || len(d) != 32 {
		return errors.New("want 32 bytes in base64url")
	}
	copy(h[:], d)
	return nil
}

// New builds an unsigned transaction with body encoded canonically.
func New(chainID, signer string, lane uint32, seq uint64, body Body) (*Tx, error) {
	b, err := marshal(body)
	if err != nil {
		return nil, err
	}
	return &Tx{V: Version, ChainID: chainID, Signer: signer, Lane: lane, Seq: seq, Type: body.TxType(), Body: b}, nil
}

// SignBytes returns what the signature covers.
func (t *Tx) SignBytes() []byte {
	u := *t
	u.Sig = nil
	b, err := marshal(&u)
	if err != nil {
		panic("tx: cannot encode a decoded transaction: " + err.Error())
	}
	return append([]byte(signLabel+"\x00"), b...)
}

// Sign sets the signature with k.
func (t *Tx) Sign(k key.Private) { t.Sig = k.Sign(t.SignBytes()) }

// VerifySig checks the signature against pub.
func (t *Tx) VerifySig(pub key.Public) bool { return pub.Verify(t.SignBytes(), t.Sig) }

// Encode returns the canonical bytes.
func (t *Tx) Encode() []byte {
	b, err := marshal(t)
	if err != nil {
		panic("tx: cannot encode: " + err.Error())
	}
	return b
}

// Hash is SHA-256 of the encoded transaction, as CometBFT computes it.
func Hash(raw []byte) [32]byte { return sha256.Sum256(raw) }

// HashHex is the upper-case hex form CometBFT shows.
func HashHex(raw []byte) string {
	h := Hash(raw)
	return fmt.Sprintf("%X", h[:])
}

// ParseHashHex parses a transaction hash in hex.
func ParseHashHex(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return h, errors.New("a transaction hash is 64 hexadecimal characters")
	}
	copy(h[:], b)
	return h, nil
}

// Decode parses raw strictly and returns the envelope and its typed body.
func Decode(raw []byte) (*Tx, Body, error) {
	if len(raw) > MaxBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(raw), MaxBytes)
	}
	var t Tx
	if err := strict(raw, &t); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if t.V != Version {
		return nil, nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, t.V, Version)
	}
	if t.Lane >= MaxLanes {
		return nil, nil, fmt.Errorf("%w: lane %d, at most %d", ErrMalformed, t.Lane, MaxLanes-1)
	}
	if len(t.Sig) != 64 {
		return nil, nil, fmt.Errorf("%w: signature is %d bytes, want 64", ErrMalformed, len(t.Sig))
	}
	body, err := newBody(t.Type)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := strict(t.Body, body); err != nil {
		return nil, nil, fmt.Errorf("%w: body of %s: %v", ErrMalformed, t.Type, err)
	}
	if canon, err := marshal(body); err != nil || !bytes.Equal(canon, t.Body) {
		return nil, nil, fmt.Errorf("%w: body of %s is not in canonical form", ErrMalformed, t.Type)
	}
	if again := t.Encode(); !bytes.Equal(again, raw) {
		return nil, nil, fmt.Errorf("%w: not in canonical form (field order, whitespace, duplicate keys or escaping)", ErrMalformed)
	}
	return &t, body, nil
}

func strict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// marshal is the one canonical encoder: compact, struct order, no HTML escapes.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Marshal encodes a state record or body canonically; the ledger stores
// records in the same form.
func Marshal(v any) ([]byte, error) { return marshal(v) }

// Unmarshal decodes strictly.
func Unmarshal(b []byte, v any) error { return strict(b, v) }
