package node

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	cmted25519 "github.com/cometbft/cometbft/crypto/ed25519"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	cmttypes "github.com/cometbft/cometbft/types"
)

// Genesis is the starting point of a chain: who validates it, from when,
// and the application's initial state. Every node of a chain must start
// from byte-identical genesis files.
type Genesis struct {
	// ChainID names the chain; votes are signed over it, so they can't be
	// replayed on another chain. At most 50 bytes.
	ChainID string
	// GenesisTime is the time of block 1, and the earliest time the chain
	// starts: a node started before it waits. It is never taken from the
	// clock here, so that independently written files agree.
	GenesisTime time.Time
	// Validators is the initial validator set; at least one.
	Validators []GenesisValidator
	// AppState is the application's initial state, handed to its
	// InitChain. Empty, or valid JSON. Its whitespace is not kept: the file
	// indents it, and ReadGenesis returns it compacted.
	AppState json.RawMessage
}

// GenesisValidator is one initial validator.
type GenesisValidator struct {
	// Name is for people reading the file.
	Name string
	// PubKey is the validator's consensus key, as returned by EnsureKeys.
	PubKey ed25519.PublicKey
	// Power is the validator's voting weight; positive.
	Power int64
}

// WriteGenesis writes g as CometBFT's genesis file, Home/comet/config/
// genesis.json. If g.ChainID is empty, cfg.ChainID is used; if both are set
// they must agree. Writing a genesis that is already there is a no-op;
// writing a different one fails with an error wrapping fs.ErrExist, since
// replacing the genesis of an existing chain would fork it.
func WriteGenesis(cfg Config, g Genesis) error {
	if cfg.Home == "" {
		return errors.New("couldn't write genesis: home directory not set")
	}
	switch {
	case g.ChainID == "":
		g.ChainID = cfg.ChainID
	case cfg.ChainID != "" && cfg.ChainID != g.ChainID:
		return fmt.Errorf("couldn't write genesis: chain ID %q differs from configured chain ID %q", g.ChainID, cfg.ChainID)
	}
	doc, err := g.genesisDoc()
	if err != nil {
		return fmt.Errorf("couldn't write genesis: %w", err)
	}
	data, err := cmtjson.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("couldn't encode genesis: %w", err)
	}
	data = append(data, '\n')

	path := cometPaths(cfg.cometHome()).GenesisFile()
	if old, err := os.ReadFile(path); err == nil {
		if bytes.Equal(old, data) {
			return nil
		}
		return fmt.Errorf("couldn't write genesis: a different %s exists: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("couldn't read existing genesis: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("couldn't create config directory: %w", err)
	}
	// The genesis file is public: peers and light clients need it.
	if err := writeNewFile(path, data, 0o644); err != nil {
		return fmt.Errorf("couldn't write genesis: %w", err)
	}
	return nil
}

// ReadGenesis reads and checks Home/comet/config/genesis.json.
func ReadGenesis(cfg Config) (Genesis, error) {
	if cfg.Home == "" {
		return Genesis{}, errors.New("couldn't read genesis: home directory not set")
	}
	doc, err := readGenesisDoc(cometPaths(cfg.cometHome()).GenesisFile())
	if err != nil {
		return Genesis{}, err
	}
	g := Genesis{
		ChainID:     doc.ChainID,
		GenesisTime: doc.GenesisTime,
	}
	if len(doc.AppState) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, doc.AppState); err != nil {
			return Genesis{}, fmt.Errorf("couldn't read genesis: app_state: %w", err)
		}
		g.AppState = buf.Bytes()
	}
	for _, v := range doc.Validators {
		pk, ok := v.PubKey.(cmted25519.PubKey)
		if !ok {
			return Genesis{}, fmt.Errorf("couldn't read genesis: validator %q has a %T key, want ed25519", v.Name, v.PubKey)
		}
		g.Validators = append(g.Validators, GenesisValidator{
			Name:   v.Name,
			PubKey: ed25519.PublicKey(bytes.Clone(pk)),
			Power:  v.Power,
		})
	}
	return g, nil
}

// readGenesisDoc reads a genesis file the way CometBFT does, except that a
// missing genesis_time is an error: CometBFT would fill in the current
// time, and nodes starting at different moments would disagree on block 1.
func readGenesisDoc(path string) (*cmttypes.GenesisDoc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("couldn't read genesis: %w", err)
	}
	doc, err := parseGenesisDoc(data)
	if err != nil {
		return nil, fmt.Errorf("couldn't read genesis %s: %w", path, err)
	}
	return doc, nil
}

func parseGenesisDoc(data []byte) (*cmttypes.GenesisDoc, error) {
	var doc cmttypes.GenesisDoc
	if err := cmtjson.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.GenesisTime.IsZero() {
		return nil, errors.New("genesis_time not set")
	}
	// ValidateAndComplete and CometBFT's start panic on some bad validator
	// entries (no key, a key of the wrong size, duplicates).
	vals := make([]GenesisValidator, len(doc.Validators))
	for i, v := range doc.Validators {
		pk, ok := v.PubKey.(cmted25519.PubKey)
		if !ok {
			return nil, fmt.Errorf("validator %d (%q) has a %T key, want ed25519", i, v.Name, v.PubKey)
		}
		vals[i] = GenesisValidator{Name: v.Name, PubKey: ed25519.PublicKey(pk), Power: v.Power}
	}
	if err := checkValidators(vals); err != nil {
		return nil, err
	}
	if err := doc.ValidateAndComplete(); err != nil {
		return nil, err
	}
	return &doc, nil
}

// genesisDoc converts g to CometBFT's form and checks it.
func (g Genesis) genesisDoc() (*cmttypes.GenesisDoc, error) {
	if g.GenesisTime.IsZero() {
		return nil, errors.New("genesis time not set")
	}
	if len(g.Validators) == 0 {
		return nil, errors.New("no validators")
	}
	if len(g.AppState) > 0 && !json.Valid(g.AppState) {
		return nil, errors.New("app state is not valid JSON")
	}
	doc := &cmttypes.GenesisDoc{
		ChainID: g.ChainID,
		// UTC and no monotonic reading, so the file doesn't depend on the
		// writer's time zone.
		GenesisTime:   g.GenesisTime.UTC().Round(0),
		InitialHeight: 1,
		AppState:      g.AppState,
	}
	if err := checkValidators(g.Validators); err != nil {
		return nil, err
	}
	for _, v := range g.Validators {
		doc.Validators = append(doc.Validators, cmttypes.GenesisValidator{
			PubKey: cmted25519.PubKey(bytes.Clone(v.PubKey)),
			Power:  v.Power,
			Name:   v.Name,
		})
	}
	if err := doc.ValidateAndComplete(); err != nil {
		return nil, err
	}
	return doc, nil
}

// checkValidators rejects what would make CometBFT panic at start rather
// than fail: keys of the wrong size, a key listed twice, power that isn't
// positive or adds up past CometBFT's limit.
func checkValidators(vals []GenesisValidator) error {
	seen := make(map[string]bool)
	var total int64
	for i, v := range vals {
		if len(v.PubKey) != ed25519.PublicKeySize {
			return fmt.Errorf("validator %d (%q): public key is %d bytes, want %d", i, v.Name, len(v.PubKey), ed25519.PublicKeySize)
		}
		if seen[string(v.PubKey)] {
			return fmt.Errorf("validator %d (%q): public key listed twice", i, v.Name)
		}
		seen[string(v.PubKey)] = true
		if v.Power <= 0 || v.Power > cmttypes.MaxTotalVotingPower-total {
			return fmt.Errorf("validator %d (%q): power %d out of range", i, v.Name, v.Power)
		}
		total += v.Power
	}
	return nil
}
