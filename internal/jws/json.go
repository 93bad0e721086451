package jws

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is the nesting limit used for headers and payloads.
const MaxDepth = 32

// CheckJSON reports whether b is exactly one JSON value (RFC 8259), in
// UTF-8, with no duplicate object member names, no unpaired surrogate
// escapes and no more than maxDepth nested arrays and objects. Duplicate
// names matter because two parsers may keep different copies; depth matters
// because recursive consumers must not exhaust the stack. Errors wrap
// ErrMalformed, or ErrTooLarge for depth.
func CheckJSON(b []byte, maxDepth int) error {
	_, err := walkJSON(b, maxDepth, false, false)
	return err
}

// DecodeJSON is CheckJSON that also returns the value, decoded as
// encoding/json decodes into an any (map[string]any, []any, string, float64,
// bool, nil), in the same single pass.
func DecodeJSON(b []byte, maxDepth int) (any, error) {
	return walkJSON(b, maxDepth, true, false)
}

// The parser is hand-written rather than built on json.Decoder.Token, which
// cost over half of SD-JWT verification outside the signature checks. It is
// fuzzed against encoding/json (FuzzDecodeJSON).
//
// It allocates little: the input is copied once into s, and every string
// without escapes is a slice of that copy rather than a copy of its own;
// object members and array elements are collected on two stacks shared by
// all nesting levels, so each map and slice is made once, at its final size.
type parser struct {
	b     []byte
	s     string // b as a string
	i     int
	max   int
	build bool
	roomy bool     // the outermost map gets room for as many members again
	spans bool     // record where each member of the outermost object starts
	keys  []string // member names of the objects being read, outermost first
	vals  []any    // their values and array elements, when building
	start []int    // offsets of the outermost object's values, with spans
	esc   []byte   // scratch for strings with escapes
}

// linearDup is the member count up to which duplicates are found by
// comparing with each earlier name; past it a set is cheaper, and keeps a
// hostile object of thousands of members from costing quadratic time.
const linearDup = 16

func walkJSON(b []byte, maxDepth int, build, roomy bool) (any, error) {
	p, err := newParser(b, maxDepth, build)
	if err != nil {
		return nil, err
	}
	p.roomy = roomy
	defer p.free()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	return v, nil
}

// parsers keeps parsers, and so the capacity of their stacks, between
// parses: a verification reads several small JSON texts.
var parsers = sync.Pool{New: func() any { return new(parser) }}

// maxPooledStack is the stack capacity past which a parser is not pooled,
// so one large input does not pin its memory.
const maxPooledStack = 1024

// newParser returns a parser on b, which must be released with free.
func newParser(b []byte, maxDepth int, build bool) (*parser, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: JSON is not valid UTF-8", ErrMalformed)
	}
	p := parsers.Get().(*parser)
	p.b, p.s, p.i, p.max, p.build = b, string(b), 0, maxDepth, build
	return p, nil
}

// free returns p to the pool, holding no reference to the input or to any
// value read from it.
func (p *parser) free() {
	// Every pop clears what it pops, so only what an error left is live.
	clear(p.keys)
	clear(p.vals)
	if max(cap(p.keys), cap(p.vals), cap(p.start), cap(p.esc)) > maxPooledStack {
		return
	}
	clear(p.esc[:cap(p.esc)])
	*p = parser{keys: p.keys[:0], vals: p.vals[:0], start: p.start[:0], esc: p.esc[:0]}
	parsers.Put(p)
}

// topMembers is newParser for b, which must be one JSON object, checked as
// CheckJSON checks it, with the names of its members left on p.keys and the
// offsets of their values on p.start. The caller frees p, also on error.
func topMembers(b []byte, maxDepth int) (*parser, error) {
	p, err := newParser(b, maxDepth, false)
	if err != nil {
		return nil, err
	}
	p.spans = true
	p.ws()
	switch {
	case p.i >= len(p.b) || p.b[p.i] != '{':
		err = p.errorf("want an object")
	case p.max < 1:
		err = fmt.Errorf("%w: JSON nested deeper than %d", ErrTooLarge, p.max)
	default:
		err = p.members(1)
	}
	if err == nil {
		err = p.end()
	}
	if err != nil {
		p.free()
		return nil, err
	}
	return p, nil
}

// stringAt reads the string at offset i, which topMembers has checked, or
// reports that the value there is not a string.
func (p *parser) stringAt(i int) (string, bool) {
	if p.b[i] != '"' {
		return "", false
	}
	p.i = i
	s, err := p.str()
	return s, err == nil
}

// end checks that nothing but whitespace follows the value.
func (p *parser) end() error {
	p.ws()
	if p.i != len(p.b) {
		return p.errorf("data after the JSON value")
	}
	return nil
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: JSON at offset %d: %s", ErrMalformed, p.i, fmt.Sprintf(format, args...))
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (any, error) {
	p.ws()
	if p.i >= len(p.b) {
		return nil, p.errorf("unexpected end")
	}
	switch c := p.b[p.i]; {
	case c == '{' || c == '[':
		if depth >= p.max {
			return nil, fmt.Errorf("%w: JSON nested deeper than %d", ErrTooLarge, p.max)
		}
		if c == '{' {
			return p.object(depth + 1)
		}
		return p.array(depth + 1)
	// Only a built value is boxed: boxing a string or a number allocates.
	case c == '"':
		s, err := p.str()
		if !p.build || err != nil {
			return nil, err
		}
		return s, nil
	case c == '-' || '0' <= c && c <= '9':
		f, err := p.number()
		if !p.build || err != nil {
			return nil, err
		}
		return f, nil
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	}
	return nil, p.errorf("unexpected %q", p.b[p.i])
}

func (p *parser) literal(lit string) error {
	if !strings.HasPrefix(p.s[p.i:], lit) {
		return p.errorf("invalid literal")
	}
	p.i += len(lit)
	return nil
}

func (p *parser) object(depth int) (any, error) {
	kbase, vbase := len(p.keys), len(p.vals)
	if err := p.members(depth); err != nil {
		return nil, err
	}
	var m map[string]any
	if p.build {
		n := len(p.keys) - kbase
		if depth == 1 && p.roomy {
			n *= 2
		}
		m = make(map[string]any, n)
		for j, k := range p.keys[kbase:] {
			m[k] = p.vals[vbase+j]
		}
		// The stacks keep no reference past its use: a pooled parser must
		// not hold on to the claims it read.
		clear(p.vals[vbase:])
		p.vals = p.vals[:vbase]
	}
	clear(p.keys[kbase:])
	p.keys = p.keys[:kbase]
	return m, nil
}

// members reads an object, '{' to '}', pushing its member names on p.keys
// and, when building, its values on p.vals, in order. The caller pops them.
func (p *parser) members(depth int) error {
	p.i++ // '{'
	kbase := len(p.keys)
	var seen map[string]struct{} // past linearDup members
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return nil
	}
	for {
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return p.errorf("want a member name")
		}
		k, err := p.str()
		if err != nil {
			return err
		}
		names := p.keys[kbase:]
		switch {
		case seen != nil:
			if _, dup := seen[k]; dup {
				return p.errorf("duplicate member %q", k)
			}
			seen[k] = struct{}{}
		case len(names) < linearDup:
			for _, n := range names {
				if n == k {
					return p.errorf("duplicate member %q", k)
				}
			}
		default:
			seen = make(map[string]struct{}, 2*len(names))
			for _, n := range names {
				seen[n] = struct{}{}
			}
			if _, dup := seen[k]; dup {
				return p.errorf("duplicate member %q", k)
			}
			seen[k] = struct{}{}
		}
		p.keys = append(p.keys, k)
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return p.errorf("want ':'")
		}
		p.i++
		if p.spans && depth == 1 {
			p.ws()
			p.start = append(p.start, p.i)
		}
		v, err := p.value(depth)
		if err != nil {
			return err
		}
		if p.build {
			p.vals = append(p.vals, v)
		}
		p.ws()
		if p.i >= len(p.b) {
			return p.errorf("unterminated object")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return p.errorf("want ',' or '}'")
		}
	}
}

func (p *parser) array(depth int) (any, error) {
	p.i++ // '['
	vbase := len(p.vals)
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		if p.build {
			return []any{}, nil
		}
		return nil, nil
	}
	for {
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		if p.build {
			p.vals = append(p.vals, v)
		}
		p.ws()
		if p.i >= len(p.b) {
			return nil, p.errorf("unterminated array")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			if !p.build {
				return nil, nil
			}
			a := slices.Clone(p.vals[vbase:])
			clear(p.vals[vbase:])
			p.vals = p.vals[:vbase]
			return a, nil
		default:
			return nil, p.errorf("want ',' or ']'")
		}
	}
}

func (p *parser) str() (string, error) {
	p.i++ // '"'
	start := p.i
	// Skip eight bytes at a time while none ends the plain run; the byte
	// loop below finds which one did.
	for p.i+8 <= len(p.b) && !special(binary.LittleEndian.Uint64(p.b[p.i:])) {
		p.i += 8
	}
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.s[start:p.i]
			p.i++
			return s, nil
		case c == '\\':
			return p.strEscaped(start)
		case c < 0x20:
			return "", p.errorf("control character in string")
		}
		p.i++
	}
	return "", p.errorf("unterminated string")
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special reports whether a byte of x is '"', '\\' or a control character.
// It uses the haszero and hasless tricks of Bit Twiddling Hacks:
// (x - ones*n) &^ x & highs is nonzero exactly when some byte of x is below
// n (n <= 0x80), and the XORs turn '"' and '\\' into zero bytes. The XORs
// leave every high bit as it was, so the three tests share the "&^ x" mask.
func special(x uint64) bool {
	quote := x ^ (ones * '"')
	bslash := x ^ (ones * '\\')
	return ((x-ones*0x20)|(quote-ones)|(bslash-ones))&^x&highs != 0
}

func (p *parser) strEscaped(start int) (string, error) {
	p.esc = append(p.esc[:0], p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(p.esc), nil
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c != '\\':
			p.esc = append(p.esc, c)
			p.i++
			continue
		}
		p.i++
		if p.i >= len(p.b) {
			break
		}
		e := p.b[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			p.esc = append(p.esc, e)
		case 'b':
			p.esc = append(p.esc, '\b')
		case 'f':
			p.esc = append(p.esc, '\f')
		case 'n':
			p.esc = append(p.esc, '\n')
		case 'r':
			p.esc = append(p.esc, '\r')
		case 't':
			p.esc = append(p.esc, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by a low one is a character;
				// anything else has no UTF-8 form and parsers disagree on it.
				if r >= 0xDC00 || p.i+1 >= len(p.b) || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
					return "", p.errorf("unpaired surrogate")
				}
				p.i += 2
				r2, ok := p.hex4()
				if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
					return "", p.errorf("unpaired surrogate")
				}
				r = utf16.DecodeRune(r, r2)
			}
			p.esc = utf8.AppendRune(p.esc, r)
		default:
			return "", p.errorf("bad escape \\%c", e)
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *parser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

func (p *parser) digits() int {
	n := 0
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

func (p *parser) number() (float64, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case p.digits() == 0:
		return 0, p.errorf("bad number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return 0, p.errorf("bad number")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return 0, p.errorf("bad number")
		}
	}
	f, err := strconv.ParseFloat(p.s[start:p.i], 64)
	if err != nil {
		return 0, p.errorf("number out of range")
	}
	return f, nil
}
