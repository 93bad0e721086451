package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imi-city/imi/internal/district"
)

func defaultHome(e *env) string {
	if h := e.getenv("IMI_HOME"); h != "" {
		return h
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".imi")
	}
	return ".imi"
}

func init() {
	register(&command{
		name:    "up",
		summary: "run the demo district (Chancheng, Foshan) on one node",
		usage:   "[--home DIR] [--http ADDR] [--p2p ADDR]",
		examples: `  imi up                           # data in ~/.imi, API on 127.0.0.1:8080
  imi up --home /tmp/district --http 127.0.0.1:9090 --p2p tcp://127.0.0.1:36656`,
		run: runUp,
	})
	register(&command{
		name:    "init",
		summary: "write a new node's keys, genesis and imi.toml",
		usage:   "--home DIR [--chain-id ID] [--http ADDR] [--p2p ADDR]",
		examples: `  imi init --home /srv/imi        # then edit /srv/imi/imi.toml
  imi node --home /srv/imi`,
		run: runInit,
	})
	register(&command{
		name:     "node",
		summary:  "run a node from its home directory",
		usage:    "--home DIR [--http ADDR]",
		examples: `  imi node --home /srv/imi`,
		run:      runNode,
	})
}

func runInit(ctx context.Context, e *env, args []string) error {
	c := find("init")
	fs := c.flags(e)
	home := fs.String("home", "", "directory for the node's keys, configuration and data (required)")
	chainID := fs.String("chain-id", district.DemoChainID, "network name")
	httpAddr := fs.String("http", "127.0.0.1:8080", "API address written into imi.toml")
	p2p := fs.String("p2p", "", "CometBFT peer address written into imi.toml")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("home", *home); err != nil {
		return err
	}
	if err := district.InitDemo(*home, district.InitOptions{ChainID: *chainID, HTTP: *httpAddr, P2P: *p2p, GenesisTime: time.Now().Truncate(time.Second)}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, `Initialised a district node in %s:
  %s        configuration (authorities, roles, validators, ports) — edit before the first start
  keys/            the founding authorities' signing keys and the registrars' uniqueness key
  comet/config/    this node's CometBFT validator and node keys
  %s       the web portal's staff accounts (imi staff add); demo passphrases in %s
Start it with: imi node --home %s
`, *home, filepath.Join(*home, district.ConfigFile), filepath.Base(district.StaffFile(*home)), filepath.Base(district.DemoStaffFile(*home)), *home)
	return nil
}

func runUp(ctx context.Context, e *env, args []string) error {
	c := find("up")
	fs := c.flags(e)
	home := fs.String("home", defaultHome(e), "directory for keys and chain data")
	httpAddr := fs.String("http", "", "API address (default 127.0.0.1:8080, or imi.toml's)")
	p2p := fs.String("p2p", "", "CometBFT peer address (default tcp://127.0.0.1:26656, or imi.toml's)")
	if err := parse(fs, args); err != nil {
		return err
	}
	fresh := !district.Initialized(*home)
	if fresh {
		addr := *httpAddr
		if addr == "" {
			addr = "127.0.0.1:8080"
		}
		if err := district.InitDemo(*home, district.InitOptions{HTTP: addr, P2P: *p2p, GenesisTime: time.Now().Truncate(time.Second)}); err != nil {
			return err
		}
	}
	return serve(ctx, e, *home, *httpAddr, *p2p, fresh)
}

func runNode(ctx context.Context, e *env, args []string) error {
	c := find("node")
	fs := c.flags(e)
	home := fs.String("home", "", "the node's directory, written by imi init (required)")
	httpAddr := fs.String("http", "", "API address (default: imi.toml's)")
	p2p := fs.String("p2p", "", "CometBFT peer address (default: imi.toml's)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("home", *home); err != nil {
		return err
	}
	if !district.Initialized(*home) {
		return fmt.Errorf("%s has no %s: run imi init --home %s first", *home, district.ConfigFile, *home)
	}
	return serve(ctx, e, *home, *httpAddr, *p2p, false)
}

func serve(ctx context.Context, e *env, home, httpAddr, p2p string, fresh bool) error {
	cfg, err := district.LoadConfig(home)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); cfg.LogLevel != "" && err != nil {
		return fmt.Errorf("%s: log_level %q: use debug, info, warn or error", district.ConfigFile, cfg.LogLevel)
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	return district.Run(ctx, home, district.RunOptions{HTTP: httpAddr, P2P: p2p, Log: log, Ready: func(i district.Info) {
		state := "resumed"
		switch {
		case fresh:
			state = "created"
		case i.Height == 0:
			state = "new chain" // imi init wrote it; no block yet
		}
		staff := "staff      " + i.StaffFile + " (add accounts with imi staff add)"
		if i.DemoStaff != "" {
			staff = "staff      passphrases of the demo counter clerk and caseworkers in " + i.DemoStaff
		}
		fmt.Fprintf(e.stdout, `
IMI node running — chain %s (%s), height %d
  portal     http://%s/  (residents: /signin, counter and console: /staff/signin)
  API        http://%s  (status: /v1/status, OpenAPI: /v1/openapi.json)
  %s
  data       %s
  keys       %s
Stop with Ctrl-C; start again with the same --home to resume the chain.
`, i.ChainID, state, i.Height, i.HTTP, i.HTTP, staff, home, strings.Join([]string{filepath.Join(home, "keys"), filepath.Join(home, "comet", "config")}, ", "))
	}})
}
