package credential_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/sdjwt"
	"github.com/imi-city/imi/internal/tsinterop"
)

// These tests run the independent TypeScript implementation
// (@sd-jwt/sd-jwt-vc 0.19.0). Without Node.js they fail: tsinterop.Ensure
// reports it as an error, never a skip.

func tsContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func tsJWK(label string) map[string]any {
	return tsinterop.JWK(ed25519Priv(label).Public().(ed25519.PublicKey))
}

// statusToken is the statuslist+jwt of one of authority id's lists, made
// from the fake ledger's entries by the code a node serves it with.
func (w *world) statusToken(id string, list uint32) (token, uri string) {
	w.tb.Helper()
	l := &ledger.StatusList{Issuer: id, List: list, NotValid: map[uint32]byte{}}
	w.l.mu.RLock()
	for k, e := range w.l.entries {
		if k.issuer == id && k.list == list && e.Status != ledger.StatusValid {
			l.NotValid[k.idx] = e.Status
		}
	}
	w.l.mu.RUnlock()
	a := w.authority(id)
	token, err := credential.StatusToken(a, w.keys[id], l, w.now.Add(-time.Minute), time.Hour, 10*time.Minute)
	if err != nil {
		w.tb.Fatal(err)
	}
	return token, credential.StatusURI(a, list)
}

// normalize makes claims from either side comparable: JSON numbers,
// maps and arrays as encoding/json decodes them.
func normalize(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInteropIMIToTS: IMI issues and presents; the TypeScript verifier
// accepts the presentation with the same claims, and reads IMI's status
// list token.
func TestInteropIMIToTS(t *testing.T) {
	ctx := tsContext(t)
	w := newWorld(t)
	valid := w.issueIdentity(1990)
	revoked := w.issueIdentity(1950)
	w.l.setStatus(revoked, ledger.StatusInvalid)
	w.now = w.now.Add(time.Hour)
	token, uri := w.statusToken(psb, 0)
	if valid.StatusURI != uri || revoked.StatusURI != uri {
		t.Fatalf("status uris %s, %s; token for %s", valid.StatusURI, revoked.StatusURI, uri)
	}
	issuerJWK := tsJWK(psb + "/key-1")

	for _, tc := range []struct {
		name       string
		is         *credential.Issued
		wantStatus int
	}{
		{"valid", valid, int(ledger.StatusValid)},
		{"revoked", revoked, int(ledger.StatusInvalid)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := "n-" + tc.name
			pres := w.present(tc.is.SDJWT, threeClaims, aud, n)
			res, err := tsinterop.Verify(ctx, tsinterop.VerifyRequest{
				SDJWT: pres, IssuerJWK: issuerJWK, RequireKeyBinding: true, Aud: aud, Nonce: n,
				RequiredClaims: threeClaims, StatusListToken: token, Now: w.now.Unix(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK {
				t.Fatalf("TypeScript refused IMI's presentation: %s", res.Error)
			}
			if res.Status == nil || *res.Status != tc.wantStatus {
				t.Errorf("TypeScript read status %v from IMI's token, want %d", res.Status, tc.wantStatus)
			}
			st, err := tsinterop.Status(ctx, tsinterop.StatusRequest{Token: token, IssuerJWK: issuerJWK, Idx: int(tc.is.StatusIdx), Now: w.now.Unix()})
			if err != nil {
				t.Fatal(err)
			}
			if !st.OK || st.Status != tc.wantStatus || st.Bits != 2 {
				t.Errorf("status.mjs: %+v, want status %d bits 2", st, tc.wantStatus)
			}

			r := w.verifyNonce(pres, n)
			if tc.wantStatus == int(ledger.StatusInvalid) {
				want(t, r, credential.Revoked, "")
				return
			}
			want(t, r, credential.Valid, "")
			if got, imi := normalize(t, res.Claims), normalize(t, r.Claims); !reflect.DeepEqual(got, imi) {
				t.Errorf("claims differ\nTypeScript: %v\nIMI:        %v", got, imi)
			}
		})
	}
}

// TestInteropTSHolder: IMI issues, the TypeScript library presents as the
// resident's wallet, IMI verifies.
func TestInteropTSHolder(t *testing.T) {
	ctx := tsContext(t)
	w := newWorld(t)
	is := w.issueIdentity(1990)
	w.now = w.now.Add(time.Hour)
	chosen := []string{"age_over_60", "given_name", "resident_id_number"}
	pres, err := tsinterop.Present(ctx, tsinterop.PresentRequest{
		SDJWT: is.SDJWT, HolderPrivateJWK: tsinterop.PrivateJWK(ed25519Priv("resident")),
		Disclose: chosen, Aud: aud, Nonce: nonce, IAT: w.now.Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := w.verify(pres)
	want(t, r, credential.Valid, "")
	if !slices.Equal(r.Disclosed, chosen) || !slices.Equal(personal(r.Claims), chosen) {
		t.Errorf("disclosed %v, claims %v; want exactly %v", r.Disclosed, personal(r.Claims), chosen)
	}
	if r.Claims["age_over_60"] != false || r.Claims["given_name"] != "建国" {
		t.Errorf("claims %v", r.Claims)
	}

	// Tampered: one disclosure dropped after the resident signed; then one
	// swapped for a disclosure of the same credential the resident did not
	// choose.
	parts := strings.Split(pres, "~")
	dropped := strings.Join(slices.Concat(parts[:1], parts[2:]), "~")
	want(t, w.verifyNonce(dropped, nonce), credential.Invalid, sdjwt.ReasonSDHashMismatch)
	all := strings.Split(is.SDJWT, "~")
	var other string
	for _, d := range all[1 : len(all)-1] {
		if !slices.Contains(parts, d) {
			other = d
			break
		}
	}
	swapped := strings.Join(slices.Concat(parts[:1], []string{other}, parts[2:]), "~")
	want(t, w.verifyNonce(swapped, nonce), credential.Invalid, sdjwt.ReasonSDHashMismatch)
}

// TestInteropTSIssuer: a credential the TypeScript library issues with the
// PSB's key, kid, vct and a status entry on the ledger verifies in IMI.
func TestInteropTSIssuer(t *testing.T) {
	ctx := tsContext(t)
	w := newWorld(t)
	a := w.authority(psb)
	const idx = 4242
	if err := w.l.reserve(psb, credential.TypeResidentIdentity, 0, idx); err != nil {
		t.Fatal(err)
	}
	claims := identityClaims(t, 1990, 5, 17)
	claims["age_over_18"], claims["age_over_60"] = true, false
	disclosable := slices.Sorted(func(yield func(string) bool) {
		for k := range claims {
			if !yield(k) {
				return
			}
		}
	})
	sd, err := tsinterop.Issue(ctx, tsinterop.IssueRequest{
		IssuerPrivateJWK: tsinterop.PrivateJWK(ed25519Priv(psb + "/key-1")),
		Iss:              a.DID, Kid: credential.KeyID(a, a.KeyVersion), Vct: credential.VCTPrefix + credential.TypeResidentIdentity,
		HolderJWK: tsJWK("resident"), Claims: claims, Disclosable: disclosable,
		IAT: w.now.Unix(), Exp: w.now.AddDate(1, 0, 0).Unix(),
		StatusURI: credential.StatusURI(a, 0), StatusIdx: idx,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.now = w.now.Add(time.Hour)
	r := w.verify(w.present(sd, threeClaims, aud, nonce))
	want(t, r, credential.Valid, "")
	if !slices.Equal(personal(r.Claims), threeClaims) || r.Claims["family_name"] != "王" {
		t.Errorf("claims %v, want %v", r.Claims, threeClaims)
	}

	// The same credential from the TypeScript issuer, revoked on the ledger.
	w.l.mu.Lock()
	w.l.entries[entryKey{psb, 0, idx}].Status = ledger.StatusInvalid
	w.l.mu.Unlock()
	want(t, w.verifyNonce(w.present(sd, threeClaims, aud, "n-2"), "n-2"), credential.Revoked, "")
}
