package district

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func initHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	err := InitDemo(home, InitOptions{HTTP: freePort(t), P2P: "tcp://" + freePort(t), GenesisTime: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return home
}

func TestInitDemo(t *testing.T) {
	home := initHome(t)
	cfg, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ChainID != DemoChainID || len(cfg.Genesis.Authorities) != 4 {
		t.Fatalf("config = %+v", cfg)
	}
	g, err := cfg.genesis()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Validators) != 1 || g.Validators[0].Name != RegistrarID {
		t.Errorf("validators = %+v, want the registrar's node alone", g.Validators)
	}
	for _, a := range cfg.Genesis.Authorities {
		fi, err := os.Stat(KeyFile(home, a.ID))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s key mode %v, want 0600", a.ID, fi.Mode().Perm())
		}
	}
	conf, _ := os.ReadFile(filepath.Join(home, ConfigFile))
	if strings.Contains(string(conf), "seed") || strings.Contains(string(conf), "secret") {
		t.Error("imi.toml holds key material")
	}
	if err := InitDemo(home, InitOptions{}); err == nil {
		t.Error("InitDemo overwrote an existing home")
	}
}

func TestConfigIsStrict(t *testing.T) {
	home := initHome(t)
	path := filepath.Join(home, ConfigFile)
	b, _ := os.ReadFile(path)
	bad := strings.Replace(string(b), "log_level =", "log_levle =", 1)
	os.WriteFile(path, []byte(bad), 0o600)
	if _, err := LoadConfig(home); err == nil || !strings.Contains(err.Error(), "log_levle") {
		t.Errorf("misspelt setting: err = %v", err)
	}
}

func TestRunRefusesAChangedGenesis(t *testing.T) {
	home := initHome(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, home, RunOptions{Ready: func(i Info) { ready <- i }}) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("node did not start")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	path := filepath.Join(home, ConfigFile)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), "Chancheng District, Foshan", "Nanhai District, Foshan", 1)), 0o600)
	err := Run(context.Background(), home, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "no longer matches") {
		t.Errorf("changed genesis: err = %v", err)
	}
}
