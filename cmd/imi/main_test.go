package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imi-city/imi/internal/idnumber"
	"github.com/imi-city/imi/internal/key"
)

func testEnv(stdin string) (*env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}, &out, &errb
}

func TestHelpListsEveryCommand(t *testing.T) {
	e, out, _ := testEnv("")
	if err := run(context.Background(), e, []string{"help"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(out.String(), c.name) {
			t.Errorf("help lacks %q", c.name)
		}
	}
}

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	for _, c := range commands {
		e, _, errb := testEnv("")
		err := run(context.Background(), e, append(strings.Fields(c.name), "--help"))
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s --help: %v", c.name, err)
		}
		if !strings.Contains(errb.String(), "Examples:") || !strings.Contains(errb.String(), "imi "+c.name) {
			t.Errorf("%s --help shows no examples:\n%s", c.name, errb)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"frobnicate"},
		{"resident"},
		{"resident", "keygen"},
		{"registrar", "register", "--as", "cc-psb"},
		{"resident", "deactivate", "--dir", "x"},
		{"did", "resolve"},
		{"tx", "not-a-hash"},
	} {
		e, _, _ := testEnv("")
		err := run(context.Background(), e, args)
		if !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}

func TestIDNumberFromPrompt(t *testing.T) {
	dir := t.TempDir()
	hk, _ := key.GenerateHMAC()
	path := filepath.Join(dir, "u.key")
	if err := hk.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	n, _ := idnumber.Parse("11010519491231002X")
	want := idnumber.UniquenessTag(hk, n)

	e, _, errb := testEnv("11010519491231002x\n")
	got, err := uniquenessTag(e, dir, path, "")
	if err != nil || [32]byte(got) != want {
		t.Fatalf("prompt: %x, %v", got, err)
	}
	if !strings.Contains(errb.String(), "公民身份号码") {
		t.Errorf("no prompt shown: %q", errb)
	}
	e, _, _ = testEnv("")
	if got, err := uniquenessTag(e, dir, path, "11010519491231002X"); err != nil || [32]byte(got) != want {
		t.Errorf("flag: %x, %v", got, err)
	}
	e, _, _ = testEnv("110105194912310021\n")
	if _, err := uniquenessTag(e, dir, path, ""); !errors.Is(err, idnumber.ErrCheckDigit) {
		t.Errorf("mistyped: %v", err)
	}
	e, _, _ = testEnv("")
	if _, err := uniquenessTag(e, dir, path, ""); !errors.Is(err, errUsage) {
		t.Errorf("nothing typed: %v", err)
	}
}
