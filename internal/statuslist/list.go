// Package statuslist implements the IETF Token Status List
// (draft-ietf-oauth-status-list) in its JSON and JWT forms: the packed status
// bits, the "status" claim a credential carries, and the signed
// statuslist+jwt token a relying party fetches to check it.
//
// A status list is public and fetched from the network, so every parser here
// is strict and bounded: the decompressed size is capped before it is
// allocated, and an index the list does not cover is an error, never "valid".
package statuslist

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// Status values of draft-ietf-oauth-status-list §7.1. Invalid is what IMI
// calls revoked.
const (
	Valid     byte = 0x00
	Invalid   byte = 0x01
	Suspended byte = 0x02
)

var (
	// ErrBits is returned for a bits value other than 1, 2, 4 or 8.
	ErrBits = errors.New("bits must be 1, 2, 4 or 8")
	// ErrIndex is returned for an index the list does not cover.
	ErrIndex = errors.New("index out of range")
	// ErrValue is returned by Set for a value that does not fit in bits.
	ErrValue = errors.New("status value does not fit in bits")
	// ErrMalformed is returned for an lst that is not base64url of a
	// complete zlib stream.
	ErrMalformed = errors.New("malformed status list")
	// ErrTooLarge is returned when a list decompresses past the caller's
	// bound.
	ErrTooLarge = errors.New("status list too large")
)

// List is a packed array of statuses of Bits() bits each. Index 0 is in the
// least significant bits of byte 0 (draft §4.1). Make one with New or Decode;
// Set must not run concurrently with other methods.
type List struct {
	bits int
	size int
	b    []byte
}

func validBits(bits int) bool { return bits == 1 || bits == 2 || bits == 4 || bits == 8 }

// New returns a list of size statuses, all Valid.
func New(bits, size int) (*List, error) {
	if !validBits(bits) {
		return nil, fmt.Errorf("%w: got %d", ErrBits, bits)
	}
	if size <= 0 || size > maxEntries {
		return nil, fmt.Errorf("status list size %d out of range [1, %d]", size, maxEntries)
	}
	return &List{bits: bits, size: size, b: make([]byte, byteLen(size, bits))}, nil
}

// maxEntries caps a list at 2^30 statuses, at most 1 GiB of bytes.
const maxEntries = 1 << 30

// byteLen computes in int64 so that size*bits cannot overflow a 32-bit int.
func byteLen(size, bits int) int { return int((int64(size)*int64(bits) + 7) / 8) }

// Bits is the number of bits per status: 1, 2, 4 or 8.
func (l *List) Bits() int { return l.bits }

// Size is the number of statuses. A decoded list covers every whole slot of
// its bytes, so it may be larger than the list that was encoded: the format
// carries no size.
func (l *List) Size() int { return l.size }

// Get returns the status at idx. It panics if idx is outside [0, Size()),
// like a slice index; Token.Status is the checked form for untrusted indexes.
func (l *List) Get(idx int) byte {
	if idx < 0 || idx >= l.size {
		panic(fmt.Sprintf("statuslist: index %d out of range [0, %d)", idx, l.size))
	}
	perByte := 8 / l.bits
	shift := uint(idx%perByte) * uint(l.bits)
	return (l.b[idx/perByte] >> shift) & l.mask()
}

// Set stores v at idx.
func (l *List) Set(idx int, v byte) error {
	if idx < 0 || idx >= l.size {
		return fmt.Errorf("%w: %d not in [0, %d)", ErrIndex, idx, l.size)
	}
	if v&^l.mask() != 0 {
		return fmt.Errorf("%w: %#x in %d bits", ErrValue, v, l.bits)
	}
	perByte := 8 / l.bits
	shift := uint(idx%perByte) * uint(l.bits)
	i := idx / perByte
	l.b[i] = l.b[i]&^(l.mask()<<shift) | v<<shift
	return nil
}

func (l *List) mask() byte { return byte(1<<uint(l.bits) - 1) }

// Encode returns the lst member: base64url without padding of the
// ZLIB-wrapped DEFLATE stream of the bytes, at best compression as §4.1
// recommends.
func (l *List) Encode() (string, error) {
	var buf bytes.Buffer
	w, err := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(l.b); err != nil {
		return "", fmt.Errorf("couldn't compress status list: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("couldn't compress status list: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(buf.Bytes()), nil
}

// Decode parses an lst member of the given bits. maxSize bounds the number of
// statuses (rounded up to whole bytes), and so the bytes decompressed, so that
// a small lst cannot expand into gigabytes. The stream must be complete, checksummed, non-empty and
// followed by nothing.
func Decode(bits int, lst string, maxSize int) (*List, error) {
	if !validBits(bits) {
		return nil, fmt.Errorf("%w: got %d", ErrBits, bits)
	}
	if maxSize <= 0 || maxSize > maxEntries {
		return nil, fmt.Errorf("status list bound %d out of range [1, %d]", maxSize, maxEntries)
	}
	maxBytes := byteLen(maxSize, bits)
	// Strict: padding, '+' or '/', and non-zero trailing bits are all
	// rejected, so one list has one lst.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(lst)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// bytes.Reader is an io.ByteReader, so zlib reads from it directly
	// without buffering ahead, and Len() afterwards is exactly what
	// follows the stream.
	br := bytes.NewReader(raw)
	zr, err := zlib.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, int64(maxBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(b) > maxBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
	}
	// ReadAll stopped short of the limit, so zlib reached its end and
	// verified the Adler-32 checksum.
	if br.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the zlib stream", ErrMalformed, br.Len())
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	return &List{bits: bits, size: len(b) * (8 / bits), b: b}, nil
}
