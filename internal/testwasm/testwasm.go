// Package testwasm builds the WebAssembly guests that xfaas tests run: the
// example functions of the C and Go SDKs (names "c/counter", "go/counter",
// ...) and the misbehaving modules of testdata/ ("test/trap", ...).
//
// Guests are built on demand with clang (C), wat2wasm (WAT) or go (Go) and
// cached in a folder keyed by a hash of their sources, build flags and tool
// versions: $XFAAS_WASM_CACHE, or xfaas-testwasm in the user's cache folder.
// Concurrent builds, in one process or several test binaries, are safe: each
// build writes a private temporary file and renames it into place.
//
// A missing tool is a test failure, never a skip: "make test" installs the
// tools.
package testwasm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// CacheEnv names the environment variable that overrides the cache folder.
const CacheEnv = "XFAAS_WASM_CACHE"

// Path returns the path of the built guest name, building it if needed. It
// fails the test if name is unknown or the build fails.
func Path(t testing.TB, name string) string {
	t.Helper()
	path, err := Build(name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// Bytes returns the module of the built guest name, like Path.
func Bytes(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(Path(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Names returns the names of all guests, sorted: "c/<example>" and
// "go/<example>" for the SDK examples, "test/<name>" for the test guests.
func Names() []string {
	recipes, err := loadRecipes()
	if err != nil {
		return nil
	}
	return slices.Sorted(func(yield func(string) bool) {
		for name := range recipes {
			if !yield(name) {
				return
			}
		}
	})
}

// Build builds the guest name, or finds it in the cache, and returns the
// path of its module. The file is never modified once there: callers may
// keep and share the path.
func Build(name string) (string, error) {
	b, _ := builds.LoadOrStore(name, &build{})
	return b.(*build).do(name)
}

// builds holds one build per guest name, so that parallel tests that ask for
// the same guest wait for one build.
var builds sync.Map // name -> *build

type build struct {
	once sync.Once
	path string
	err  error
}

func (b *build) do(name string) (string, error) {
	b.once.Do(func() {
		b.path, b.err = buildCached(name)
		if b.err != nil {
			b.err = fmt.Errorf("testwasm: %s: %w", name, b.err)
		}
	})
	return b.path, b.err
}

// buildCached returns the cached module of name, building it on a miss.
func buildCached(name string) (string, error) {
	recipes, err := loadRecipes()
	if err != nil {
		return "", err
	}
	r, ok := recipes[name]
	if !ok {
		return "", fmt.Errorf("unknown guest; the guests are %s", strings.Join(Names(), ", "))
	}
	key, err := r.key()
	if err != nil {
		return "", err
	}
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, filepath.FromSlash(name)+"-"+key[:16]+".wasm")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	return path, buildInto(r, path)
}

// buildInto builds r in a private temporary folder next to path and renames
// the module into place, so that nobody sees a partial file.
func buildInto(r recipe, path string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "out.wasm")
	if err := r.build(out); err != nil {
		return err
	}
	return os.Rename(out, path)
}

// cacheDir returns the cache folder: $XFAAS_WASM_CACHE, or xfaas-testwasm in
// the user's cache folder.
func cacheDir() (string, error) {
	if dir := os.Getenv(CacheEnv); dir != "" {
		return dir, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(dir, "xfaas-testwasm"), nil
}

// repoRoot returns the root of the xfaas repository: two folders above this
// file, or, when the binary was built with -trimpath, the first folder above
// the working directory that holds sdk/c/xfaas.h.
var repoRoot = sync.OnceValues(func() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if isRepoRoot(root) {
			return filepath.Clean(root), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for ; ; dir = filepath.Dir(dir) {
		if isRepoRoot(dir) {
			return dir, nil
		}
		if dir == filepath.Dir(dir) {
			return "", errors.New("cannot find the xfaas repository (a folder with sdk/c/xfaas.h) above the working directory")
		}
	}
})

func isRepoRoot(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "sdk", "c", "xfaas.h"))
	return err == nil
}
