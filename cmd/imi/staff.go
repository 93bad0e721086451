package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/imi-city/imi/internal/district"
	"github.com/imi-city/imi/internal/web"
)

func init() {
	register(&command{
		name:    "staff add",
		summary: "add a counter clerk's or caseworker's portal account",
		usage:   "--home DIR --name NAME --authority ID [--roles counter,console]",
		examples: `  imi staff add --home /srv/imi --name clerk-li --authority cc-psb --roles counter
  # asks for the passphrase (12 characters or more); the node reads the file at each sign-in`,
		run: staffAdd,
	})
}

func staffAdd(ctx context.Context, e *env, args []string) error {
	c := find("staff add")
	fl := c.flags(e)
	home := fl.String("home", defaultHome(e), "the node's directory")
	name := fl.String("name", "", "account name, one word (required)")
	authority := fl.String("authority", "", "the authority the account works for (required)")
	roles := fl.String("roles", web.RoleConsole, "counter (registrar staff), console (caseworkers), or both, comma-separated")
	if err := parse(fl, args); err != nil {
		return err
	}
	for _, f := range [][2]string{{"name", *name}, {"authority", *authority}} {
		if err := need(f[0], f[1]); err != nil {
			return err
		}
	}
	var rs []string
	for _, r := range strings.Split(*roles, ",") {
		r = strings.TrimSpace(r)
		if r != web.RoleCounter && r != web.RoleConsole {
			return fmt.Errorf("%w: --roles: %q is not counter or console", errUsage, r)
		}
		rs = append(rs, r)
	}
	path := district.StaffFile(*home)
	accounts, err := web.ReadStaff(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if slices.ContainsFunc(accounts, func(a web.StaffAccount) bool { return a.Name == *name }) {
		return fmt.Errorf("%s already has an account %q", path, *name)
	}
	pass, err := newPrompter(e).passphrase("the staff account "+*name, true)
	if err != nil {
		return err
	}
	a, err := web.NewStaffAccount(*name, *authority, rs, string(pass))
	if err != nil {
		return err
	}
	if err := web.WriteStaff(path, append(accounts, a)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Added %s (%s: %s) to %s. It can sign in at /staff/signin now.\n", *name, *authority, strings.Join(rs, ", "), path)
	return nil
}
