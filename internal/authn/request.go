package authn

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imi-city/imi/internal/key"
)

// HeaderSignature is the header that carries an authority's request signature:
//
//	IMI-Signature: authority=<id>, ts=<unix seconds>, nonce=<base64url>, sig=<base64url>
const HeaderSignature = "IMI-Signature"

const (
	requestLabel = "imi/v1/request"
	// nonceSize random bytes make two requests of one authority within the
	// replay window collide with negligible probability.
	nonceSize = 16
	// DefaultSkew is the clock difference a Verifier accepts if Skew is 0.
	DefaultSkew = 2 * time.Minute
	// maxReplay bounds the replay cache: about 100 MB at most, and far more
	// signed requests than authorities send within twice the skew.
	maxReplay   = 1 << 20
	maxTSDigits = 12
)

var (
	b64       = base64.RawURLEncoding.Strict()
	nonceLen  = b64.EncodedLen(nonceSize)
	sigTxtLen = b64.EncodedLen(ed25519.SignatureSize)
)

// SignRequest signs an outgoing request of authority id with k and sets the
// IMI-Signature header. body is the exact request body, nil for none; the
// caller sends those bytes unchanged. The signature covers the method, the
// path and query, the authority, the time, a fresh nonce and the SHA-256 of
// the body, but not the host, so a request reaches a node through any address.
//
// Because the host is not signed, whoever receives a signed request (another
// node, a proxy) can present it to a different node within the time window;
// each node accepts it once. That is harmless for requests whose effect is
// itself signed and deduplicated on the ledger; an endpoint that returns data
// only one node holds should not rely on this signature alone.
func SignRequest(r *http.Request, body []byte, id string, k key.Private, now time.Time) error {
	var nonce [nonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("couldn't make a request nonce: %w", err)
	}
	return signRequest(r, body, id, k, now, nonce)
}

func signRequest(r *http.Request, body []byte, id string, k key.Private, now time.Time, nonce [nonceSize]byte) error {
	if k.IsZero() {
		return errors.New("couldn't sign request: no key")
	}
	if !validAuthority(id) {
		return fmt.Errorf("couldn't sign request: authority id %q: use 2 to 32 lower-case letters, digits and hyphens, starting with a letter", clip(id))
	}
	if now.Unix() < 0 {
		return errors.New("couldn't sign request: the clock is before 1970")
	}
	s := signature{authority: id, ts: now.Unix(), nonce: nonce}
	msg, err := requestSignBytes(r, s, body)
	if err != nil {
		return fmt.Errorf("couldn't sign request: %w", err)
	}
	copy(s.sig[:], k.Sign(msg))
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	r.Header.Set(HeaderSignature, s.String())
	return nil
}

// requestSignBytes is the message an authority signs. Every field is free of
// NUL bytes (methods are tokens, the URI is escaped, the others are checked
// to a fixed alphabet), so NUL separates them without ambiguity.
func requestSignBytes(r *http.Request, s signature, body []byte) ([]byte, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet // as net/http sends it
	}
	if !validMethod(method) {
		return nil, fmt.Errorf("method %q is not an HTTP token", clip(method))
	}
	if r.URL == nil {
		return nil, errors.New("request has no URL")
	}
	sum := sha256.Sum256(body)
	var b strings.Builder
	for _, f := range []string{
		requestLabel, method, r.URL.RequestURI(), s.authority,
		strconv.FormatInt(s.ts, 10), b64.EncodeToString(s.nonce[:]),
	} {
		b.WriteString(f)
		b.WriteByte(0)
	}
	b.WriteString(hex.EncodeToString(sum[:]))
	return []byte(b.String()), nil
}

// KeyLookup returns an authority's current key from the ledger, or an error
// if the ledger has no such authority or it was removed.
type KeyLookup func(authority string) (key.Public, error)

// Verifier checks the request signatures of authorities. Its zero value with
// Keys set is ready to use; it must not be copied after first use.
type Verifier struct {
	// Keys looks up the key an authority signs with.
	Keys KeyLookup
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Skew is how far a request's time may be from Now, either way; 0 means
	// DefaultSkew. A signed request is accepted once within that window.
	Skew time.Duration

	mu     sync.Mutex
	seen   *table[replayKey, struct{}]
	maxLen int // replay cache size; 0 means maxReplay (tests set it lower)
}

type replayKey struct {
	authority string
	nonce     [nonceSize]byte
}

// Verify checks r's IMI-Signature header against body, the exact bytes
// received, and returns the authenticated authority id. It must see r.URL as
// it arrived, before any prefix is stripped for routing.
func (v *Verifier) Verify(r *http.Request, body []byte) (string, error) {
	vals := r.Header.Values(HeaderSignature)
	switch len(vals) {
	case 0:
		return "", fmt.Errorf("%w: authorities sign each request with the %s header", ErrNoSignature, HeaderSignature)
	case 1:
	default:
		return "", fmt.Errorf("%w: send one %s header, not %d", ErrMalformed, HeaderSignature, len(vals))
	}
	s, err := parseSignature(vals[0])
	if err != nil {
		return "", err
	}

	now := clock(v.Now)
	skew := v.Skew
	if skew <= 0 {
		skew = DefaultSkew
	}
	// Time first: it is the cheapest check and it bounds how long a nonce
	// must be remembered.
	signed := time.Unix(s.ts, 0)
	if d := now.Sub(signed); d > skew {
		return "", fmt.Errorf("%w: the request was signed %s before this node's time (at most %s accepted); sign it again, and check the signing system's clock", ErrStale, d.Round(time.Second), skew)
	} else if d < -skew {
		return "", fmt.Errorf("%w: the request was signed %s after this node's time (at most %s accepted); check the clocks of the signing system and of this node", ErrStale, (-d).Round(time.Second), skew)
	}

	if v.Keys == nil {
		return "", errors.New("verifier has no key lookup")
	}
	pub, err := v.Keys(s.authority)
	if err != nil {
		return "", fmt.Errorf("%w: %q is unknown or removed on the ledger: %w", ErrUnknownAuthority, s.authority, err)
	}
	msg, err := requestSignBytes(r, s, body)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !pub.Verify(msg, s.sig[:]) {
		return "", fmt.Errorf("%w: the request from %q is not signed by its current ledger key, or was changed after signing", ErrBadSignature, s.authority)
	}

	// The nonce is remembered only after the signature verifies, so nobody
	// but the authority can fill the cache or block its nonces. It is kept
	// past the last moment the request could pass the time check.
	until := signed.Add(skew + time.Second)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		n := v.maxLen
		if n == 0 {
			n = maxReplay
		}
		v.seen = newTable[replayKey, struct{}](n)
	}
	k := replayKey{authority: s.authority, nonce: s.nonce}
	if _, _, ok := v.seen.get(k, now); ok {
		return "", fmt.Errorf("%w: a signed request is accepted once; sign it again to repeat it", ErrReplay)
	}
	if err := v.seen.put(k, struct{}{}, until, now); err != nil {
		return "", fmt.Errorf("%w: too many signed requests within %s; try again shortly", err, 2*skew)
	}
	return s.authority, nil
}

// signature is a parsed IMI-Signature header.
type signature struct {
	authority string
	ts        int64
	nonce     [nonceSize]byte
	sig       [ed25519.SignatureSize]byte
}

// String is the header's one spelling, which parseSignature accepts.
func (s signature) String() string {
	return "authority=" + s.authority +
		", ts=" + strconv.FormatInt(s.ts, 10) +
		", nonce=" + b64.EncodeToString(s.nonce[:]) +
		", sig=" + b64.EncodeToString(s.sig[:])
}

// parseSignature accepts exactly the form String writes: the four fields in
// order, separated by ", ", each in its one canonical spelling. One spelling
// means a signed header cannot be altered in form while keeping its meaning.
func parseSignature(h string) (signature, error) {
	var s signature
	bad := func(format string, a ...any) (signature, error) {
		return signature{}, fmt.Errorf("%w: %s header: "+format, append([]any{ErrMalformed, HeaderSignature}, a...)...)
	}
	parts := strings.Split(h, ", ")
	names := []string{"authority", "ts", "nonce", "sig"}
	if len(parts) != len(names) {
		return bad("want authority=…, ts=…, nonce=…, sig=… separated by a comma and a space")
	}
	vals := make([]string, len(names))
	for i, p := range parts {
		v, ok := strings.CutPrefix(p, names[i]+"=")
		if !ok {
			return bad("field %d must be %s=…", i+1, names[i])
		}
		vals[i] = v
	}

	if !validAuthority(vals[0]) {
		return bad("authority must be 2 to 32 lower-case letters, digits and hyphens, starting with a letter")
	}
	s.authority = vals[0]

	ts := vals[1]
	if ts == "" || len(ts) > maxTSDigits || (ts[0] == '0' && len(ts) > 1) || strings.Trim(ts, "0123456789") != "" {
		return bad("ts must be the Unix time in seconds, in decimal without leading zeros")
	}
	s.ts, _ = strconv.ParseInt(ts, 10, 64) // at most 12 digits: cannot overflow

	if len(vals[2]) != nonceLen {
		return bad("nonce must be %d base64url characters", nonceLen)
	}
	if n, err := b64.Decode(s.nonce[:], []byte(vals[2])); err != nil || n != nonceSize {
		return bad("nonce must be %d base64url characters", nonceLen)
	}

	if len(vals[3]) != sigTxtLen {
		return bad("sig must be %d base64url characters", sigTxtLen)
	}
	if n, err := b64.Decode(s.sig[:], []byte(vals[3])); err != nil || n != ed25519.SignatureSize {
		return bad("sig must be %d base64url characters", sigTxtLen)
	}
	return s, nil
}

// validAuthority is the ledger's rule for authority ids: a lower-case letter,
// then 1 to 31 lower-case letters, digits or hyphens. Checking it here keeps
// arbitrary text out of key lookups, the replay cache and error messages.
func validAuthority(id string) bool {
	if len(id) < 2 || len(id) > 32 || id[0] < 'a' || id[0] > 'z' {
		return false
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// validMethod reports whether m is an RFC 9110 token.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header,
// or "" if there is none or it is not in that form.
func BearerToken(r *http.Request) string {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return ""
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !validToken68(tok) {
		return ""
	}
	return tok
}

// validToken68 reports whether t is an RFC 9110 token68.
func validToken68(t string) bool {
	body := strings.TrimRight(t, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~+/", c) >= 0:
		default:
			return false
		}
	}
	return true
}
