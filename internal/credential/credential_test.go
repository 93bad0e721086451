package credential_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imi-city/imi/internal/credential"
	"github.com/imi-city/imi/internal/jws"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/sdjwt"
)

// want checks a result's verdict and what every verdict must hold: claims
// only when Valid, a message in both languages otherwise.
func want(t *testing.T, r *credential.Result, outcome credential.Outcome, reason string) {
	t.Helper()
	if r.Outcome != outcome || r.Reason != reason {
		t.Fatalf("got %s/%q (%s), want %s/%q", r.Outcome, r.Reason, r.Detail, outcome, reason)
	}
	if r.Message == "" || r.MessageZH == "" {
		t.Errorf("message %q / %q: want both", r.Message, r.MessageZH)
	}
	if outcome != credential.Valid && (r.Claims != nil || r.Disclosed != nil) {
		t.Errorf("%s result carries claims %v (disclosed %v)", outcome, r.Claims, r.Disclosed)
	}
}

var threeClaims = []string{"age_over_18", "family_name", "registered_address"}

// presentIdentity issues a resident identity credential to a resident born
// in 1990 and presents three claims of it, an hour later.
func presentIdentity(w *world) (*credential.Issued, string) {
	is := w.issueIdentity(1990)
	w.now = w.now.Add(time.Hour)
	return is, w.present(is.SDJWT, threeClaims, aud, nonce)
}

func TestValid(t *testing.T) {
	w := newWorld(t)
	is, pres := presentIdentity(w)
	if n := strings.Count(is.SDJWT, "~") - 1; n != 9 {
		t.Fatalf("issued credential has %d disclosures, want the 9 claims of %s", n, credential.TypeResidentIdentity)
	}
	r := w.verify(pres)
	want(t, r, credential.Valid, "")
	if !slices.Equal(r.Disclosed, threeClaims) {
		t.Errorf("disclosed %v, want %v", r.Disclosed, threeClaims)
	}
	if got := personal(r.Claims); !slices.Equal(got, threeClaims) {
		t.Errorf("claims %v, want exactly %v", got, threeClaims)
	}
	if r.Claims["family_name"] != "王" || r.Claims["age_over_18"] != true || r.Claims["registered_address"] != "北京市朝阳区建国路88号" {
		t.Errorf("claim values %v", r.Claims)
	}
	if r.Type != credential.TypeResidentIdentity || r.Issuer != psb || r.IssuerDID != is.IssuerDID ||
		r.IssuedAt == nil || !r.IssuedAt.Equal(is.IssuedAt) || r.ExpiresAt == nil || !r.ExpiresAt.Equal(is.ExpiresAt) {
		t.Errorf("result %+v does not describe %+v", r, is)
	}
}

func TestAgeOver60(t *testing.T) {
	for _, tc := range []struct {
		year    int
		over60  bool
		wantExp time.Time
	}{
		// Born 1950: both flags stay true; the type's maximum applies.
		{1950, true, t0.Add(3660 * 24 * time.Hour)},
		// Born 1990: the 60th birthday is past the type's maximum.
		{1990, false, t0.Add(3660 * 24 * time.Hour)},
		// Born 1970: "not over 60" becomes wrong on the 60th birthday,
		// before the type's maximum, so the credential expires then.
		{1970, false, time.Date(2030, 5, 17, 0, 0, 0, 0, time.UTC)},
	} {
		w := newWorld(t)
		is := w.issueIdentity(tc.year)
		if !is.ExpiresAt.Equal(tc.wantExp) {
			t.Errorf("born %d: expires %v, want %v", tc.year, is.ExpiresAt, tc.wantExp)
		}
		r := w.verify(w.present(is.SDJWT, []string{"age_over_18", "age_over_60"}, aud, nonce))
		want(t, r, credential.Valid, "")
		if r.Claims["age_over_60"] != tc.over60 || r.Claims["age_over_18"] != true {
			t.Errorf("born %d: age_over_60 %v, age_over_18 %v; want %v, true", tc.year, r.Claims["age_over_60"], r.Claims["age_over_18"], tc.over60)
		}
	}
}

func TestIssueInconsistentWithIDNumber(t *testing.T) {
	for name, change := range map[string]func(c map[string]any){
		"birth_date": func(c map[string]any) { c["birth_date"] = "1990-05-18" },
		"sex":        func(c map[string]any) { c["sex"] = "female" },
	} {
		w := newWorld(t)
		c := identityClaims(t, 1990, 5, 17)
		change(c)
		_, err := w.issuer(credential.TypeResidentIdentity).Issue(context.Background(), w.sub, c, 0)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s inconsistent with the ID number: error %v", name, err)
		}
		if n := len(w.l.entries); n != 0 {
			t.Errorf("%s: %d status entries reserved for a refused credential", name, n)
		}
	}
}

func TestKeyNotInDIDDocument(t *testing.T) {
	w := newWorld(t)
	iss := w.issuer(credential.TypeResidentIdentity)
	iss.Authority.KeyVersion = 9 // kid "<did>#key-9"
	is, err := iss.Issue(context.Background(), w.sub, identityClaims(t, 1990, 5, 17), 0)
	if err != nil {
		t.Fatal(err)
	}
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Invalid, credential.ReasonKeyUnknown)
}

func TestKeyRotatedBeforeIssuance(t *testing.T) {
	w := newWorld(t)
	stale := w.issuer(credential.TypeResidentIdentity) // holds key 1
	w.l.rotate(psb, mustKey(t, "psb/key-2").Public())
	w.now = w.now.Add(time.Hour) // iat after key 1's Until
	is, err := stale.Issue(context.Background(), w.sub, identityClaims(t, 1990, 5, 17), 0)
	if err != nil {
		t.Fatal(err)
	}
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Invalid, credential.ReasonKeyNotInForce)
}

func TestIssuedBeforeRotationStillValid(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	w.now = w.now.Add(time.Minute)
	w.l.rotate(psb, mustKey(t, "psb/key-2").Public())
	w.now = w.now.Add(time.Hour)
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Valid, "")
}

func TestIssuerRemoved(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	w.l.remove(psb)
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Invalid, credential.ReasonIssuerRemoved)
}

func TestIssuerUnknown(t *testing.T) {
	w := newWorld(t)
	iss := w.issuer(credential.TypeResidentIdentity)
	iss.Authority.DID = w.sub.DID // a DID the ledger has no authority for
	is, err := iss.Issue(context.Background(), w.sub, identityClaims(t, 1990, 5, 17), 0)
	if err != nil {
		t.Fatal(err)
	}
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Invalid, credential.ReasonIssuerUnknown)
}

func TestStatusEntryOfAnotherType(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	w.l.update(is, func(e *ledger.StatusEntry) { e.Type = credential.TypeHouseholdRegistration })
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Invalid, credential.ReasonStatusEntry)
}

func TestStatusEntryOfAnotherKeyVersion(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	w.l.update(is, func(e *ledger.StatusEntry) { e.KeyVersion = 2 })
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Invalid, credential.ReasonStatusEntry)
}

func TestStatusURIOfAnotherIssuer(t *testing.T) {
	w := newWorld(t)
	iss := w.issuer(credential.TypeResidentIdentity)
	// The entry exists at hrss under the same list and index; the
	// credential must still not be able to borrow it.
	iss.Authority.ID = hrss
	iss.Reserve = func(_ context.Context, list, idx uint32) error {
		return w.l.reserve(hrss, credential.TypeResidentIdentity, list, idx)
	}
	is, err := iss.Issue(context.Background(), w.sub, identityClaims(t, 1990, 5, 17), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(is.StatusURI, "/hrss/") {
		t.Fatalf("status uri %s", is.StatusURI)
	}
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Invalid, credential.ReasonStatusEntry)
}

func TestStatusEntryMissing(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	w.l.mu.Lock()
	delete(w.l.entries, entryKey{psb, listOf(is), is.StatusIdx})
	w.l.mu.Unlock()
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Invalid, credential.ReasonStatusEntry)
}

func TestRevoked(t *testing.T) {
	w := newWorld(t)
	is, pres := presentIdentity(w)
	w.l.setStatus(is, ledger.StatusInvalid)
	r := w.verify(pres)
	want(t, r, credential.Revoked, "")
	if r.Type != credential.TypeResidentIdentity || r.Issuer != psb {
		t.Errorf("revoked result names type %q issuer %q", r.Type, r.Issuer)
	}
}

func TestSuspendedThenUnsuspended(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	w.l.setStatus(is, ledger.StatusSuspended)
	want(t, w.verifyNonce(w.present(is.SDJWT, threeClaims, aud, "n-1"), "n-1"), credential.Suspended, "")
	w.l.setStatus(is, ledger.StatusValid)
	want(t, w.verifyNonce(w.present(is.SDJWT, threeClaims, aud, "n-2"), "n-2"), credential.Valid, "")
}

// verifyNonce verifies a presentation the verifier requested with nonce n.
func (w *world) verifyNonce(pres, n string) *credential.Result {
	p := w.policy()
	p.Nonce = n
	return credential.Verify(w.l, pres, p)
}

func TestLedgerStale(t *testing.T) {
	w := newWorld(t)
	is, pres := presentIdentity(w)
	// Revoked on a chain the node has not caught up with: the node must
	// not claim to know, in either direction.
	w.l.setStatus(is, ledger.StatusInvalid)
	w.l.lag = credential.DefaultMaxStatusAge + time.Second
	r := w.verify(pres)
	want(t, r, credential.StatusUndetermined, credential.ReasonLedgerStale)
	w.l.setStatus(is, ledger.StatusValid)
	pres3 := w.present(is.SDJWT, threeClaims, aud, "n-3")
	r = w.verifyNonce(pres3, "n-3")
	want(t, r, credential.StatusUndetermined, credential.ReasonLedgerStale)
	// Once the node has caught up, the same presentation can be sent again:
	// an undetermined answer gave nothing away, so it did not use the nonce.
	w.l.lag = 0
	want(t, w.verifyNonce(pres3, "n-3"), credential.Valid, "")
}

func TestStatusValueUnknown(t *testing.T) {
	w := newWorld(t)
	is, pres := presentIdentity(w)
	w.l.setStatus(is, 3)
	want(t, w.verify(pres), credential.StatusUndetermined, credential.ReasonStatusUnknown)
}

func TestExpired(t *testing.T) {
	w := newWorld(t)
	is, err := w.issuer(credential.TypeResidentIdentity).Issue(context.Background(), w.sub, identityClaims(t, 1990, 5, 17), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w.now = is.ExpiresAt.Add(sdjwt.DefaultSkew + time.Second)
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, nonce)), credential.Invalid, sdjwt.ReasonExpired)
}

func TestNonceReplayed(t *testing.T) {
	w := newWorld(t)
	_, pres := presentIdentity(w)
	want(t, w.verify(pres), credential.Valid, "")
	w.now = w.now.Add(30 * time.Second)
	want(t, w.verify(pres), credential.Invalid, credential.ReasonNonceReplayed)
}

func TestWrongAudience(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	want(t, w.verify(w.present(is.SDJWT, threeClaims, "https://other.example", nonce)), credential.Invalid, sdjwt.ReasonAudMismatch)
}

func TestWrongNonce(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	want(t, w.verify(w.present(is.SDJWT, threeClaims, aud, "another-request")), credential.Invalid, sdjwt.ReasonNonceMismatch)
}

func TestKeyBindingStripped(t *testing.T) {
	w := newWorld(t)
	_, pres := presentIdentity(w)
	stripped := pres[:strings.LastIndexByte(pres, '~')+1]
	want(t, w.verify(stripped), credential.Invalid, sdjwt.ReasonKeyBindingRequired)
}

func TestTamperedDisclosure(t *testing.T) {
	w := newWorld(t)
	_, pres := presentIdentity(w)
	parts := strings.Split(pres, "~")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`["c2FsdHNhbHRzYWx0c2FsdA","family_name","李"]`))
	for name, p := range map[string]string{
		"replaced, same key binding": strings.Join(slices.Concat(parts[:1], []string{forged}, parts[2:]), "~"),
		// The holder re-binds: sd_hash now matches, the digest still does not.
		"replaced, re-bound": w.bind(strings.Join(slices.Concat(parts[:1], []string{forged}, parts[2:len(parts)-1]), "~")+"~", aud, nonce),
	} {
		r := w.verify(p)
		if r.Outcome != credential.Invalid || r.Claims != nil {
			t.Errorf("%s: %s/%s with claims %v, want invalid and none", name, r.Outcome, r.Reason, r.Claims)
		}
		want(t, r, credential.Invalid, sdjwt.ReasonUnreferencedDisclosure)
	}
}

// withIssuerJWT replaces the issuer-signed JWT of a presentation and binds
// the result afresh, so only the JWT is wrong.
func (w *world) withIssuerJWT(pres, jwt string) string {
	_, rest, _ := strings.Cut(pres, "~")
	disclosures := rest[:strings.LastIndexByte(rest, '~')+1]
	return w.bind(jwt+"~"+disclosures, aud, nonce)
}

func TestAlgorithmNotAllowed(t *testing.T) {
	w := newWorld(t)
	is, pres := presentIdentity(w)
	payload := payloadOf(t, is.SDJWT)
	kid := credential.KeyID(w.authority(psb), 1)
	pub := w.keys[psb].Public().Bytes()
	for alg, sign := range map[string]func([]byte) []byte{
		"none": func([]byte) []byte { return nil },
		// HS256 keyed with the issuer's public key: the classic confusion.
		"HS256": func(in []byte) []byte { m := hmac.New(sha256.New, pub); m.Write(in); return m.Sum(nil) },
	} {
		t.Run(alg, func(t *testing.T) {
			jwt := craftJWT(t, map[string]any{"alg": alg, "typ": sdjwt.TypSDJWT, "kid": kid}, payload, sign)
			want(t, w.verify(w.withIssuerJWT(pres, jwt)), credential.Invalid, sdjwt.ReasonAlgNotAllowed)
		})
	}
}

func TestJWKHeader(t *testing.T) {
	w := newWorld(t)
	is, pres := presentIdentity(w)
	attacker := ed25519Priv("attacker")
	jwk, _ := jws.PublicJWK(attacker.Public())
	header := map[string]any{"alg": jws.EdDSA, "typ": sdjwt.TypSDJWT, "kid": credential.KeyID(w.authority(psb), 1), "jwk": jwk}
	jwt := craftJWT(t, header, payloadOf(t, is.SDJWT), func(in []byte) []byte { return ed25519.Sign(attacker, in) })
	want(t, w.verify(w.withIssuerJWT(pres, jwt)), credential.Invalid, sdjwt.ReasonMalformed)
}

func TestUndeclaredClaim(t *testing.T) {
	w := newWorld(t)
	sd := w.issueRaw(psb, credential.TypeResidentIdentity, w.keys[psb], map[string]any{"given_name": "建国", "religion": "none"})
	want(t, w.verifyNonce(w.present(sd, []string{"given_name"}, aud, "n-1"), "n-1"), credential.Valid, "")
	want(t, w.verifyNonce(w.present(sd, []string{"given_name", "religion"}, aud, "n-2"), "n-2"), credential.Invalid, credential.ReasonUndeclaredClaim)
}

func TestUndeclaredPlainClaim(t *testing.T) {
	w := newWorld(t)
	// An issuer using another tool leaves a claim plain: every verifier
	// would learn it, whatever the resident chose to disclose.
	sd := w.issueRawWith(psb, credential.TypeResidentIdentity, w.keys[psb], map[string]any{"given_name": "建国"}, map[string]any{"religion": "none"})
	want(t, w.verify(w.present(sd, []string{"given_name"}, aud, nonce)), credential.Invalid, credential.ReasonUndeclaredClaim)
}

func TestDeclaredClaimLeftPlain(t *testing.T) {
	w := newWorld(t)
	// The resident could not withhold family_name: every personal claim
	// must be a disclosure.
	sd := w.issueRawWith(psb, credential.TypeResidentIdentity, w.keys[psb], map[string]any{"given_name": "建国"}, map[string]any{"family_name": "李"})
	want(t, w.verify(w.present(sd, []string{"given_name"}, aud, nonce)), credential.Invalid, credential.ReasonPlainClaim)
}

func TestTypeOfAnotherIssuer(t *testing.T) {
	w := newWorld(t)
	// HRSS signs a resident identity credential on one of its own
	// (social insurance) status entries.
	sd := w.issueRawWith(hrss, credential.TypeSocialInsurance, w.keys[hrss], map[string]any{"given_name": "建国"},
		map[string]any{"vct": credential.VCTPrefix + credential.TypeResidentIdentity})
	want(t, w.verify(w.present(sd, []string{"given_name"}, aud, nonce)), credential.Invalid, credential.ReasonStatusEntry)
}

func TestNonceRememberedAsLongAsKeyBindingAccepted(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	// The resident's clock runs ahead by the whole window the verifier
	// allows, so the KB-JWT stays acceptable for twice the window.
	w.now = w.now.Add(sdjwt.DefaultIATWindow)
	pres := w.present(is.SDJWT, threeClaims, aud, nonce)
	w.now = w.now.Add(-sdjwt.DefaultIATWindow)
	want(t, w.verify(pres), credential.Valid, "")
	for _, after := range []time.Duration{time.Minute, 2*sdjwt.DefaultIATWindow - time.Second, 2 * sdjwt.DefaultIATWindow} {
		t.Run(after.String(), func(t *testing.T) {
			w.now = t0.Add(after)
			want(t, w.verify(pres), credential.Invalid, credential.ReasonNonceReplayed)
		})
	}
}

func TestForgedByResident(t *testing.T) {
	w := newWorld(t)
	// A resident signs a credential that names the PSB as its issuer, with
	// the PSB's kid and a real status entry.
	sd := w.issueRaw(psb, credential.TypeResidentIdentity, w.resident, map[string]any{"given_name": "建国", "age_over_60": true})
	want(t, w.verify(w.present(sd, []string{"age_over_60"}, aud, nonce)), credential.Invalid, sdjwt.ReasonBadSignature)
}

func TestOversized(t *testing.T) {
	w := newWorld(t)
	is := w.issueIdentity(1990)
	jwt, _, _ := strings.Cut(is.SDJWT, "~")
	kb := func(p string) string { return w.bind(p, aud, nonce) }
	nested := base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("[", 40_000)))
	for name, in := range map[string]string{
		"1,000,000 tildes":                       strings.Repeat("~", 1_000_000),
		"10,000 disclosures":                     kb(jwt + "~" + strings.Repeat("WyJzIiwibiIsMV0~", 10_000)),
		"10,000 short disclosures, under 64 KiB": kb(jwt + "~" + strings.Repeat("AA~", 10_000)),
		"100,000 nested [":                       strings.Repeat("[", 100_000),
		"40,000 nested [ in a disclosure":        kb(jwt + "~" + nested + "~"),
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			r := w.verify(in)
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
			want(t, r, credential.Invalid, sdjwt.ReasonTooLarge)
		})
	}
}

// FuzzVerify holds Verify to its contract on any input: no panic, claims
// only with Valid, a message in both languages always.
func FuzzVerify(f *testing.F) {
	w := newWorld(f)
	is := w.issueIdentity(1990)
	pres := w.present(is.SDJWT, threeClaims, aud, nonce)
	f.Add(pres)
	f.Add(is.SDJWT)
	f.Add(strings.Replace(pres, "~", "~~", 1))
	f.Add("~")
	p := w.policy()
	p.Nonces = acceptAll{}
	f.Fuzz(func(t *testing.T, in string) {
		r := credential.Verify(w.l, in, p)
		if r.Message == "" || r.MessageZH == "" {
			t.Errorf("%s/%s without a message", r.Outcome, r.Reason)
		}
		if r.Outcome != credential.Valid && (r.Claims != nil || r.Disclosed != nil) {
			t.Errorf("%s/%s with claims", r.Outcome, r.Reason)
		}
		if r.Outcome == credential.Valid && in != pres {
			// Only re-encodings of the one presentation may verify.
			if got := personal(r.Claims); !slices.Equal(got, threeClaims) {
				t.Errorf("valid with claims %v from %q", got, in)
			}
		}
	})
}

func TestNoncesFullStoreRefuses(t *testing.T) {
	now := t0
	n := credential.NewNonces(2, func() time.Time { return now })
	until := now.Add(10 * time.Minute)
	if !n.Use("a", until) || !n.Use("b", until) {
		t.Fatal("fresh nonces refused")
	}
	if n.Use("a", until) {
		t.Error("a used twice")
	}
	if n.Use("c", until) {
		t.Error("a full store accepted c, so it must have forgotten an unexpired nonce")
	}
}

func TestNoncesForgetExpired(t *testing.T) {
	now := t0
	n := credential.NewNonces(2, func() time.Time { return now })
	if !n.Use("a", now.Add(time.Minute)) || !n.Use("b", now.Add(time.Hour)) {
		t.Fatal("fresh nonces refused")
	}
	now = now.Add(time.Minute) // a expires; b does not
	if !n.Use("c", now.Add(time.Hour)) {
		t.Error("c refused though a had expired")
	}
	if n.Use("b", now.Add(time.Hour)) {
		t.Error("b accepted twice before it expired")
	}
	now = now.Add(time.Hour) // b and c expire
	if !n.Use("b", now.Add(time.Hour)) || !n.Use("d", now.Add(time.Hour)) {
		t.Error("expired nonces were not forgotten")
	}
}
