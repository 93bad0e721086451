package web

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryTextIsInBothLanguages finds each catalogue key the templates and
// the Go code use and checks it has a Chinese and an English text.
func TestEveryTextIsInBothLanguages(t *testing.T) {
	tmplRef := regexp.MustCompile(`\bT "([a-z_]+\.[a-z_]+)"`)
	goRef := regexp.MustCompile(`"((?:title|err|flash|status|cons|mode|channel|nav|counter|console)\.[a-z_]+)"`)
	seen := map[string]bool{}
	files, _ := fs.Glob(templateFS, "templates/*.html")
	for _, f := range files {
		b, _ := fs.ReadFile(templateFS, f)
		for _, m := range tmplRef.FindAllStringSubmatch(string(b), -1) {
			seen[m[1]] = true
		}
	}
	goFiles, _ := filepath.Glob("*.go")
	for _, f := range goFiles {
		if strings.HasSuffix(f, "_test.go") || strings.HasPrefix(f, "i18n") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range goRef.FindAllStringSubmatch(string(b), -1) {
			seen[m[1]] = true
		}
	}
	if len(seen) < 50 {
		t.Fatalf("found only %d keys in the templates; the pattern is broken", len(seen))
	}
	for k := range seen {
		if strings.HasSuffix(k, ".") {
			continue
		}
		v, ok := catalogue[k]
		if !ok {
			t.Errorf("the catalogue has no %q", k)
			continue
		}
		if v[0] == "" || v[1] == "" {
			t.Errorf("%q lacks a text: zh %q, en %q", k, v[0], v[1])
		}
	}
	// Keys built with printf in templates: every value they can take.
	for _, k := range []string{"status.valid", "status.revoked", "status.suspended", "status.expired", "status.unknown",
		"cons.active", "cons.expired", "cons.revoked", "cons.used", "mode.one_time", "mode.standing",
		"channel.presentation", "channel.back_office"} {
		if _, ok := catalogue[k]; !ok {
			t.Errorf("the catalogue has no %q", k)
		}
	}
}

func TestTranslate(t *testing.T) {
	for _, c := range []struct{ lang, key, want string }{
		{"zh", "nav.signout", "退出"},
		{"en", "nav.signout", "Sign out"},
		{"", "nav.signout", "退出"},
		{"en", "no.such_key", "no.such_key"},
	} {
		if got := tr(c.lang, c.key); got != c.want {
			t.Errorf("tr(%q, %q) = %q, want %q", c.lang, c.key, got, c.want)
		}
	}
}
