package node

import (
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestEnsureKeys(t *testing.T) {
	cfg := Config{Home: t.TempDir()}
	pub, id, err := EnsureKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(pub) != ed25519.PublicKeySize {
		t.Errorf("validator key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if b, err := hex.DecodeString(id); err != nil || len(b) != 20 {
		t.Errorf("node ID %q is not 20 bytes of hex", id)
	}

	paths := cometPaths(cfg.cometHome())
	for _, f := range []string{paths.NodeKeyFile(), paths.PrivValidatorKeyFile(), paths.PrivValidatorStateFile()} {
		if !strings.HasPrefix(f, filepath.Join(cfg.Home, "comet")+string(filepath.Separator)) {
			t.Errorf("%s is outside Home/comet", f)
		}
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", f, info.Mode().Perm())
		}
	}

	pub2, id2, err := EnsureKeys(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !pub2.Equal(pub) || id2 != id {
		t.Errorf("second EnsureKeys returned other keys: %x %s, first %x %s", pub2, id2, pub, id)
	}

	// The keys are the ones CometBFT signs with.
	_, pv, err := loadOrGenKeys(paths)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pv.GetPubKey()
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.PublicKey(got.Bytes()).Equal(pub) {
		t.Errorf("FilePV key %x, EnsureKeys said %x", got.Bytes(), pub)
	}
}

func TestEnsureKeysRefuses(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, home string)
		want   string
	}{
		{
			name: "readable validator key",
			damage: func(t *testing.T, home string) {
				chmod(t, cometPaths(home).PrivValidatorKeyFile(), 0o644)
			},
			want: "mode 0644",
		},
		{
			name: "readable node key",
			damage: func(t *testing.T, home string) {
				chmod(t, cometPaths(home).NodeKeyFile(), 0o640)
			},
			want: "mode 0640",
		},
		{
			name: "validator key without sign state",
			damage: func(t *testing.T, home string) {
				if err := os.Remove(cometPaths(home).PrivValidatorStateFile()); err != nil {
					t.Fatal(err)
				}
			},
			want: "double-sign",
		},
		{
			name: "corrupt validator key",
			damage: func(t *testing.T, home string) {
				write(t, cometPaths(home).PrivValidatorKeyFile(), `{"priv_key":`)
			},
			want: "couldn't parse validator key",
		},
		{
			name: "corrupt node key",
			damage: func(t *testing.T, home string) {
				write(t, cometPaths(home).NodeKeyFile(), `not json`)
			},
			want: "couldn't parse node key",
		},
		{
			name: "corrupt sign state",
			damage: func(t *testing.T, home string) {
				write(t, cometPaths(home).PrivValidatorStateFile(), `{"height":"x"`)
			},
			want: "couldn't parse validator sign state",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if runtime.GOOS == "windows" && strings.HasPrefix(tt.want, "mode") {
				t.Skip("no permission bits")
			}
			cfg := Config{Home: t.TempDir()}
			if _, _, err := EnsureKeys(cfg); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, cfg.cometHome())
			_, _, err := EnsureKeys(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestEnsureKeysReplacesOrphanState(t *testing.T) {
	cfg := Config{Home: t.TempDir()}
	if _, _, err := EnsureKeys(cfg); err != nil {
		t.Fatal(err)
	}
	paths := cometPaths(cfg.cometHome())
	if err := os.Remove(paths.PrivValidatorKeyFile()); err != nil {
		t.Fatal(err)
	}
	// A state from a lost key would block the new key at a height it never
	// signed.
	write(t, paths.PrivValidatorStateFile(), `{"height":"100","round":0,"step":3}`)
	if _, _, err := EnsureKeys(cfg); err != nil {
		t.Fatal(err)
	}
	_, pv, err := loadOrGenKeys(paths)
	if err != nil {
		t.Fatal(err)
	}
	if pv.LastSignState.Height != 0 {
		t.Errorf("new key inherited sign state at height %d", pv.LastSignState.Height)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
