package testwasm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// recipe says how to build one guest.
type recipe struct {
	name    string
	tool    string   // the program that builds it; "" for a generated guest
	dir     string   // the folder to run it in
	args    []string // its arguments, with outPlaceholder for the module
	env     []string // environment overrides
	sources []string // the files whose contents key the cache
}

// outPlaceholder stands for the output path in recipe.args.
const outPlaceholder = "$OUT"

// cFlags are the clang flags of every C guest: a reactor module (it exports
// _initialize, which the runtime calls once per instance), optimized for
// size, without the debug sections of wasi-libc's start files but with the
// name section, for readable traps.
var cFlags = []string{"--target=wasm32-wasi", "-Os", "-mexec-model=reactor", "-Wall", "-Wextra", "-Wl,--strip-debug"}

// toolHint says how to get each tool.
var toolHint = map[string]string{
	"clang":    "the Debian packages clang, lld and wasi-libc",
	"wat2wasm": "the Debian package wabt",
	"go":       "Go 1.24 or newer",
}

// loadRecipes finds every guest: sdk/c/examples/*.c, sdk/go/examples/*/,
// internal/testwasm/testdata/*.{c,wat}, and the generated test/garbage.
var loadRecipes = sync.OnceValues(func() (map[string]recipe, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	recipes := map[string]recipe{garbageName: {name: garbageName}}
	add := func(r recipe) { recipes[r.name] = r }

	header := filepath.Join(root, "sdk", "c", "xfaas.h")
	cExamples, _ := filepath.Glob(filepath.Join(root, "sdk", "c", "examples", "*.c"))
	for _, src := range cExamples {
		add(clangRecipe("c/"+stem(src), src, header))
	}
	testdata := filepath.Join(root, "internal", "testwasm", "testdata")
	cTests, _ := filepath.Glob(filepath.Join(testdata, "*.c"))
	for _, src := range cTests {
		add(clangRecipe("test/"+stem(src), src, header))
	}
	watTests, _ := filepath.Glob(filepath.Join(testdata, "*.wat"))
	for _, src := range watTests {
		add(recipe{
			name:    "test/" + stem(src),
			tool:    "wat2wasm",
			args:    []string{src, "-o", outPlaceholder},
			sources: []string{src},
		})
	}

	sdk := filepath.Join(root, "sdk", "go")
	goSources, err := goModuleSources(sdk)
	if err != nil {
		return nil, err
	}
	goMains, _ := filepath.Glob(filepath.Join(sdk, "examples", "*", "main.go"))
	for _, main := range goMains {
		example := filepath.Base(filepath.Dir(main))
		add(recipe{
			name:    "go/" + example,
			tool:    "go",
			dir:     sdk,
			args:    []string{"build", "-buildmode=c-shared", "-trimpath", "-o", outPlaceholder, "./examples/" + example},
			env:     []string{"GOOS=wasip1", "GOARCH=wasm", "GOWORK=off"},
			sources: goSources,
		})
	}
	return recipes, nil
})

func clangRecipe(name, src, header string) recipe {
	args := append(append([]string{}, cFlags...), "-I", filepath.Dir(header), "-o", outPlaceholder, src)
	return recipe{name: name, tool: "clang", args: args, sources: []string{src, header}}
}

// goModuleSources lists the files of the Go SDK module that a build reads:
// go.mod and every non-test .go file.
func goModuleSources(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && d.Name() == "testdata":
			return filepath.SkipDir
		case d.Name() == "go.mod" || strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go"):
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

func stem(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}

// key hashes everything the module depends on: the recipe, the tool's
// version and the sources.
func (r recipe) key() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "testwasm 1\n%s\n%q\n%q\n", r.name, r.args, r.env)
	if r.tool != "" {
		v, err := toolVersion(r.tool)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\n", v)
	}
	for _, src := range r.sources {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(src), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// build writes the module to out.
func (r recipe) build(out string) error {
	if r.name == garbageName {
		return os.WriteFile(out, garbage(), 0o644)
	}
	path, err := lookTool(r.tool)
	if err != nil {
		return err
	}
	args := make([]string, len(r.args))
	for i, a := range r.args {
		args[i] = strings.ReplaceAll(a, outPlaceholder, out)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), r.env...)
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", r.tool, strings.Join(args, " "), err, output)
	}
	return nil
}

// toolVersions caches the version of each tool, so that keying many guests
// runs each tool once. Failures are not cached: the tool may be installed
// (or PATH fixed) by the next call.
var toolVersions struct {
	sync.Mutex
	m map[string]string
}

// toolVersion returns what the tool says its version is.
func toolVersion(tool string) (string, error) {
	toolVersions.Lock()
	defer toolVersions.Unlock()
	if v, ok := toolVersions.m[tool]; ok {
		return v, nil
	}
	path, err := lookTool(tool)
	if err != nil {
		return "", err
	}
	args := []string{"--version"}
	if tool == "go" {
		args = []string{"env", "GOVERSION"}
	}
	out, err := exec.Command(path, args...).Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", tool, strings.Join(args, " "), err)
	}
	if toolVersions.m == nil {
		toolVersions.m = map[string]string{}
	}
	toolVersions.m[tool] = string(bytes.TrimSpace(out))
	return toolVersions.m[tool], nil
}

// lookTool finds tool in PATH, or explains how to install it.
func lookTool(tool string) (string, error) {
	path, err := exec.LookPath(tool)
	if err != nil {
		return "", fmt.Errorf("%s is not installed (%v): `make test` installs it, from %s", tool, err, toolHint[tool])
	}
	return path, nil
}

// garbageName is the guest whose module is not WebAssembly.
const garbageName = "test/garbage"

// garbage returns the test/garbage module: the WebAssembly magic number and
// version, so that a decoder gets past the header, then 4 KiB of
// pseudo-random bytes from a fixed seed, the same on every build.
func garbage() []byte {
	rng := rand.New(rand.NewChaCha8([32]byte([]byte("xfaas testwasm garbage module..."))))
	b := []byte("\x00asm\x01\x00\x00\x00")
	for range 4096 {
		b = append(b, byte(rng.Uint32()))
	}
	return b
}
