package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/pseudonym"
	"github.com/imi-city/imi/internal/tx"
)

// ReadRequest is a back-office read: the reader names the resident by its own
// pseudonym for them, the service and the claims. Who the reader is comes
// from the request's signature, never from the body.
type ReadRequest struct {
	ID      tx.Bytes      `json:"id"`
	Subject string        `json:"subject"`
	Service string        `json:"service"`
	Claims  []tx.ClaimRef `json:"claims"`
}

// PackageType is the JWS typ of a released package.
const PackageType = "imi-release+jwt"

func registryKey(authority, d, typ string) string { return "reg/" + authority + "/" + d + "/" + typ }

// PutRecord stores what authority holds of type typ about resident d, the
// data of record it releases under consent. Only the type's issuer keeps it.
func (d *Desk) PutRecord(authority, resident, typ string, claims map[string]any) error {
	if !d.Holds(authority) {
		return ErrNotHere
	}
	ct, _, err := d.app.CredentialType(typ, 0)
	if err != nil || ct.Issuer != authority {
		return fmt.Errorf("%s does not issue %q", authority, typ)
	}
	if _, _, err := d.app.ResidentRecord(resident, 0); err != nil {
		return fmt.Errorf("%s is not a registered resident", resident)
	}
	for name := range claims {
		if _, ok := ct.Claim(name); !ok {
			return fmt.Errorf("the type %s has no claim %q", typ, name)
		}
	}
	b, err := json.Marshal(claims)
	if err != nil {
		return err
	}
	return d.store.Put(registryKey(authority, resident, typ), b)
}

func (d *Desk) record(authority, resident, typ string) (map[string]any, error) {
	b, err := d.store.Get(registryKey(authority, resident, typ))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// Read answers a back-office read of reader at this node's source
// authority. It judges the request against the ledger's latest block,
// records the access (allowed or denied) and waits for that record to commit
// before releasing anything; the package is signed by the source.
func (d *Desk) Read(ctx context.Context, reader, source string, req *ReadRequest) (string, error) {
	if !d.Holds(source) {
		return "", ErrNotHere
	}
	if len(req.ID) < 16 || len(req.ID) > 32 {
		return "", errors.New("a request id is 16 to 32 random bytes")
	}
	if _, err := pseudonym.Parse(req.Subject); err != nil {
		return "", err
	}
	if len(req.Claims) == 0 || len(req.Claims) > 64 || !strictlySorted(req.Claims) {
		return "", errors.New("ask for 1 to 64 distinct claims, sorted by type and claim")
	}
	if _, _, err := d.app.Service(req.Service, 0); err != nil {
		return "", fmt.Errorf("no service %q", req.Service)
	}
	// Everything the ledger checks of a record is checked here first: a
	// record it refuses sinks the whole batch it travels in, and with it
	// other readers' reads and the authority's own submissions.
	if reader == source {
		return "", errors.New("a back-office read is made by another authority than the source")
	}
	if _, err := d.authorityDID(reader); err != nil {
		return "", err
	}
	for _, c := range req.Claims {
		ct, _, err := d.app.CredentialType(c.Type, 0)
		if err != nil {
			return "", fmt.Errorf("no credential type %q", c.Type)
		}
		if _, ok := ct.Claim(c.Claim); !ok {
			return "", fmt.Errorf("the type %s has no claim %q", c.Type, c.Claim)
		}
	}
	rec := tx.AccessRecord{ID: req.ID, Subject: req.Subject, Reader: reader, Source: source, Service: req.Service,
		Claims: req.Claims, Channel: tx.ChannelBackOffice, Outcome: tx.OutcomeAllowed}
	dec, err := d.app.CheckAccess(&rec)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrLedgerBusy, err)
	}
	why := dec.Reason
	var values map[string]any
	if why == "" {
		boxes, _, err := d.app.ConsentBoxes(req.Subject, req.Service, dec.Height)
		if err != nil {
			why = ledger.DenySubjectUnknown
		} else if s, w := d.openSubject(source, req.Subject, req.Service, boxes, dec.Consent.ByGuardian != ""); w != "" {
			why = w
		} else if values, err = d.gather(source, s.DID, req.Claims); err != nil {
			return "", err
		}
	}
	if why != "" {
		rec.Outcome, rec.Reason = tx.OutcomeDenied, why
	}
	stored, err := d.recordOne(ctx, source, rec)
	if err != nil {
		return "", err
	}
	if stored.Outcome != tx.OutcomeAllowed {
		return "", &Denied{Reason: stored.Reason, Record: stored}
	}
	return d.sign(source, reader, stored, values)
}

func strictlySorted(cs []tx.ClaimRef) bool {
	for i := 1; i < len(cs); i++ {
		if cs[i-1].Compare(cs[i]) >= 0 {
			return false
		}
	}
	return true
}

// gather reads the requested claims from the source's register.
func (d *Desk) gather(source, resident string, claims []tx.ClaimRef) (map[string]any, error) {
	out := map[string]any{}
	for _, c := range claims {
		m, err := d.record(source, resident, c.Type)
		if errors.Is(err, ErrNoRecord) {
			return nil, ErrNotAvailable
		} else if err != nil {
			return nil, err
		}
		v, ok := m[c.Claim]
		if !ok {
			return nil, ErrNotAvailable
		}
		out[c.String()] = v
	}
	return out, nil
}

// sign makes the released package: a JWS by the source over the values,
// the access record's id and the height at which it committed.
func (d *Desk) sign(source, reader string, a *ledger.Access, values map[string]any) (string, error) {
	src, _, err := d.app.Authority(source, 0)
	if err != nil {
		return "", fmt.Errorf("authority %s: %w", source, err)
	}
	aud, err := d.authorityDID(reader)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(map[string]any{
		"iss": src.DID, "aud": aud, "iat": d.now().Unix(),
		"request": a.ID, "subject": a.Subject, "service": a.Service, "consent": a.Consent,
		"height": a.At.Height, "claims": values,
	})
	if err != nil {
		return "", err
	}
	return jws.Sign(credential.Signer(d.keys[source]), jws.Header{Typ: PackageType, Kid: credential.KeyID(src, src.KeyVersion)}, payload)
}

// Release is what a source signs when it releases claims to a reader.
type Release struct {
	Issuer   string         `json:"iss"`
	Audience string         `json:"aud"`
	IssuedAt int64          `json:"iat"`
	Request  string         `json:"request"`
	Subject  string         `json:"subject"`
	Service  string         `json:"service"`
	Consent  string         `json:"consent"`
	Height   int64          `json:"height"`
	Claims   map[string]any `json:"claims"`
}

// OpenRelease checks a released package: signed by a key the ledger lists
// for src (of the version its kid names) and addressed from src to reader.
// Without it, a node between the two could hand over values nobody vouches
// for. The caller still checks that it answers its own request.
func OpenRelease(pkg string, src, reader *ledger.Authority) (*Release, error) {
	j, err := jws.Parse(pkg, jws.EdDSA)
	if err != nil {
		return nil, fmt.Errorf("the released package is malformed: %w", err)
	}
	if j.Header.Typ != PackageType {
		return nil, fmt.Errorf("the released package has type %q, not %q", j.Header.Typ, PackageType)
	}
	rest, ok := strings.CutPrefix(j.Header.Kid, src.DID+"#key-")
	v, err := strconv.ParseUint(rest, 10, 64)
	if !ok || err != nil {
		return nil, fmt.Errorf("the released package is not signed by a key of %s (kid %q)", src.ID, j.Header.Kid)
	}
	pk, ok := src.KeyAt(v)
	if !ok {
		return nil, fmt.Errorf("the ledger lists no key %d of %s", v, src.ID)
	}
	if err := j.Verify(pk.Key.Ed25519()); err != nil {
		return nil, fmt.Errorf("the released package's signature does not verify with %s's key: %w", src.ID, err)
	}
	var r Release
	if err := tx.Unmarshal(j.Payload, &r); err != nil {
		return nil, fmt.Errorf("the released package is malformed: %w", err)
	}
	if r.Issuer != src.DID || r.Audience != reader.DID {
		return nil, fmt.Errorf("the released package is from %s to %s, not from %s to %s", r.Issuer, r.Audience, src.DID, reader.DID)
	}
	return &r, nil
}
