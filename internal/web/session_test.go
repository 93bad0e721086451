package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestSignOutWhilePagesLoad: a sign-out in one tab while other tabs load
// pages of the same session must not race (go test -race) or panic; the
// pages either load or say the session ended.
func TestSignOutWhilePagesLoad(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson("周", "敏", "female", 1960, 5, 6)
	var shown []shownPage
	b, _ := residentIn(h, h.clerk(), p, &shown)
	tok := b.anyToken("/me")
	var wg sync.WaitGroup
	codes := make(chan int, 64)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, path := range []string{"/me", "/me/wards", "/me/log", "/me/consents"} {
				res, err := b.c.Get(b.base + path)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				codes <- res.StatusCode
			}
		}()
	}
	res, _ := b.post("/signout", url.Values{"csrf": {tok}})
	wg.Wait()
	close(codes)
	if res.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %d", res.StatusCode)
	}
	for c := range codes {
		if c != http.StatusOK && c != http.StatusUnauthorized && c != http.StatusSeeOther {
			t.Errorf("a page loading during sign-out answered %d", c)
		}
	}
	if res, _ := b.get("/me"); res.StatusCode == http.StatusOK {
		t.Error("the session still works after sign-out")
	}
}

// TestWrongPassphrasesTellNothingAndLockOutNobody: after five wrong tries
// from one client, a number with a wallet and a number without answer
// alike, and the resident can still sign in from elsewhere.
func TestWrongPassphrasesTellNothingAndLockOutNobody(t *testing.T) {
	h := newHarness(t)
	h.portal.cfg.BehindProxy = true
	p := h.newPerson("吴", "刚", "male", 1958, 2, 3)
	rc := h.register(h.clerk(), p)
	nobody := h.number(1961, 7, 8, "female")

	attacker := h.browser()
	attacker.extra = http.Header{"X-Forwarded-For": {"203.0.113.7"}}
	answers := func(n string) []int {
		var out []int
		for i := 0; i < 6; i++ {
			res, _ := attacker.submit("/signin", "/signin", url.Values{"id_number": {n}, "passphrase": {"not it at all"}, "activation": {rc.code}})
			out = append(out, res.StatusCode)
		}
		return out
	}
	got, gotNobody := answers(p.number.String()), answers(nobody.String())
	want := []int{401, 401, 401, 401, 401, 429}
	if !slices.Equal(got, want) || !slices.Equal(gotNobody, want) {
		t.Errorf("six wrong tries: %v for a wallet, %v for none; want both %v", got, gotNobody, want)
	}

	resident := h.browser()
	resident.extra = http.Header{"X-Forwarded-For": {"198.51.100.20"}}
	res, body := resident.submit("/signin", "/signin", url.Values{"id_number": {p.number.String()}, "passphrase": {p.passphrase}, "activation": {rc.code}})
	if res.StatusCode != http.StatusSeeOther {
		t.Errorf("the resident from another address after the attack: %d\n%s", res.StatusCode, body)
	}
}

// TestReviewFixes: a receipt offers no language switch (following it would
// lose the one-time code), and a credential issued while the resident is
// signed in shows on /me without signing in again.
func TestReviewFixes(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson("郑", "洁", "female", 1955, 9, 9)
	var shown []shownPage
	b, rc := residentIn(h, h.clerk(), p, &shown)
	if strings.Contains(rc.body, "?lang=") {
		t.Error("the receipt links to a language switch, which would lose the activation code")
	}
	if _, body := b.get("/me"); strings.Contains(body, "社会保险") {
		t.Fatal("social insurance shown before it was issued")
	}
	issueSocialInsurance(h, h.caseworker(), url.Values{"id_number": {p.number.String()}})
	if _, body := b.get("/me"); !strings.Contains(body, "社会保险") {
		t.Error("a credential issued during the session does not show on /me")
	}
}
