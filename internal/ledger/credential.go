package ledger

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"

	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/tx"
)

// Credential layer state: credential types, status-list entries and the key
// history of authorities. Claim names live here; claim values never do.
const (
	pCredType  = "ctype/"   // credential type id -> CredentialType
	pVCT       = "vct/"     // vct -> credential type id
	pStatus    = "stalloc/" // issuer/list/index -> StatusEntry
	pStatusSet = "stset/"   // issuer/list/index -> status byte, only while not valid
	pStatusCnt = "stcount/" // issuer/list -> entries allocated
)

// Status-list geometry. A list of 2^20 two-bit entries is 256 KiB before
// compression; a credential's index hides it among up to a million others.
const (
	StatusListSize  = 1 << 20
	MaxStatusLists  = 4096
	MaxReserveBatch = 16
	maxClaims       = 64
	maxValidityDays = 20 * 366
)

// Status values, as the IETF Token Status List defines them.
const (
	StatusValid     byte = 0x00
	StatusInvalid   byte = 0x01 // revoked
	StatusSuspended byte = 0x02
)

var (
	claimNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	vctRe       = regexp.MustCompile(`^(urn:[a-z0-9][a-z0-9-]{0,31}:[A-Za-z0-9_.:/-]{1,160}|https://[A-Za-z0-9_.:/-]{1,180})$`)
	// Claims the SD-JWT VC layer sets itself; a type may not define them.
	reservedClaims = []string{"iss", "sub", "aud", "iat", "nbf", "exp", "jti", "cnf", "vct", "status", "_sd", "_sd_alg"}
)

// PastKey is an authority key that was replaced, with the period it was in
// force: from its own rotation (or the authority's admission) until the next.
type PastKey struct {
	Key     key.Public `json:"key"`
	Version uint64     `json:"version"`
	From    Stamp      `json:"from"`
	Until   Stamp      `json:"until"`
}

// KeyAt returns the key with version v and the period it was in force; Until
// is zero for the current key.
func (a *Authority) KeyAt(v uint64) (PastKey, bool) {
	if v == a.KeyVersion {
		return PastKey{Key: a.Key, Version: v, From: a.KeySince}, true
	}
	for _, p := range a.PastKeys {
		if p.Version == v {
			return p, true
		}
	}
	return PastKey{}, false
}

// CredentialType is a published credential type.
type CredentialType struct {
	tx.RegisterCredentialType
	// Issuer is the authority that last published the type.
	Issuer     string `json:"issuer"`
	Version    uint64 `json:"version"`
	Registered Stamp  `json:"registered"`
}

// Claim returns the spec of claim name.
func (c *CredentialType) Claim(name string) (tx.ClaimSpec, bool) {
	for _, s := range c.Claims {
		if s.Name == name {
			return s, true
		}
	}
	return tx.ClaimSpec{}, false
}

// StatusEntry is one allocated status-list entry. It records which type the
// issuer reserved it for and which of its keys was in force, so a verifier
// can hold a credential to the key of its issuance.
type StatusEntry struct {
	Issuer     string `json:"issuer"`
	List       uint32 `json:"list"`
	Index      uint32 `json:"index"`
	Type       string `json:"type"`
	KeyVersion uint64 `json:"key_version"`
	Reserved   Stamp  `json:"reserved"`
	Status     byte   `json:"status"`
	Changed    Stamp  `json:"changed"`
}

func statusKey(issuer string, list, idx uint32) []byte {
	return fmt.Appendf(nil, "%s%s/%08x/%08x", pStatus, issuer, list, idx)
}

func statusSetKey(issuer string, list, idx uint32) []byte {
	return fmt.Appendf(nil, "%s%s/%08x/%08x", pStatusSet, issuer, list, idx)
}

func statusSetPrefix(issuer string, list uint32) []byte {
	return fmt.Appendf(nil, "%s%s/%08x/", pStatusSet, issuer, list)
}

func statusCountKey(issuer string, list uint32) []byte {
	return fmt.Appendf(nil, "%s%s/%08x", pStatusCnt, issuer, list)
}

func (x *txExec) rotateAuthorityKey(b *tx.RotateAuthorityKey) *Rejection {
	a, rej := x.authority("")
	if rej != nil {
		return rej
	}
	if b.NewKey.IsZero() {
		return reject(CodeInvalidField, "the new key is missing")
	}
	if b.NewKey.Equal(a.Key) || slices.ContainsFunc(a.PastKeys, func(p PastKey) bool { return p.Key.Equal(b.NewKey) }) {
		return reject(CodeInvalidField, "the new key was used before; make a fresh one")
	}
	d := did.FromKey(b.NewKey).String()
	if x.st.get([]byte(pAuthorityBy+d)) != nil || getResident(x.st, d) != nil {
		return reject(CodeDIDExists, "")
	}
	a.PastKeys = append(a.PastKeys, PastKey{Key: a.Key, Version: a.KeyVersion, From: a.KeySince, Until: x.c.at})
	a.Key, a.KeyVersion, a.KeySince = b.NewKey, a.KeyVersion+1, x.c.at
	putAuthority(x.st, a)
	return nil
}

func (x *txExec) registerCredentialType(b *tx.RegisterCredentialType) *Rejection {
	if !credTypeRe.MatchString(b.ID) {
		return reject(CodeInvalidField, "a credential type id is 1-64 lower-case letters, digits and _ . -")
	}
	a, rej := x.authority(RoleIssuerPrefix + b.ID)
	if rej != nil {
		return rej
	}
	if err := checkCredentialType(x.st, b); err != nil {
		return reject(CodeInvalidField, err.Error())
	}
	prev := getRecord[CredentialType](x.st, pCredType+b.ID)
	ct := &CredentialType{RegisterCredentialType: *b, Issuer: a.ID, Version: 1, Registered: x.c.at}
	if prev != nil {
		ct.Version = prev.Version + 1
		x.st.set([]byte(pVCT+prev.VCT), nil)
	}
	putJSON(x.st, []byte(pCredType+b.ID), ct)
	x.st.set([]byte(pVCT+b.VCT), []byte(b.ID))
	return nil
}

// checkCredentialType validates a type definition; genesis uses it too.
func checkCredentialType(st kv, b *tx.RegisterCredentialType) error {
	if !vctRe.MatchString(b.VCT) {
		return fmt.Errorf("vct %q must be a urn: or https:// identifier without spaces", clip(b.VCT))
	}
	if id := st.get([]byte(pVCT + b.VCT)); id != nil && string(id) != b.ID {
		return fmt.Errorf("vct %s already names the type %s", b.VCT, id)
	}
	if !validName(b.NameZH) || !validName(b.NameEN) {
		return fmt.Errorf("a credential type needs a Chinese and an English name of at most %d bytes", maxNameBytes)
	}
	if len(b.Claims) == 0 || len(b.Claims) > maxClaims {
		return fmt.Errorf("a credential type has 1 to %d claims", maxClaims)
	}
	seen := map[string]bool{}
	for _, c := range b.Claims {
		if !claimNameRe.MatchString(c.Name) || slices.Contains(reservedClaims, c.Name) {
			return fmt.Errorf("claim name %q is not allowed (lower-case letters, digits and _; not a JWT or SD-JWT reserved name)", clip(c.Name))
		}
		if seen[c.Name] {
			return fmt.Errorf("claim %s is listed twice", c.Name)
		}
		seen[c.Name] = true
		if !validName(c.NameZH) || !validName(c.NameEN) {
			return fmt.Errorf("claim %s needs a Chinese and an English display name", c.Name)
		}
	}
	if b.MaxValidityDays == 0 || b.MaxValidityDays > maxValidityDays {
		return fmt.Errorf("max_validity_days must be 1 to %d", maxValidityDays)
	}
	return nil
}

func (x *txExec) reserveStatus(b *tx.ReserveStatus) *Rejection {
	a, rej := x.authority(RoleIssuerPrefix + b.Type)
	if rej != nil {
		return rej
	}
	if getRecord[CredentialType](x.st, pCredType+b.Type) == nil {
		return reject(CodeNotFound, "no credential type "+clip(b.Type))
	}
	if b.List >= MaxStatusLists {
		return reject(CodeInvalidField, fmt.Sprintf("status list %d is out of range (0 to %d)", b.List, MaxStatusLists-1))
	}
	if len(b.Indices) == 0 || len(b.Indices) > MaxReserveBatch {
		return reject(CodeInvalidField, fmt.Sprintf("reserve 1 to %d entries at a time", MaxReserveBatch))
	}
	for i, idx := range b.Indices {
		if idx >= StatusListSize {
			return reject(CodeInvalidField, fmt.Sprintf("index %d is out of range (0 to %d)", idx, StatusListSize-1))
		}
		if slices.Contains(b.Indices[:i], idx) || x.st.get(statusKey(a.ID, b.List, idx)) != nil {
			return reject(CodeStatusIndexTaken, fmt.Sprintf("list %d index %d", b.List, idx))
		}
	}
	for _, idx := range b.Indices {
		putJSON(x.st, statusKey(a.ID, b.List, idx), &StatusEntry{
			Issuer: a.ID, List: b.List, Index: idx, Type: b.Type, KeyVersion: a.KeyVersion, Reserved: x.c.at,
		})
	}
	ck := statusCountKey(a.ID, b.List)
	x.st.set(ck, encodeSeq(decodeSeq(x.st.get(ck))+uint64(len(b.Indices))))
	return nil
}

// setStatus moves one of the signer's entries to v. Revocation is final;
// suspension can be lifted. A revoked issuer role does not stop an authority
// from revoking what it issued.
func (x *txExec) setStatus(ref tx.StatusRef, v byte) *Rejection {
	a, rej := x.authority("")
	if rej != nil {
		return rej
	}
	k := statusKey(a.ID, ref.List, ref.Index)
	e := getRecord[StatusEntry](x.st, string(k))
	if e == nil {
		return reject(CodeNotFound, fmt.Sprintf("%s has no status entry at list %d index %d", a.ID, ref.List, ref.Index))
	}
	switch {
	case e.Status == StatusInvalid:
		return reject(CodeStatusFinal, "the credential is already revoked")
	case v == StatusSuspended && e.Status != StatusValid:
		return reject(CodeStatusFinal, "the credential is already suspended")
	case v == StatusValid && e.Status != StatusSuspended:
		return reject(CodeStatusFinal, "the credential is not suspended")
	}
	e.Status, e.Changed = v, x.c.at
	putJSON(x.st, k, e)
	if v == StatusValid {
		x.st.set(statusSetKey(a.ID, ref.List, ref.Index), nil)
	} else {
		x.st.set(statusSetKey(a.ID, ref.List, ref.Index), []byte{v})
	}
	return nil
}

// CredentialTypes lists the published credential types as of height h.
func (a *App) CredentialTypes(h int64) ([]CredentialType, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, 0, err
	}
	var out []CredentialType
	err = v.scan([]byte(pCredType), func(_, val []byte) error {
		var c CredentialType
		if err := tx.Unmarshal(val, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, v.height, err
}

// CredentialType returns one credential type by id.
func (a *App) CredentialType(id string, h int64) (*CredentialType, int64, error) {
	return recordAt[CredentialType](a, pCredType+id, h)
}

// CredentialTypeByVCT returns the credential type a vct names.
func (a *App) CredentialTypeByVCT(vct string, h int64) (*CredentialType, int64, error) {
	a.mu.RLock()
	id := func() []byte {
		defer a.mu.RUnlock()
		v, err := a.at(h)
		if err != nil {
			return nil
		}
		return treeKV{v.t}.get([]byte(pVCT + vct))
	}()
	if id == nil {
		return nil, 0, ErrNotFound
	}
	return a.CredentialType(string(id), h)
}

// AuthorityByDID returns an authority by its DID as of height h, with the
// stamp of its removal if the consortium removed it.
func (a *App) AuthorityByDID(d string, h int64) (*Authority, *Stamp, int64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, nil, 0, err
	}
	st := treeKV{v.t}
	if id := st.get([]byte(pAuthorityBy + d)); id != nil {
		if au := getAuthority(st, string(id)); au != nil {
			return au, nil, v.height, nil
		}
	}
	var gone RemovedAuthority
	if getJSON(st, []byte(pAuthorityGone+d), &gone) {
		return &gone.Authority, &gone.Removed, v.height, nil
	}
	return nil, nil, v.height, ErrNotFound
}

// Status returns one status-list entry as of height h.
func (a *App) Status(issuer string, list, idx uint32, h int64) (*StatusEntry, int64, error) {
	return recordAt[StatusEntry](a, string(statusKey(issuer, list, idx)), h)
}

// StatusList is what a status-list token is made from: the entries of one
// list that are not valid, as of one height.
type StatusList struct {
	Issuer    string
	List      uint32
	Height    int64
	Allocated uint64
	// NotValid maps index to status for every entry that is not valid.
	NotValid map[uint32]byte
}

// StatusListAt reads list of issuer as of height h.
func (a *App) StatusListAt(issuer string, list uint32, h int64) (*StatusList, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(h)
	if err != nil {
		return nil, err
	}
	out := &StatusList{Issuer: issuer, List: list, Height: v.height, NotValid: map[uint32]byte{},
		Allocated: decodeSeq(treeKV{v.t}.get(statusCountKey(issuer, list)))}
	p := statusSetPrefix(issuer, list)
	err = v.scan(p, func(k, val []byte) error {
		var idx uint32
		if _, err := fmt.Sscanf(string(k[len(p):]), "%08x", &idx); err != nil || len(val) != 1 {
			return fmt.Errorf("bad status entry %q", k)
		}
		out.NotValid[idx] = val[0]
		return nil
	})
	return out, err
}

// StatusListFill returns how many entries of each of issuer's lists are
// allocated, lists 0..n-1 where list n-1 is the last one used.
func (a *App) StatusListFill(issuer string) ([]uint64, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, err := a.at(0)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for l := uint32(0); l < MaxStatusLists; l++ {
		b := treeKV{v.t}.get(statusCountKey(issuer, l))
		if b == nil {
			break
		}
		out = append(out, binary.BigEndian.Uint64(b))
	}
	return out, nil
}

// LastBlock is the height and time of the last committed block.
func (a *App) LastBlock() Stamp {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.lastBlock
}

// scan calls f for every key with prefix p, in key order.
func (v view) scan(p []byte, f func(k, val []byte) error) error {
	end := append([]byte(nil), p...)
	end[len(end)-1]++
	it, err := v.t.Iterator(p, end, true)
	if err != nil {
		return err
	}
	defer it.Close()
	for ; it.Valid(); it.Next() {
		if err := f(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}
