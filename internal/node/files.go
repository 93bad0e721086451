package node

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// writeNewFile creates path with data and mode perm, failing with an error
// wrapping fs.ErrExist if path exists. The data is written and synced under
// a temporary name and then hard-linked into place, so a crash never leaves
// a partial file at path and a concurrent writer never clobbers it.
func writeNewFile(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("couldn't create %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// replaceFile writes data to path atomically, replacing any existing file.
func replaceFile(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("couldn't replace %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a new, synced temporary file next to path and
// returns its name.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", fmt.Errorf("couldn't create temporary file for %s: %w", path, err)
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("couldn't write %s: %w", name, err)
	}
	// CreateTemp already uses 0600; Chmod makes wider modes (genesis.json)
	// independent of the umask.
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("couldn't write %s: %w", name, err)
	}
	return name, nil
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories can't be opened for syncing there
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("couldn't sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("couldn't sync directory %s: %w", dir, err)
	}
	return nil
}

// checkPrivate refuses a secret file others may read, as ssh does: loosened
// permissions usually mean a copy went wrong, and the key may have leaked.
func checkPrivate(path string, info fs.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil // permission bits don't describe access there
	}
	if mode := info.Mode().Perm(); mode&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o, which lets other users read a secret key; make it 0600", path, mode)
	}
	return nil
}
