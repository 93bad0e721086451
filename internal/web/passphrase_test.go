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
