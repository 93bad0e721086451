package credential_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/sdjwt"
)

// fakeLedger is an in-memory credential.Ledger. It answers from its latest
// state whatever height is asked, as Verify only asks for the latest (0).
type fakeLedger struct {
	mu      sync.RWMutex
	byDID   map[string]*ledger.Authority
	removed map[string]ledger.RemovedAuthority // by DID
	byVCT   map[string]*ledger.CredentialType
	entries map[entryKey]*ledger.StatusEntry
	height  int64
	// now is the chain's clock; the last block is lag behind it.
	now func() time.Time
	lag time.Duration
}

type entryKey struct {
	issuer    string
	list, idx uint32
}

var _ credential.Ledger = (*fakeLedger)(nil)

func cloneAuthority(a *ledger.Authority) *ledger.Authority {
	c := *a
	c.Roles = slices.Clone(a.Roles)
	c.PastKeys = slices.Clone(a.PastKeys)
	return &c
}

func (f *fakeLedger) AuthorityByDID(d string, _ int64) (*ledger.Authority, *ledger.Stamp, int64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if a, ok := f.byDID[d]; ok {
		return cloneAuthority(a), nil, f.height, nil
	}
	if r, ok := f.removed[d]; ok {
		s := r.Removed
		return cloneAuthority(&r.Authority), &s, f.height, nil
	}
	return nil, nil, f.height, ledger.ErrNotFound
}

func (f *fakeLedger) CredentialTypeByVCT(vct string, _ int64) (*ledger.CredentialType, int64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ct, ok := f.byVCT[vct]
	if !ok {
		return nil, f.height, ledger.ErrNotFound
	}
	c := *ct
	c.Claims = slices.Clone(ct.Claims)
	return &c, f.height, nil
}

func (f *fakeLedger) Status(issuer string, list, idx uint32, _ int64) (*ledger.StatusEntry, int64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e, ok := f.entries[entryKey{issuer, list, idx}]
	if !ok {
		return nil, f.height, ledger.ErrNotFound
	}
	c := *e
	return &c, f.height, nil
}

func (f *fakeLedger) LastBlock() ledger.Stamp {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return ledger.Stamp{Height: f.height, Time: f.now().Add(-f.lag)}
}

// stamp is a new block at the chain's clock. Callers hold mu.
func (f *fakeLedger) stamp() ledger.Stamp {
	f.height++
	return ledger.Stamp{Height: f.height, Time: f.now()}
}

func (f *fakeLedger) authorityByID(id string) *ledger.Authority {
	for _, a := range f.byDID {
		if a.ID == id {
			return a
		}
	}
	return nil
}

// fill and reserve are what an Issuer's Fill and Reserve do against the
// chain: count the entries of each list, and record a reservation with the
// key version in force, as ledger's reserveStatus does.
func (f *fakeLedger) fill(issuer string) []uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []uint64
	for k := range f.entries {
		if k.issuer != issuer {
			continue
		}
		for uint32(len(out)) <= k.list {
			out = append(out, 0)
		}
		out[k.list]++
	}
	return out
}

func (f *fakeLedger) reserve(issuer, typ string, list, idx uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := entryKey{issuer, list, idx}
	if _, taken := f.entries[k]; taken {
		return credential.ErrIndexTaken
	}
	a := f.authorityByID(issuer)
	if a == nil {
		return fmt.Errorf("no authority %s", issuer)
	}
	f.entries[k] = &ledger.StatusEntry{Issuer: issuer, List: list, Index: idx, Type: typ, KeyVersion: a.KeyVersion, Reserved: f.stamp()}
	return nil
}

// update changes the status entry of an issued credential.
func (f *fakeLedger) update(is *credential.Issued, change func(e *ledger.StatusEntry)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := listOf(is)
	e := f.entries[entryKey{is.Issuer, list, is.StatusIdx}]
	change(e)
	e.Changed = f.stamp()
}

func (f *fakeLedger) setStatus(is *credential.Issued, v byte) {
	f.update(is, func(e *ledger.StatusEntry) { e.Status = v })
}

// rotate replaces authority id's key, as ledger's rotateAuthorityKey does.
func (f *fakeLedger) rotate(id string, next key.Public) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.authorityByID(id)
	at := f.stamp()
	a.PastKeys = append(a.PastKeys, ledger.PastKey{Key: a.Key, Version: a.KeyVersion, From: a.KeySince, Until: at})
	a.Key, a.KeyVersion, a.KeySince = next, a.KeyVersion+1, at
}

// remove moves authority id out of the consortium.
func (f *fakeLedger) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.authorityByID(id)
	delete(f.byDID, a.DID)
	f.removed[a.DID] = ledger.RemovedAuthority{Authority: *a, Removed: f.stamp()}
}

// listOf reads the list number back from a status URI ".../<id>/<list>".
func listOf(is *credential.Issued) uint32 {
	list, err := strconv.ParseUint(is.StatusURI[strings.LastIndexByte(is.StatusURI, '/')+1:], 10, 32)
	if err != nil {
		panic("status uri " + is.StatusURI + " does not end in a list number")
	}
	return uint32(list)
}

// The demo district's authorities.
const (
	psb     = "psb"
	hrss    = "hrss"
	hsb     = "hsb"
	utility = "utility"
)

const (
	aud   = "https://clinic.example"
	nonce = "n-4Qd8_zR2wXk"
)

// t0 is the start of every test's clock: authorities joined well before.
var t0 = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

// seed derives a test key seed from a label, so keys are the same every run
// and the TypeScript side can be handed the same key as a JWK.
func seed(label string) []byte {
	s := sha256.Sum256([]byte("imi-test/" + label))
	return s[:]
}

func mustKey(tb testing.TB, label string) key.Private {
	tb.Helper()
	k, err := key.FromSeed(seed(label))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// world is one test's district: a fake ledger with the demo authorities and
// types, one resident, and a clock both issuance and verification read.
type world struct {
	tb       testing.TB
	now      time.Time
	l        *fakeLedger
	keys     map[string]key.Private // current key of each authority
	resident key.Private
	sub      credential.Subject
	nonces   *credential.Nonces
}

func newWorld(tb testing.TB) *world {
	tb.Helper()
	w := &world{tb: tb, now: t0, keys: map[string]key.Private{}}
	w.l = &fakeLedger{
		byDID: map[string]*ledger.Authority{}, removed: map[string]ledger.RemovedAuthority{},
		byVCT: map[string]*ledger.CredentialType{}, entries: map[entryKey]*ledger.StatusEntry{},
		now: func() time.Time { return w.now }, lag: 5 * time.Second, height: 1,
	}
	joined := ledger.Stamp{Height: 1, Time: t0.AddDate(-1, 0, 0)}
	types := credential.DemoTypes(psb, hrss, hsb, utility)
	for _, id := range []string{psb, hrss, hsb, utility} {
		k := mustKey(tb, id+"/key-1")
		w.keys[id] = k
		a := &ledger.Authority{
			ID: id, DID: did.FromKey(k.Public()).String(), NameZH: id + "机构", NameEN: id + " authority",
			Key: k.Public(), Endpoint: "https://" + id + ".imi.example/", Added: joined,
			KeyVersion: 1, KeySince: joined,
		}
		for _, gt := range types {
			if gt.Issuer == id {
				a.Roles = append(a.Roles, ledger.RoleIssuerPrefix+gt.Type.ID)
			}
		}
		w.l.byDID[a.DID] = a
	}
	for _, gt := range types {
		w.l.byVCT[gt.Type.VCT] = &ledger.CredentialType{RegisterCredentialType: gt.Type, Issuer: gt.Issuer, Version: 1, Registered: joined}
	}
	w.resident = mustKey(tb, "resident")
	w.sub = credential.Subject{DID: did.FromKey(w.resident.Public()).String(), Key: w.resident.Public()}
	w.nonces = credential.NewNonces(1000, func() time.Time { return w.now })
	return w
}

func (w *world) authority(id string) *ledger.Authority {
	w.l.mu.RLock()
	defer w.l.mu.RUnlock()
	return cloneAuthority(w.l.authorityByID(id))
}

func (w *world) credType(id string) *ledger.CredentialType {
	ct, _, err := w.l.CredentialTypeByVCT(credential.VCTPrefix+id, 0)
	if err != nil {
		w.tb.Fatal(err)
	}
	return ct
}

// issuer is authority's Issuer of type typ, as it stands on the ledger now.
func (w *world) issuer(typ string) *credential.Issuer {
	ct := w.credType(typ)
	a := w.authority(ct.Issuer)
	return &credential.Issuer{
		Authority: a, Key: w.keys[a.ID], Type: ct,
		Fill: func(context.Context) ([]uint64, error) { return w.l.fill(a.ID), nil },
		Reserve: func(_ context.Context, list, idx uint32) error {
			return w.l.reserve(a.ID, ct.ID, list, idx)
		},
		Now:  func() time.Time { return w.now },
		Rand: rand.Reader,
	}
}

// identityClaims are the claims a registrar enters for a resident born on
// the given day; sex, birth date and the age flags are derived.
func identityClaims(tb testing.TB, year, month, day int) map[string]any {
	tb.Helper()
	n, err := idnumber.Example("110105", year, month, day, 123) // odd sequence: male
	if err != nil {
		tb.Fatal(err)
	}
	return map[string]any{
		"family_name": "王", "given_name": "建国", "ethnicity": "汉族",
		"resident_id_number": n.String(), "registered_address": "北京市朝阳区建国路88号",
		"sex": "male", "birth_date": fmt.Sprintf("%04d-%02d-%02d", year, month, day),
	}
}

func (w *world) issueIdentity(year int) *credential.Issued {
	w.tb.Helper()
	is, err := w.issuer(credential.TypeResidentIdentity).Issue(context.Background(), w.sub, identityClaims(w.tb, year, 5, 17), 0)
	if err != nil {
		w.tb.Fatal(err)
	}
	return is
}

// present discloses names and binds the presentation to aud and nonce with
// the resident's key, at the world's clock.
func (w *world) present(sd string, names []string, aud, nonce string) string {
	w.tb.Helper()
	p, err := sdjwt.Present(sd, names)
	if err != nil {
		w.tb.Fatal(err)
	}
	return w.bind(p, aud, nonce)
}

func (w *world) bind(p, aud, nonce string) string {
	w.tb.Helper()
	out, err := sdjwt.AddKeyBinding(p, credential.Signer(w.resident), aud, nonce, w.now)
	if err != nil {
		w.tb.Fatal(err)
	}
	return out
}

func (w *world) policy() credential.Policy {
	return credential.Policy{Audience: aud, Nonce: nonce, Now: w.now, Nonces: w.nonces}
}

func (w *world) verify(pres string) *credential.Result {
	return credential.Verify(w.l, pres, w.policy())
}

// issueRaw signs an SD-JWT VC with sdjwt directly, for credentials
// credential.Issuer would refuse to make. It reserves a real status entry
// of typ for authority id, so only what the test changes is wrong.
func (w *world) issueRaw(id, typ string, signer key.Private, disclosable map[string]any) string {
	return w.issueRawWith(id, typ, signer, disclosable, nil)
}

// issueRawWith is issueRaw with plain claims added or replaced.
func (w *world) issueRawWith(id, typ string, signer key.Private, disclosable, plain map[string]any) string {
	w.tb.Helper()
	is := w.issuer(typ)
	a := w.authority(id)
	var list, idx uint32
	for idx = 1; w.l.reserve(a.ID, typ, list, idx) != nil; idx++ {
	}
	jwk, err := jws.PublicJWK(w.resident.Public().Ed25519())
	if err != nil {
		w.tb.Fatal(err)
	}
	claims := map[string]any{
		"iss": a.DID, "iat": w.now.Unix(), "exp": w.now.Add(24 * time.Hour).Unix(), "vct": is.Type.VCT,
		"cnf":    map[string]any{"jwk": jwk},
		"status": map[string]any{"status_list": map[string]any{"idx": idx, "uri": credential.StatusURI(a, list)}},
	}
	maps.Copy(claims, plain)
	s, err := sdjwt.Issue(credential.Signer(signer), sdjwt.Issuance{
		Header:      jws.Header{Kid: credential.KeyID(a, a.KeyVersion)},
		Claims:      claims,
		Disclosable: disclosable,
		MinDecoys:   3,
	}, rand.Reader)
	if err != nil {
		w.tb.Fatal(err)
	}
	return s
}

// craftJWT builds a compact JWS from raw header and payload members and the
// given signature, for headers jws.Sign refuses to write.
func craftJWT(tb testing.TB, header, payload map[string]any, sign func(input []byte) []byte) string {
	tb.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
}

// payloadOf decodes the payload of the issuer-signed JWT of an SD-JWT.
func payloadOf(tb testing.TB, sd string) map[string]any {
	tb.Helper()
	jwt, _, _ := strings.Cut(sd, "~")
	_, p, err := jws.ParseClaims(jwt, jws.EdDSA)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// personal returns the claims beyond the plain ones every credential
// carries, that is, what the resident disclosed.
func personal(claims map[string]any) []string {
	plain := map[string]bool{"iss": true, "iat": true, "exp": true, "vct": true, "cnf": true, "status": true}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(claims)) {
		if !plain[k] {
			out = append(out, k)
		}
	}
	return out
}

// ed25519Priv is the crypto/ed25519 form of a test key, for JWKs.
func ed25519Priv(label string) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(seed(label)) }
