package node

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testPub is a fixed, valid-looking validator key.
func testPub(b byte) ed25519.PublicKey {
	return ed25519.PublicKey(bytes.Repeat([]byte{b}, ed25519.PublicKeySize))
}

func TestGenesisRoundTrip(t *testing.T) {
	cfg := Config{Home: t.TempDir(), ChainID: "imi-city-1"}
	want := Genesis{
		ChainID:     "imi-city-1",
		GenesisTime: time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC),
		Validators: []GenesisValidator{
			{Name: "city hall", PubKey: testPub(1), Power: 10},
			{Name: "university", PubKey: testPub(2), Power: 5},
		},
		AppState: json.RawMessage(`{"registry":[]}`),
	}
	if err := WriteGenesis(cfg, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadGenesis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadGenesis = %+v\nwant %+v", got, want)
	}

	path := cometPaths(cfg.cometHome()).GenesisFile()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm() != 0o644 {
		t.Errorf("genesis mode %04o, want 0644", info.Mode().Perm())
	}

	// Rewriting the same genesis is fine; another one is refused.
	if err := WriteGenesis(cfg, want); err != nil {
		t.Errorf("rewriting the same genesis: %v", err)
	}
	other := want
	other.AppState = json.RawMessage(`{"registry":["x"]}`)
	if err := WriteGenesis(cfg, other); !errors.Is(err, fs.ErrExist) {
		t.Errorf("writing a different genesis: err = %v, want fs.ErrExist", err)
	}
}

func TestGenesisChainIDFromConfig(t *testing.T) {
	cfg := Config{Home: t.TempDir(), ChainID: "imi-from-config"}
	g := Genesis{GenesisTime: testGenesisTime, Validators: []GenesisValidator{{PubKey: testPub(1), Power: 1}}}
	if err := WriteGenesis(cfg, g); err != nil {
		t.Fatal(err)
	}
	got, err := ReadGenesis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got.ChainID != cfg.ChainID {
		t.Errorf("chain ID = %q, want %q", got.ChainID, cfg.ChainID)
	}
}

// TestGenesisTimeZone checks that the file doesn't depend on the writer's
// time zone.
func TestGenesisTimeZone(t *testing.T) {
	instant := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var files [][]byte
	for _, tz := range []*time.Location{time.UTC, time.FixedZone("CEST", 2*60*60)} {
		cfg := Config{Home: t.TempDir(), ChainID: "imi"}
		g := Genesis{GenesisTime: instant.In(tz), Validators: []GenesisValidator{{PubKey: testPub(1), Power: 1}}}
		if err := WriteGenesis(cfg, g); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(cometPaths(cfg.cometHome()).GenesisFile())
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, data)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Errorf("genesis files differ by time zone:\n%s\n%s", files[0], files[1])
	}
}

func TestWriteGenesisRejects(t *testing.T) {
	valid := func() Genesis {
		return Genesis{
			ChainID:     "imi",
			GenesisTime: testGenesisTime,
			Validators:  []GenesisValidator{{Name: "v", PubKey: testPub(1), Power: 1}},
		}
	}
	tests := []struct {
		name   string
		cfg    Config
		change func(*Genesis)
		want   string
	}{
		{"no chain ID", Config{}, func(g *Genesis) { g.ChainID = "" }, "chain_id"},
		{"chain ID mismatch", Config{ChainID: "imi-other"}, func(*Genesis) {}, "differs"},
		{"chain ID too long", Config{}, func(g *Genesis) { g.ChainID = strings.Repeat("x", 51) }, "too long"},
		{"no time", Config{}, func(g *Genesis) { g.GenesisTime = time.Time{} }, "time not set"},
		{"no validators", Config{}, func(g *Genesis) { g.Validators = nil }, "no validators"},
		{"short key", Config{}, func(g *Genesis) { g.Validators[0].PubKey = testPub(1)[:31] }, "31 bytes"},
		{"zero power", Config{}, func(g *Genesis) { g.Validators[0].Power = 0 }, "out of range"},
		{"negative power", Config{}, func(g *Genesis) { g.Validators[0].Power = -1 }, "out of range"},
		{"total power overflow", Config{}, func(g *Genesis) {
			g.Validators = []GenesisValidator{
				{PubKey: testPub(1), Power: 1 << 59},
				{PubKey: testPub(2), Power: 1 << 59},
			}
		}, "out of range"},
		{"duplicate key", Config{}, func(g *Genesis) {
			g.Validators = append(g.Validators, GenesisValidator{PubKey: testPub(1), Power: 1})
		}, "listed twice"},
		{"bad app state", Config{}, func(g *Genesis) { g.AppState = json.RawMessage(`{`) }, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Home = t.TempDir()
			g := valid()
			tt.change(&g)
			err := WriteGenesis(tt.cfg, g)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
			if _, err := os.Stat(cometPaths(tt.cfg.cometHome()).GenesisFile()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a genesis file was written anyway (stat: %v)", err)
			}
		})
	}
}

// TestReadGenesisWithoutTime checks that a hand-written genesis without a
// time is refused, not completed with the reader's clock.
func TestReadGenesisWithoutTime(t *testing.T) {
	cfg := Config{Home: t.TempDir()}
	if err := WriteGenesis(cfg, Genesis{ChainID: "imi", GenesisTime: testGenesisTime,
		Validators: []GenesisValidator{{PubKey: testPub(1), Power: 1}}}); err != nil {
		t.Fatal(err)
	}
	path := cometPaths(cfg.cometHome()).GenesisFile()
	var doc map[string]any
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "genesis_time")
	data, err = json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadGenesis(cfg); err == nil || !strings.Contains(err.Error(), "genesis_time") {
		t.Errorf("err = %v, want one about genesis_time", err)
	}
}

// FuzzParseGenesis checks that no genesis file makes the parser panic, and
// that whatever it accepts converts and writes back.
func FuzzParseGenesis(f *testing.F) {
	home := f.TempDir()
	cfg := Config{Home: home, ChainID: "imi"}
	if err := WriteGenesis(cfg, Genesis{GenesisTime: testGenesisTime,
		Validators: []GenesisValidator{{Name: "v", PubKey: testPub(1), Power: 1}},
		AppState:   json.RawMessage(`{"a":1}`)}); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(cometPaths(cfg.cometHome()).GenesisFile())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"genesis_time":"2025-01-01T00:00:00Z","chain_id":"x","validators":[{"power":"1"}]}`))
	f.Add([]byte(`{"genesis_time":"2025-01-01T00:00:00Z","chain_id":"x","consensus_params":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := parseGenesisDoc(data)
		if err != nil {
			return
		}
		if doc.GenesisTime.IsZero() || doc.ChainID == "" {
			t.Fatalf("accepted genesis without time or chain ID: %s", data)
		}
	})
}
