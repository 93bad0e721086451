package sdjwt

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/imi-city/imi/internal/jws"
)

// Issuance is what an issuer puts into one SD-JWT.
type Issuance struct {
	// Header of the issuer-signed JWT. Typ defaults to TypSDJWT; Alg is
	// taken from the signer.
	Header jws.Header
	// Claims are always visible: iss, iat, exp, vct, cnf, status, ...
	Claims map[string]any
	// Disclosable are top-level claims the holder may reveal one by one.
	Disclosable map[string]any
	// MinDecoys is the least number of decoy digests added to _sd. More are
	// added to round _sd up to a multiple of 8, so its length says little
	// about how many claims there are.
	MinDecoys int
}

// Issue signs in.Claims plus the digests of in.Disclosable and returns the
// SD-JWT "<jwt>~<disclosure>~...~", Disclosures sorted by claim name. rand
// supplies salts and decoys: crypto/rand.Reader outside tests.
func Issue(s jws.Signer, in Issuance, rand io.Reader) (string, error) {
	payload := make(map[string]any, len(in.Claims)+2)
	for k, v := range in.Claims {
		if k == sdKey || k == sdAlgKey || k == elemKey {
			return "", fmt.Errorf("sdjwt: claim name %q is reserved", k)
		}
		payload[k] = v
	}
	names := make([]string, 0, len(in.Disclosable))
	for k := range in.Disclosable {
		switch {
		case k == sdKey || k == sdAlgKey || k == elemKey:
			return "", fmt.Errorf("sdjwt: claim name %q is reserved", k)
		case validityClaims[k]:
			return "", fmt.Errorf("sdjwt: claim %q must not be selectively disclosable", k)
		}
		if _, dup := payload[k]; dup {
			return "", fmt.Errorf("sdjwt: claim %q is both plain and disclosable", k)
		}
		names = append(names, k)
	}
	slices.Sort(names)

	var out strings.Builder
	digests := make([]string, 0, len(names)+in.MinDecoys+decoyBucket)
	discs := make([]string, 0, len(names))
	for _, name := range names {
		d, err := newDisclosure(rand, name, in.Disclosable[name])
		if err != nil {
			return "", err
		}
		discs = append(discs, d)
		digests = append(digests, digest(d))
	}
	decoys := in.MinDecoys
	if r := (len(digests) + decoys) % decoyBucket; r != 0 {
		decoys += decoyBucket - r
	}
	for range decoys {
		var seed [saltSize]byte
		if _, err := io.ReadFull(rand, seed[:]); err != nil {
			return "", fmt.Errorf("sdjwt: couldn't read randomness: %w", err)
		}
		h := sha256.Sum256(seed[:])
		digests = append(digests, b64.EncodeToString(h[:]))
	}
	// Sorted, so the order of _sd says nothing about which digest is which.
	slices.Sort(digests)
	if len(digests) > 0 {
		payload[sdKey] = digests
	}
	payload[sdAlgKey] = HashSHA256

	pb, err := marshal(payload)
	if err != nil {
		return "", err
	}
	h := in.Header
	if h.Typ == "" {
		h.Typ = TypSDJWT
	}
	if h.Typ == TypKB {
		return "", fmt.Errorf("sdjwt: issuer-signed JWT cannot have typ %q", TypKB)
	}
	jwt, err := jws.Sign(s, h, pb)
	if err != nil {
		return "", fmt.Errorf("sdjwt: couldn't sign: %w", err)
	}
	out.WriteString(jwt)
	out.WriteByte('~')
	for _, d := range discs {
		out.WriteString(d)
		out.WriteByte('~')
	}
	return out.String(), nil
}

func newDisclosure(rand io.Reader, name string, value any) (string, error) {
	var salt [saltSize]byte
	if _, err := io.ReadFull(rand, salt[:]); err != nil {
		return "", fmt.Errorf("sdjwt: couldn't read randomness: %w", err)
	}
	b, err := marshal([]any{b64.EncodeToString(salt[:]), name, value})
	if err != nil {
		return "", fmt.Errorf("sdjwt: claim %q: %w", name, err)
	}
	return b64.EncodeToString(b), nil
}

// marshal is json.Marshal without HTML escaping, which only obscures values.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
