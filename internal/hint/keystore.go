package hint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// KeystoreEnv names the environment variable that overrides the keystore
// path.
const KeystoreEnv = "XFAAS_KEYSTORE"

// keystoreVersion is the version of the keystore file format.
const keystoreVersion = 1

// Keystore is the CLI's file of keysets, one per (control-plane address,
// function): the application side's sealing keys, which never leave the
// machine. The file is JSON, mode 0600 in a directory created 0700, and is
// refused if other users can access it.
//
// Every write replaces the file by an atomic rename, so a reader never sees a
// partial file and a crash leaves the old one; writers serialize on an
// advisory lock on a sibling ".lock" file, so two CLI processes updating the
// store at once do not lose each other's keysets. A Keystore is safe for
// concurrent use.
type Keystore struct {
	path string
}

// keystoreFile is the file's JSON. Keysets stay text until asked for, so one
// damaged entry neither hides the others nor is lost when they are written.
type keystoreFile struct {
	Version int `json:"version"`
	// Keysets maps a control-plane address to function names to keyset text.
	Keysets map[string]map[string]string `json:"keysets"`
}

// NewKeystore returns the keystore stored at path. The file need not exist
// yet.
func NewKeystore(path string) *Keystore { return &Keystore{path: path} }

// DefaultKeystorePath returns $XFAAS_KEYSTORE if set, else
// $XDG_CONFIG_HOME/xfaas/keys.json, else ~/.config/xfaas/keys.json.
func DefaultKeystorePath() (string, error) {
	if p := os.Getenv(KeystoreEnv); p != "" {
		return p, nil
	}
	// The XDG spec says to ignore a relative XDG_CONFIG_HOME.
	if dir := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "xfaas", "keys.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("hint: locate keystore: %w (set %s)", err, KeystoreEnv)
	}
	return filepath.Join(home, ".config", "xfaas", "keys.json"), nil
}

// Path returns the keystore's file path.
func (s *Keystore) Path() string { return s.path }

// Get returns the keyset of function at the control plane addr; ok is false
// if there is none.
func (s *Keystore) Get(addr, function string) (ks Keyset, ok bool, err error) {
	addr, err = keystoreKey(addr, function)
	if err != nil {
		return Keyset{}, false, err
	}
	f, err := s.load()
	if err != nil {
		return Keyset{}, false, err
	}
	return s.lookup(f, addr, function)
}

// GetOrCreate returns the keyset of function at addr, generating and storing
// a new one if there is none; created says which. Of processes racing to
// create the same keyset, all return the one that was stored.
func (s *Keystore) GetOrCreate(addr, function string) (ks Keyset, created bool, err error) {
	if ks, ok, err := s.Get(addr, function); err != nil || ok {
		return ks, false, err
	}
	addr, _ = keystoreKey(addr, function) // Get checked it
	err = s.update(func(f *keystoreFile) (bool, error) {
		got, ok, err := s.lookup(f, addr, function)
		if err != nil || ok {
			ks = got
			return false, err
		}
		ks, created = Generate(), true
		return true, f.put(addr, function, ks)
	})
	if err != nil {
		return Keyset{}, false, err
	}
	return ks, created, nil
}

// Put stores ks as the keyset of function at addr, replacing any other.
func (s *Keystore) Put(addr, function string, ks Keyset) error {
	addr, err := keystoreKey(addr, function)
	if err != nil {
		return err
	}
	if _, err := ks.MarshalText(); err != nil {
		return err
	}
	return s.update(func(f *keystoreFile) (bool, error) {
		return true, f.put(addr, function, ks)
	})
}

// lookup parses the keyset of (addr, function) in f.
func (s *Keystore) lookup(f *keystoreFile, addr, function string) (Keyset, bool, error) {
	text, ok := f.Keysets[addr][function]
	if !ok {
		return Keyset{}, false, nil
	}
	ks, err := ParseKeyset(text)
	if err != nil {
		return Keyset{}, false, fmt.Errorf("keystore %s: keyset of function %q at %s: %w", s.path, function, addr, err)
	}
	return ks, true, nil
}

func (f *keystoreFile) put(addr, function string, ks Keyset) error {
	text, err := ks.MarshalText()
	if err != nil {
		return err
	}
	if f.Keysets[addr] == nil {
		f.Keysets[addr] = make(map[string]string)
	}
	f.Keysets[addr][function] = string(text)
	return nil
}

// update runs change on the stored file under the writers' lock and writes
// the result if change reports a modification.
func (s *Keystore) update(change func(*keystoreFile) (bool, error)) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("keystore %s: lock: %w", s.path, err)
	}
	defer unlock()
	f, err := s.load()
	if err != nil {
		return err
	}
	if changed, err := change(f); err != nil || !changed {
		return err
	}
	return s.store(f)
}

// load reads the file; a missing file is an empty store.
func (s *Keystore) load() (*keystoreFile, error) {
	data, err := readPrivate(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &keystoreFile{Version: keystoreVersion, Keysets: map[string]map[string]string{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	f := new(keystoreFile)
	if err := json.Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("keystore %s: %w", s.path, err)
	}
	if f.Version != keystoreVersion {
		return nil, fmt.Errorf("keystore %s: unsupported version %d", s.path, f.Version)
	}
	if f.Keysets == nil {
		f.Keysets = map[string]map[string]string{}
	}
	return f, nil
}

// readPrivate reads a file that must not be accessible to other users.
func readPrivate(path string) ([]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return nil, err
	}
	// Windows permissions do not map to mode bits; there the user profile
	// directory is what keeps the file private.
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible by other users (mode %04o); run chmod 600 %s", path, perm, path)
	}
	return io.ReadAll(file)
}

// store replaces the file atomically: write a private temporary file in the
// same directory, flush it, rename it over the old file, flush the directory.
func (s *Keystore) store(f *keystoreFile) (err error) {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("keystore %s: write: %w", s.path, err)
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(append(data, '\n')); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), s.path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable where the platform supports it; the
// rename itself is already atomic, so failure here is not an error.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// keystoreKey validates a (control-plane address, function) pair and returns
// the address in the canonical form the file is keyed by: without trailing
// slashes, scheme and host in lower case.
func keystoreKey(addr, function string) (string, error) {
	if !validFunction(function) {
		return "", errFunction
	}
	addr = strings.TrimRight(strings.TrimSpace(addr), "/")
	if addr == "" {
		return "", errors.New("keystore: empty control-plane address")
	}
	if u, err := url.Parse(addr); err == nil && u.Scheme != "" && u.Host != "" {
		u.Scheme = strings.ToLower(u.Scheme)
		u.Host = strings.ToLower(u.Host)
		addr = u.String()
	}
	return addr, nil
}
