package testwasm_test

import (
	"context"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/testwasm"
)

var (
	examples   = []string{"counter", "hello", "kv", "ro", "rmw", "rmw_linear"}
	testGuests = []string{
		"badimport", "badptr", "badwasi", "badwasisig", "bigkey", "bigmem", "bigoutput", "garbage", "hook", "lockhold",
		"lockpair", "loop", "membomb", "noexport", "pull", "spin", "stateloop", "trap", "wasiclock",
	}
)

func TestNames(t *testing.T) {
	var want []string
	for _, e := range examples {
		want = append(want, "c/"+e, "go/"+e)
	}
	for _, g := range testGuests {
		want = append(want, "test/"+g)
	}
	slices.Sort(want)
	if got := testwasm.Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %v\nwant      %v", got, want)
	}
}

func TestBuildUnknownGuest(t *testing.T) {
	if _, err := testwasm.Build("c/nonexistent"); err == nil || !strings.Contains(err.Error(), "c/counter") {
		t.Errorf("Build(unknown) = %v; want an error listing the guests", err)
	}
}

// Every guest builds, and its imports and exports are what the ABI says:
// xfaas imports with their exact signatures, WASI preview 1 and nothing
// else; a handle () -> i32 export and the memory. The exceptions are the
// guests made to break these rules.
func TestGuestsHaveTheABIShape(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	sizes := map[string]int{}
	for _, name := range testwasm.Names() {
		bin := testwasm.Bytes(t, name)
		sizes[name] = len(bin)
		m, err := r.CompileModule(ctx, bin)
		if name == "test/garbage" {
			if err == nil {
				t.Errorf("%s compiles", name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		checkImports(t, name, m)
		checkExports(t, name, m)
	}
	logSizes(t, sizes)
}

func checkImports(t *testing.T, name string, m wazero.CompiledModule) {
	t.Helper()
	var xfaas, wasi []string
	for _, f := range m.ImportedFunctions() {
		module, fn, _ := f.Import()
		switch module {
		case abi.HostModule:
			xfaas = append(xfaas, fn)
			want, ok := abi.Imports[fn]
			if !ok {
				if name != "test/badimport" {
					t.Errorf("%s imports %s.%s, which the ABI does not have", name, module, fn)
				}
				continue
			}
			if !allI32(f.ParamTypes(), want.Params) || !allI32(f.ResultTypes(), want.Results) {
				t.Errorf("%s imports %s.%s%v -> %v; want %d i32 params, %d i32 results",
					name, module, fn, f.ParamTypes(), f.ResultTypes(), want.Params, want.Results)
			}
		case "wasi_snapshot_preview1":
			wasi = append(wasi, fn)
		default:
			t.Errorf("%s imports %s.%s", name, module, fn)
		}
	}
	switch {
	case name == "test/badimport" && !slices.Contains(xfaas, "nonexistent"):
		t.Errorf("%s does not import xfaas.nonexistent", name)
	case name == "c/hello" && (!slices.Equal(xfaas, []string{abi.SetOutput}) || len(wasi) > 0):
		t.Errorf("c/hello imports %v and WASI %v; want only set_output", xfaas, wasi)
	case strings.HasPrefix(name, "c/") && len(wasi) > 0:
		t.Errorf("%s imports WASI %v; C examples need no libc I/O", name, wasi)
	}
}

func checkExports(t *testing.T, name string, m wazero.CompiledModule) {
	t.Helper()
	handle, ok := m.ExportedFunctions()[abi.Handle]
	if name == "test/noexport" {
		if ok {
			t.Errorf("%s exports handle", name)
		}
		return
	}
	if !ok || !allI32(handle.ParamTypes(), 0) || !allI32(handle.ResultTypes(), 1) {
		t.Errorf("%s: no export handle() -> i32", name)
	}
	if _, ok := m.ExportedMemories()["memory"]; !ok {
		t.Errorf("%s does not export its memory", name)
	}
	// C and Go modules are reactors: the runtime calls _initialize once.
	if strings.HasPrefix(name, "c/") || strings.HasPrefix(name, "go/") {
		if init, ok := m.ExportedFunctions()["_initialize"]; !ok || !allI32(init.ParamTypes(), 0) || !allI32(init.ResultTypes(), 0) {
			t.Errorf("%s: no export _initialize() -> ()", name)
		}
	}
}

func allI32(types []api.ValueType, n int) bool {
	return len(types) == n && !slices.ContainsFunc(types, func(v api.ValueType) bool { return v != api.ValueTypeI32 })
}

// logSizes reports the module sizes and checks that the C guests stay tiny.
func logSizes(t *testing.T, sizes map[string]int) {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(sizes)) {
		fmt.Fprintf(&b, "\n%-20s %9d bytes", name, sizes[name])
	}
	t.Logf("module sizes:%s", b.String())
	for name, limit := range map[string]int{"c/hello": 512, "c/counter": 3 << 10} {
		if sizes[name] > limit {
			t.Errorf("%s is %d bytes; want at most %d", name, sizes[name], limit)
		}
	}
}

// repoRoot is two folders above this file.
func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		t.Fatal("cannot locate the repository from the test's source path")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// constants returns the integer constants declared in the Go files of dir
// (without tests), by name. Values must be literals, optionally negated.
func constants(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	fset := token.NewFileSet()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	consts := map[string]int64{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range spec.Names {
				if i < len(spec.Values) {
					if v, ok := intLiteral(spec.Values[i]); ok {
						consts[name.Name] = v
					}
				}
			}
			return false
		})
	}
	return consts
}

// intLiteral evaluates an integer literal, or the negation of one.
func intLiteral(e ast.Expr) (int64, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.INT {
			return constant.Int64Val(constant.MakeFromLiteral(e.Value, e.Kind, 0))
		}
	case *ast.UnaryExpr:
		if v, ok := intLiteral(e.X); ok && e.Op == token.SUB {
			return -v, true
		}
	case *ast.ParenExpr:
		return intLiteral(e.X)
	}
	return 0, false
}

// abiConstants returns the integer constants of internal/abi.
func abiConstants(t *testing.T) map[string]int64 {
	consts := constants(t, filepath.Join(repoRoot(t), "internal", "abi"))
	if consts["ErrStateFull"] != abi.ErrStateFull || consts["ModeLinearizable"] != abi.ModeLinearizable {
		t.Fatalf("parsing internal/abi went wrong: %v", consts)
	}
	return consts
}

// upperSnake turns ErrKeyTooLarge into ERR_KEY_TOO_LARGE and OK into OK.
func upperSnake(name string) string {
	return strings.ToUpper(regexp.MustCompile(`([a-z])([A-Z])`).ReplaceAllString(name, "${1}_${2}"))
}

// sdk/c/xfaas.h defines every number of internal/abi, as XFAAS_<NAME>, and
// declares exactly the ABI's imports.
func TestHeaderMatchesABI(t *testing.T) {
	header, err := os.ReadFile(filepath.Join(repoRoot(t), "sdk", "c", "xfaas.h"))
	if err != nil {
		t.Fatal(err)
	}
	defines := map[string]int64{}
	for _, m := range regexp.MustCompile(`(?m)^#define (XFAAS_\w+) \(?(-?\d+)\)?`).FindAllSubmatch(header, -1) {
		defines[string(m[1])], _ = strconv.ParseInt(string(m[2]), 10, 64)
	}
	for name, want := range abiConstants(t) {
		macro := "XFAAS_" + upperSnake(name)
		if got, ok := defines[macro]; !ok || got != want {
			t.Errorf("xfaas.h: %s = %d (defined: %v); internal/abi %s = %d", macro, got, ok, name, want)
		}
	}
	var imports []string
	for _, m := range regexp.MustCompile(`XFAAS_IMPORT\("(\w+)"\)\n`).FindAllSubmatch(header, -1) {
		imports = append(imports, string(m[1]))
	}
	if want := slices.Sorted(maps.Keys(abi.Imports)); !slices.Equal(slices.Sorted(slices.Values(imports)), want) {
		t.Errorf("xfaas.h imports %v; want %v", imports, want)
	}
	for _, attr := range []string{`import_module("` + abi.HostModule + `")`, `export_name("` + abi.Handle + `")`} {
		if !strings.Contains(string(header), attr) {
			t.Errorf("xfaas.h lacks %s", attr)
		}
	}
}

// The Go SDK declares every number of internal/abi with the same value:
// status codes as exported Errno constants (ErrConflict), log levels as
// exported Level constants, the rest unexported (modeCausal, inputBody,
// statusOK, statusAbsent).
func TestGoSDKMatchesABI(t *testing.T) {
	sdk := constants(t, filepath.Join(repoRoot(t), "sdk", "go"))
	for name, want := range abiConstants(t) {
		candidates := []string{name, strings.ToLower(name[:1]) + name[1:], "status" + strings.TrimPrefix(name, "Err")}
		i := slices.IndexFunc(candidates, func(c string) bool { _, ok := sdk[c]; return ok })
		if i < 0 {
			t.Errorf("sdk/go does not declare internal/abi %s (as any of %v)", name, candidates)
			continue
		}
		if got := sdk[candidates[i]]; got != want {
			t.Errorf("sdk/go %s = %d; internal/abi %s = %d", candidates[i], got, name, want)
		}
	}
}
