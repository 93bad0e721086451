package node

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	cmtcfg "github.com/cometbft/cometbft/config"
	cmted25519 "github.com/cometbft/cometbft/crypto/ed25519"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
)

// EnsureKeys creates, unless they exist, CometBFT's key files under
// Home/comet: config/node_key.json (the P2P identity),
// config/priv_validator_key.json (the consensus signing key) and
// data/priv_validator_state.json (the last signed height, round and step,
// which stops the validator from signing twice at one height). New files
// have mode 0600; existing key files readable by others are refused.
//
// It returns the validator's public key, to list in the genesis file, and
// the node ID, for other nodes' PersistentPeers.
//
// A validator key without its state file is refused rather than given a
// fresh state: that could let the validator sign a second, conflicting block
// at a height it already signed. Restore the state file from where the key
// came from.
func EnsureKeys(cfg Config) (validatorKey ed25519.PublicKey, nodeID string, err error) {
	if cfg.Home == "" {
		return nil, "", errors.New("couldn't ensure keys: home directory not set")
	}
	nk, pv, err := loadOrGenKeys(cometPaths(cfg.cometHome()))
	if err != nil {
		return nil, "", err
	}
	return ed25519.PublicKey(bytes.Clone(pv.Key.PubKey.Bytes())), string(nk.ID()), nil
}

// cometPaths is CometBFT's default file layout rooted at home.
func cometPaths(home string) cmtcfg.BaseConfig {
	bc := cmtcfg.DefaultBaseConfig()
	bc.RootDir = home
	return bc
}

// loadOrGenKeys loads the node and validator keys, generating any that
// don't exist. It replaces CometBFT's own loaders, which exit the process on
// a malformed file.
func loadOrGenKeys(paths cmtcfg.BaseConfig) (*p2p.NodeKey, *privval.FilePV, error) {
	for _, dir := range []string{
		filepath.Dir(paths.NodeKeyFile()),
		filepath.Dir(paths.PrivValidatorKeyFile()),
		filepath.Dir(paths.PrivValidatorStateFile()),
	} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("couldn't create %s: %w", dir, err)
		}
	}
	nk, err := loadOrGenNodeKey(paths.NodeKeyFile())
	if err != nil {
		return nil, nil, err
	}
	pv, err := loadOrGenFilePV(paths.PrivValidatorKeyFile(), paths.PrivValidatorStateFile())
	if err != nil {
		return nil, nil, err
	}
	return nk, pv, nil
}

func loadOrGenNodeKey(path string) (*p2p.NodeKey, error) {
	data, err := readPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		nk := &p2p.NodeKey{PrivKey: cmted25519.GenPrivKey()}
		data, err := cmtjson.Marshal(nk)
		if err != nil {
			return nil, fmt.Errorf("couldn't encode node key: %w", err)
		}
		if err := writeNewFile(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("couldn't save node key: %w", err)
		}
		return nk, nil
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't load node key: %w", err)
	}
	var nk p2p.NodeKey
	if err := cmtjson.Unmarshal(data, &nk); err != nil {
		return nil, fmt.Errorf("couldn't parse node key %s: %w", path, err)
	}
	if _, ok := nk.PrivKey.(cmted25519.PrivKey); !ok {
		return nil, fmt.Errorf("couldn't load node key %s: want an ed25519 key, got %T", path, nk.PrivKey)
	}
	return &nk, nil
}

func loadOrGenFilePV(keyPath, statePath string) (*privval.FilePV, error) {
	keyData, err := readPrivate(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return genFilePV(keyPath, statePath)
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't load validator key: %w", err)
	}
	var key privval.FilePVKey
	if err := cmtjson.Unmarshal(keyData, &key); err != nil {
		return nil, fmt.Errorf("couldn't parse validator key %s: %w", keyPath, err)
	}
	priv, ok := key.PrivKey.(cmted25519.PrivKey)
	if !ok || len(priv) != cmted25519.PrivateKeySize {
		return nil, fmt.Errorf("couldn't load validator key %s: want an ed25519 key, got %T", keyPath, key.PrivKey)
	}
	if key.PubKey != nil && !key.PubKey.Equals(priv.PubKey()) {
		return nil, fmt.Errorf("couldn't load validator key %s: pub_key doesn't match priv_key", keyPath)
	}

	stateData, err := os.ReadFile(statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("couldn't load validator sign state: %s exists but %s doesn't; "+
			"restore it alongside the key, as a fresh state could let the validator double-sign", keyPath, statePath)
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't load validator sign state: %w", err)
	}
	var state privval.FilePVLastSignState
	if err := cmtjson.Unmarshal(stateData, &state); err != nil {
		return nil, fmt.Errorf("couldn't parse validator sign state %s: %w", statePath, err)
	}

	// NewFilePV is the only way to set the unexported file paths that
	// FilePV saves its sign state to.
	pv := privval.NewFilePV(priv, keyPath, statePath)
	pv.LastSignState.Height = state.Height
	pv.LastSignState.Round = state.Round
	pv.LastSignState.Step = state.Step
	pv.LastSignState.Signature = state.Signature
	pv.LastSignState.SignBytes = state.SignBytes
	return pv, nil
}

func genFilePV(keyPath, statePath string) (*privval.FilePV, error) {
	pv := privval.NewFilePV(cmted25519.GenPrivKey(), keyPath, statePath)
	keyData, err := cmtjson.MarshalIndent(pv.Key, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("couldn't encode validator key: %w", err)
	}
	stateData, err := cmtjson.MarshalIndent(pv.LastSignState, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("couldn't encode validator sign state: %w", err)
	}
	// State first: a crash between the two writes then leaves no key, and
	// the next run starts over. A leftover state file belongs to a key that
	// is gone, and would only block the new key from signing.
	if err := replaceFile(statePath, stateData, 0o600); err != nil {
		return nil, fmt.Errorf("couldn't save validator sign state: %w", err)
	}
	if err := writeNewFile(keyPath, keyData, 0o600); err != nil {
		return nil, fmt.Errorf("couldn't save validator key: %w", err)
	}
	return pv, nil
}

// readPrivate reads a secret file after checking that only its owner can
// read it.
func readPrivate(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := checkPrivate(path, info); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}
