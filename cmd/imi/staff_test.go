package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/web"
)

func TestStaffAdd(t *testing.T) {
	home := t.TempDir()
	add := func(stdin string, args ...string) error {
		e, _, _ := testEnv(stdin)
		return run(context.Background(), e, append([]string{"staff", "add", "--home", home}, args...))
	}
	if err := add("a long staff passphrase\na long staff passphrase\n", "--name", "clerk-li", "--authority", "cc-psb", "--roles", "counter,console"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(home, "staff.json")
	accounts, err := web.ReadStaff(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(accounts) != 1 || accounts[0].Name != "clerk-li" || accounts[0].Authority != "cc-psb" || strings.Join(accounts[0].Roles, ",") != "counter,console" {
		t.Fatalf("staff.json holds %+v", accounts)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "a long staff passphrase") {
		t.Error("staff.json holds the passphrase")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("staff.json has mode %v, want 0600", fi.Mode().Perm())
	}
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"a long staff passphrase\na long staff passphrase\n", []string{"--name", "clerk-li", "--authority", "cc-psb"}, "already has an account"},
		{"", []string{"--name", "x", "--authority", "cc-psb", "--roles", "admin"}, "not counter or console"},
		{"short\nshort\n", []string{"--name", "y", "--authority", "cc-psb"}, "at least 12"},
		{"a long staff passphrase\nanother one entirely\n", []string{"--name", "z", "--authority", "cc-psb"}, "differ"},
		{"", []string{"--authority", "cc-psb"}, "name"},
	} {
		err := add(c.stdin, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("staff add %v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
	if accounts, _ := web.ReadStaff(path); len(accounts) != 1 {
		t.Errorf("refused additions changed staff.json: %d accounts", len(accounts))
	}
}
