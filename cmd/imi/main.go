// Command imi runs an IMI node and talks to one: residents, registrars,
// authorities and operators use its subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand: its usage line, examples and action.
type command struct {
	name     string
	summary  string
	usage    string
	examples string
	run      func(ctx context.Context, e *env, args []string) error
}

// env is what a command may touch, injected for tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "imi:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUsage marks a mistake in how the command was called.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

func run(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return run(ctx, e, []string{args[1], "--help"})
		}
		printHelp(e.stdout)
		if len(args) == 0 {
			return fmt.Errorf("%w: name a command", errUsage)
		}
		return nil
	}
	// Two-word commands ("resident keygen") are looked up first.
	if len(args) > 1 {
		if c := find(args[0] + " " + args[1]); c != nil {
			return c.run(ctx, e, args[2:])
		}
	}
	if c := find(args[0]); c != nil {
		return c.run(ctx, e, args[1:])
	}
	var group []string
	for _, c := range commands {
		if strings.HasPrefix(c.name, args[0]+" ") {
			group = append(group, fmt.Sprintf("  imi %-22s %s", c.name, c.summary))
		}
	}
	if len(group) > 0 {
		fmt.Fprintf(e.stderr, "imi %s: name a subcommand:\n%s\n", args[0], strings.Join(group, "\n"))
		return fmt.Errorf("%w: imi %s needs a subcommand", errUsage, args[0])
	}
	return fmt.Errorf("%w: unknown command %q (imi help lists them)", errUsage, args[0])
}

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `imi — a district's identity ledger: register once, disclose only what a service needs.

Usage: imi <command> [flags]; imi help <command> shows a command's flags and examples.

Commands:
`)
	sorted := append([]*command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-24s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Commands that talk to a node take --node URL[,URL...] (default $IMI_NODE or
http://127.0.0.1:8080); with several, the next is tried when one does not answer.
`)
}

// flags returns a flag set whose --help shows the command's usage and examples.
func (c *command) flags(e *env) *flag.FlagSet {
	fs := flag.NewFlagSet("imi "+c.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "imi %s — %s\n\nUsage: imi %s %s\n", c.name, c.summary, c.name, c.usage)
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
		if c.examples != "" {
			fmt.Fprintf(w, "\nExamples:\n%s\n", c.examples)
		}
	}
	return fs
}

// parse parses args, turning a flag mistake into errUsage.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func need(name, v string) error {
	if v == "" {
		return fmt.Errorf("%w: --%s is required", errUsage, name)
	}
	return nil
}
