package testwasm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Builders racing on a cold cache, as parallel test binaries do, all get
// the same complete module and leave no temporary files behind.
func TestConcurrentBuildsOnAColdCache(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(CacheEnv, dir)
	for _, name := range []string{"c/hello", "test/trap", "test/garbage"} {
		const builders = 8
		paths := make([]string, builders)
		errs := make([]error, builders)
		var wg sync.WaitGroup
		for i := range builders {
			wg.Go(func() { paths[i], errs[i] = buildCached(name) }) // no in-process singleflight
		}
		wg.Wait()
		for i := range builders {
			if errs[i] != nil {
				t.Fatalf("%s: %v", name, errs[i])
			}
			if paths[i] != paths[0] || filepath.Dir(filepath.Dir(paths[i])) != dir {
				t.Errorf("%s: paths %q and %q; want one path in %s", name, paths[i], paths[0], dir)
			}
		}
		b, err := os.ReadFile(paths[0])
		if err != nil || !bytes.HasPrefix(b, []byte("\x00asm\x01\x00\x00\x00")) {
			t.Errorf("%s: cached module is not WebAssembly (%v)", name, err)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "*", ".build-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary build folders left behind: %v", leftovers)
	}
}

// The cache key covers every source and the build arguments.
func TestKeyChangesWithSourcesAndArgs(t *testing.T) {
	src := filepath.Join(t.TempDir(), "guest.wat")
	write := func(s string) {
		if err := os.WriteFile(src, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := recipe{name: "test/guest", tool: "wat2wasm", args: []string{src}, sources: []string{src}}
	key := func(r recipe) string {
		k, err := r.key()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write("(module)")
	k1 := key(r)
	if key(r) != k1 {
		t.Fatal("the key is not deterministic")
	}
	write("(module (memory 1))")
	k2 := key(r)
	r.args = append(r.args, "--debug-names")
	k3 := key(r)
	if k1 == k2 || k2 == k3 {
		t.Errorf("keys %s, %s, %s; want three different keys", k1[:8], k2[:8], k3[:8])
	}
}

func TestGarbageIsDeterministic(t *testing.T) {
	if a, b := garbage(), garbage(); !bytes.Equal(a, b) || len(a) != 8+4096 {
		t.Errorf("garbage: %d and %d bytes, equal %v", len(a), len(b), bytes.Equal(a, b))
	}
}

// A missing tool fails the build with a message that names it and says how
// to install it.
func TestMissingToolIsExplained(t *testing.T) {
	t.Setenv(CacheEnv, t.TempDir())
	t.Setenv("PATH", t.TempDir())
	_, err := buildCached("c/hello")
	if err == nil || !strings.Contains(err.Error(), "clang is not installed") || !strings.Contains(err.Error(), "make test") {
		t.Errorf("build without clang: %v; want an error naming clang and make test", err)
	}
}
