package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestResidentChangesPassphrase(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson("孙", "丽", "female", 1957, 4, 4)
	var shown []shownPage
	b, _ := residentIn(h, h.clerk(), p, &shown)
	next := "一个全新的密码 2026"
	for _, c := range []struct {
		form url.Values
		code int
		want string
	}{
		{url.Values{"current": {p.passphrase}, "new": {"短"}, "new2": {"短"}}, 400, "至少需要8个字符"},
		{url.Values{"current": {p.passphrase}, "new": {next}, "new2": {next + "x"}}, 400, "不一致"},
		{url.Values{"current": {p.passphrase}, "new": {p.passphrase}, "new2": {p.passphrase}}, 400, "相同"},
		{url.Values{"current": {"not my passphrase"}, "new": {next}, "new2": {next}}, 401, "当前密码不正确"},
	} {
		res, body := b.submit("/me/passphrase", "/me/passphrase", c.form)
		if res.StatusCode != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%v: %d, want %d saying %q", c.form, res.StatusCode, c.code, c.want)
		}
	}
	// Refused changes changed nothing: the old passphrase still opens.
	if _, err := h.unlock(p, ""); err != nil {
		t.Fatalf("after refused changes the passphrase no longer opens: %v", err)
	}
	res, _ := b.submit("/me/passphrase", "/me/passphrase", url.Values{"current": {p.passphrase}, "new": {next}, "new2": {next}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the change: %d", res.StatusCode)
	}
	if _, body := b.get("/me"); !strings.Contains(body, "密码已修改") {
		t.Error("the session did not go on after the change, or said nothing")
	}
	if _, err := h.unlock(p, ""); err == nil {
		t.Error("the old passphrase still opens the wallet")
	}
	p.passphrase = next
	if _, err := h.unlock(p, ""); err != nil {
		t.Errorf("the new passphrase does not open the wallet: %v", err)
	}
	checkLogSaysNothingPersonal(t, h, next)
}

func TestResidentErasesWallet(t *testing.T) {
	h := newHarness(t)
	p := h.newPerson("钱", "芳", "female", 1956, 6, 16)
	clerk := h.clerk()
	b, _ := consoleResident(h, clerk, p)
	issueSocialInsurance(h, h.caseworker(), url.Values{"id_number": {p.number.String()}})
	applyForPension(h, b)

	// A consent in force: erasing would make it impossible to withdraw.
	if _, body := b.get("/me/erase"); !strings.Contains(body, "还有有效的授权") || strings.Contains(body, `action="/me/erase"`) {
		t.Error("the erase page offers the form while a consent is in force")
	}
	res, body := b.submit("/me/consents", "/me/consents/revoke", url.Values{"service": {"pension_application"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("withdrawing: %d\n%s", res.StatusCode, body)
	}
	for _, c := range []struct {
		form url.Values
		code int
		want string
	}{
		{url.Values{"passphrase": {p.passphrase}}, 400, "请勾选确认"},
		{url.Values{"passphrase": {"not it"}, "understood": {"yes"}}, 401, "当前密码不正确"},
	} {
		res, body := b.submit("/me/erase", "/me/erase", c.form)
		if res.StatusCode != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%v: %d, want %d saying %q", c.form, res.StatusCode, c.code, c.want)
		}
	}
	if _, err := h.unlock(p, ""); err != nil {
		t.Fatalf("refused erasures changed the wallet: %v", err)
	}
	res, body = b.submit("/me/erase", "/me/erase", url.Values{"passphrase": {p.passphrase}, "understood": {"yes"}})
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "钱包已从本节点删除") {
		t.Fatalf("erasing: %d\n%s", res.StatusCode, body)
	}
	if res, _ := b.get("/me"); res.StatusCode == http.StatusOK {
		t.Error("the session still opens a page after the erasure")
	}
	if _, err := h.unlock(p, ""); err == nil {
		t.Error("the erased wallet still opens")
	}
	// Re-proofed at the counter, the resident gets a new wallet.
	if res, body := clerk.submit("/counter/reproof", "/counter/reproof", p.form()); res.StatusCode != http.StatusOK || !strings.Contains(body, `class="code"`) {
		t.Errorf("re-proof after erasure: %d", res.StatusCode)
	}
}
