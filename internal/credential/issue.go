package credential

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/sdjwt"
	"github.com/imi-city/imi/internal/statuslist"
)

const (
	// minDecoys hides how many claims a credential type has.
	minDecoys = 3
	// maxValueBytes bounds one claim value; real ones are far shorter.
	maxValueBytes = 512
	// reserveTries bounds the retries when a random index is already taken.
	reserveTries = 8
	// StatusPath is where every node serves status-list tokens:
	// StatusPath + "<issuer id>/<list>".
	StatusPath = "/v1/status-lists/"
)

// ErrIndexTaken is what Issuer.Reserve returns when the ledger refused the
// index as already allocated; Issue then draws another.
var ErrIndexTaken = errors.New("status index already taken")

// Issuer issues one credential type on behalf of one authority. It keeps no
// copy of what it issues.
type Issuer struct {
	Authority *ledger.Authority
	Key       key.Private
	Type      *ledger.CredentialType
	// Fill returns how many entries each of the issuer's status lists holds.
	Fill func(ctx context.Context) ([]uint64, error)
	// Reserve commits a status reservation on the ledger and returns once
	// it is in a block (ErrIndexTaken if the index was taken meanwhile).
	Reserve func(ctx context.Context, list, index uint32) error
	// Now is the issuance time; Rand supplies salts, decoys and indices.
	Now  func() time.Time
	Rand io.Reader
}

// Subject is the resident a credential is issued to, as the ledger lists them.
type Subject struct {
	DID         string
	Key         key.Public
	Deactivated bool
}

// Issued is a freshly issued credential, for handing to the resident.
type Issued struct {
	SDJWT     string    `json:"sd_jwt"`
	Type      string    `json:"type"`
	VCT       string    `json:"vct"`
	Issuer    string    `json:"issuer"`
	IssuerDID string    `json:"issuer_did"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	StatusURI string    `json:"status_uri"`
	StatusIdx uint32    `json:"status_idx"`
}

// KeyID is the DID URL of an authority's key of version v.
func KeyID(a *ledger.Authority, v uint64) string { return fmt.Sprintf("%s#key-%d", a.DID, v) }

// StatusURI is the URL a credential's status points to. The issuer's
// endpoint is its public address; every node serves the same path.
func StatusURI(a *ledger.Authority, list uint32) string {
	return fmt.Sprintf("%s%s%s/%d", strings.TrimSuffix(a.Endpoint, "/"), StatusPath, a.ID, list)
}

// ListOf reads the list number back from a status URI of issuer, as
// StatusURI builds it.
func ListOf(uri, issuer string) (uint32, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return 0, fmt.Errorf("status URI %q: %w", uri, err)
	}
	rest, ok := strings.CutPrefix(u.Path, StatusPath+issuer+"/")
	l, err := strconv.ParseUint(rest, 10, 32)
	if !ok || err != nil || l >= ledger.MaxStatusLists {
		return 0, fmt.Errorf("status URI %q does not name a status list of %s", uri, issuer)
	}
	return uint32(l), nil
}

// Issue validates claims against the type, reserves a random status entry
// on the ledger and signs the SD-JWT VC. Every claim is selectively
// disclosable. validity 0 means the type's maximum.
func (is *Issuer) Issue(ctx context.Context, sub Subject, claims map[string]any, validity time.Duration) (*Issued, error) {
	if sub.Deactivated {
		return nil, fmt.Errorf("%s is deactivated; a credential cannot be issued to it", sub.DID)
	}
	if _, err := did.Parse(sub.DID); err != nil || sub.Key.IsZero() {
		return nil, fmt.Errorf("the subject is not a registered resident DID")
	}
	if !is.Authority.HasRole(ledger.RoleIssuerPrefix + is.Type.ID) {
		return nil, fmt.Errorf("%s may not issue %s", is.Authority.ID, is.Type.ID)
	}
	now := is.Now().UTC().Truncate(time.Second)
	maxValidity := time.Duration(is.Type.MaxValidityDays) * 24 * time.Hour
	if validity <= 0 || validity > maxValidity {
		validity = maxValidity
	}
	exp := now.Add(validity)
	disclosable, until, err := checkClaims(is.Type, claims, now)
	if err != nil {
		return nil, err
	}
	if !until.IsZero() && until.Before(exp) {
		exp = until
	}
	list, idx, err := is.reserve(ctx)
	if err != nil {
		return nil, err
	}
	uri := StatusURI(is.Authority, list)
	ref := statuslist.Reference{Idx: uint64(idx), URI: uri}
	in := sdjwt.Issuance{
		Header: jws.Header{Typ: sdjwt.TypSDJWT, Kid: KeyID(is.Authority, is.Authority.KeyVersion)},
		Claims: map[string]any{
			"iss": is.Authority.DID, "iat": now.Unix(), "exp": exp.Unix(), "vct": is.Type.VCT,
			"cnf":    map[string]any{"jwk": did.NewJWK(sub.Key)},
			"status": map[string]any{"status_list": ref},
		},
		Disclosable: disclosable,
		MinDecoys:   minDecoys,
	}
	s, err := sdjwt.Issue(Signer(is.Key), in, is.Rand)
	if err != nil {
		return nil, fmt.Errorf("couldn't sign the credential: %w", err)
	}
	return &Issued{SDJWT: s, Type: is.Type.ID, VCT: is.Type.VCT, Issuer: is.Authority.ID, IssuerDID: is.Authority.DID,
		IssuedAt: now, ExpiresAt: exp, StatusURI: uri, StatusIdx: idx}, nil
}

// reserve picks the first list less than half full and a random free index
// in it. Half full keeps retries rare and every index hidden among at least
// half a million others.
func (is *Issuer) reserve(ctx context.Context) (uint32, uint32, error) {
	fill, err := is.Fill(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("couldn't read the status lists: %w", err)
	}
	list := uint32(0)
	for list < uint32(len(fill)) && fill[list] >= ledger.StatusListSize/2 {
		list++
	}
	if list >= ledger.MaxStatusLists {
		return 0, 0, errors.New("every status list is full")
	}
	for range reserveTries {
		var b [4]byte
		if _, err := io.ReadFull(is.Rand, b[:]); err != nil {
			return 0, 0, err
		}
		idx := binary.BigEndian.Uint32(b[:]) % ledger.StatusListSize
		switch err := is.Reserve(ctx, list, idx); {
		case err == nil:
			return list, idx, nil
		case errors.Is(err, ErrIndexTaken):
			continue
		default:
			return 0, 0, fmt.Errorf("couldn't reserve a status entry: %w", err)
		}
	}
	return 0, 0, errors.New("couldn't find a free status entry")
}

// checkClaims checks every value against the type and derives what the type
// derives. until, if set, is when a derived claim stops being true, which
// bounds the credential's validity.
func checkClaims(t *ledger.CredentialType, claims map[string]any, now time.Time) (out map[string]any, until time.Time, err error) {
	out = make(map[string]any, len(t.Claims))
	for name, v := range claims {
		if _, ok := t.Claim(name); !ok {
			return nil, until, fmt.Errorf("%s has no claim %q", t.ID, name)
		}
		switch x := v.(type) {
		case string:
			if x == "" || len(x) > maxValueBytes || !utf8.ValidString(x) || strings.ContainsFunc(x, isControl) {
				return nil, until, fmt.Errorf("claim %s: a text of 1 to %d bytes without control characters", name, maxValueBytes)
			}
		case bool, float64, int, int64:
		default:
			return nil, until, fmt.Errorf("claim %s: only text, numbers and yes/no values", name)
		}
		out[name] = v
	}
	if t.ID == TypeResidentIdentity {
		if until, err = deriveIdentity(out, now); err != nil {
			return nil, until, err
		}
	}
	for _, s := range t.Claims {
		if _, ok := out[s.Name]; !ok {
			return nil, until, fmt.Errorf("claim %s (%s) is missing", s.Name, s.NameEN)
		}
	}
	return out, until, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// deriveIdentity checks the ID number against birth date and sex and derives
// age_over_18 and age_over_60, so a service can learn "over 60" without the
// birth date. A "not yet" flag becomes wrong on the birthday, so the
// credential expires then.
func deriveIdentity(c map[string]any, now time.Time) (time.Time, error) {
	var until time.Time
	num, _ := c["resident_id_number"].(string)
	n, err := idnumber.Parse(num)
	if err != nil {
		return until, fmt.Errorf("resident_id_number: %w", err)
	}
	c["resident_id_number"] = n.String()
	y, m, d := n.BirthDate()
	birth := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if bd, ok := c["birth_date"].(string); ok && bd != birth.Format(time.DateOnly) {
		return until, fmt.Errorf("birth_date %s does not match the ID number (%s)", bd, birth.Format(time.DateOnly))
	}
	c["birth_date"] = birth.Format(time.DateOnly)
	sex := "female"
	if (num[16]-'0')%2 == 1 {
		sex = "male"
	}
	if s, ok := c["sex"].(string); ok && s != sex {
		return until, fmt.Errorf("sex %q does not match the ID number (%s)", s, sex)
	}
	c["sex"] = sex
	for _, a := range []int{18, 60} {
		at := birth.AddDate(a, 0, 0)
		over := !now.Before(at)
		c[fmt.Sprintf("age_over_%d", a)] = over
		if !over && (until.IsZero() || at.Before(until)) {
			until = at
		}
	}
	return until, nil
}

// Signer signs JWTs with an IMI key without exposing the private key.
func Signer(k key.Private) jws.Signer { return keySigner{k} }

type keySigner struct{ k key.Private }

func (keySigner) Alg() string                     { return jws.EdDSA }
func (s keySigner) Sign(m []byte) ([]byte, error) { return s.k.Sign(m), nil }
