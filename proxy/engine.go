package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/apierror"
)

// EngineOptions configure an Engine.
type EngineOptions struct {
	// CacheDir holds wazero's compilation cache, so that a restarted
	// container (or another container on the node) does not recompile a
	// module it has seen. Empty means an in-memory cache.
	CacheDir string
	// MemoryLimitMB bounds each instance's linear memory. The default is
	// 128; the most is MaxMemoryMB.
	MemoryLimitMB int
}

// Engine is the process's one wazero runtime: the compilation cache, the
// WASI and xfaas host modules, and cancellation that really stops a guest
// (a done context closes the instance at its next function call or loop
// back-edge).
type Engine struct {
	rt    wazero.Runtime
	cache wazero.CompilationCache
}

// MaxMemoryMB is the linear memory of wasm32: 65,536 pages of 64 KiB.
const MaxMemoryMB = 4096

// NewEngine starts a runtime with the host modules instantiated.
func NewEngine(ctx context.Context, opts EngineOptions) (*Engine, error) {
	if opts.MemoryLimitMB <= 0 {
		opts.MemoryLimitMB = 128
	}
	if opts.MemoryLimitMB > MaxMemoryMB {
		return nil, fmt.Errorf("memory limit %d MiB exceeds the %d MiB of wasm32", opts.MemoryLimitMB, MaxMemoryMB)
	}
	cache := wazero.NewCompilationCache()
	if opts.CacheDir != "" {
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(opts.CacheDir); err != nil {
			return nil, fmt.Errorf("open compilation cache %s: %w", opts.CacheDir, err)
		}
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(uint32(opts.MemoryLimitMB) * 16) // 64 KiB pages
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	e := &Engine{rt: rt, cache: cache}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		e.Close(ctx)
		return nil, fmt.Errorf("instantiate wasi: %w", err)
	}
	if err := instantiateHost(ctx, rt); err != nil {
		e.Close(ctx)
		return nil, fmt.Errorf("instantiate host module: %w", err)
	}
	return e, nil
}

// Close releases the runtime and every module compiled or instantiated by it.
func (e *Engine) Close(ctx context.Context) error {
	return errors.Join(e.rt.Close(ctx), e.cache.Close(ctx))
}

// Module is a compiled, validated function module.
type Module struct {
	compiled wazero.CompiledModule
	// Digest is "sha256:<hex>" of the module bytes.
	Digest string
	// CompileTime is how long compilation took (short on a cache hit).
	CompileTime time.Duration
	init        bool // exports _initialize (a reactor module)
}

// MemoryMB is the linear memory the module starts with, in MiB rounded up:
// an instance needs at least that much of its memory limit. A module
// imports no memory (validate), so this is the memory it exports, as WASI
// requires.
func (m *Module) MemoryMB() int {
	var pages uint32
	for _, mem := range m.compiled.ExportedMemories() {
		pages = max(pages, mem.Min())
	}
	return int((uint64(pages) + 15) / 16)
}

// Close releases the compiled module. Only a module no pool runs may be
// closed: the engine shares the compiled code of equal modules.
func (m *Module) Close(ctx context.Context) error { return m.compiled.Close(ctx) }

// Compile compiles wasm and checks it against the ABI. An invalid module is
// an apierror of kind BadRequest whose message says why.
func (e *Engine) Compile(ctx context.Context, wasm []byte) (*Module, error) {
	start := time.Now()
	compiled, err := e.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, apierror.New(apierror.BadRequest, "invalid module: %v", err)
	}
	m := &Module{compiled: compiled, Digest: Digest(wasm), CompileTime: time.Since(start)}
	if m.init, err = validate(compiled, e.rt.Module(wasi_snapshot_preview1.ModuleName)); err != nil {
		compiled.Close(ctx)
		return nil, apierror.New(apierror.BadRequest, "invalid module: %v", err)
	}
	return m, nil
}

// Digest is the content address of a module: "sha256:" and the hex digest.
func Digest(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// validate checks that the module exports handle() -> i32, imports only
// known functions of the xfaas and WASI modules (wasi, as instantiated),
// with their signatures, and imports no memory. It reports whether the
// module is a reactor (exports _initialize).
func validate(m wazero.CompiledModule, wasi api.Module) (reactor bool, err error) {
	handle, ok := m.ExportedFunctions()[abi.Handle]
	if !ok {
		return false, fmt.Errorf("no exported function %q", abi.Handle)
	}
	if !sameTypes(handle.ParamTypes(), nil) || !sameTypes(handle.ResultTypes(), []api.ValueType{api.ValueTypeI32}) {
		return false, fmt.Errorf("%s must have type () -> i32", abi.Handle)
	}
	for _, imp := range m.ImportedFunctions() {
		mod, name, _ := imp.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
			def, known := wasi.ExportedFunctionDefinitions()[name]
			if !known {
				return false, fmt.Errorf("unknown import %s.%s", mod, name)
			}
			if !sameTypes(imp.ParamTypes(), def.ParamTypes()) || !sameTypes(imp.ResultTypes(), def.ResultTypes()) {
				return false, fmt.Errorf("import %s.%s has the wrong signature", mod, name)
			}
		case abi.HostModule:
			sig, known := abi.Imports[name]
			if !known {
				return false, fmt.Errorf("unknown import %s.%s", mod, name)
			}
			if !allI32(imp.ParamTypes(), sig.Params) || !allI32(imp.ResultTypes(), sig.Results) {
				return false, fmt.Errorf("import %s.%s has the wrong signature", mod, name)
			}
		default:
			return false, fmt.Errorf("import from unknown module %q (only %q and %q are provided)", mod, abi.HostModule, wasi_snapshot_preview1.ModuleName)
		}
	}
	if len(m.ImportedMemories()) > 0 {
		return false, errors.New("the module must define its own memory, not import one")
	}
	_, reactor = m.ExportedFunctions()["_initialize"]
	return reactor, nil
}

func sameTypes(got, want []api.ValueType) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func allI32(types []api.ValueType, n int) bool {
	if len(types) != n {
		return false
	}
	for _, t := range types {
		if t != api.ValueTypeI32 {
			return false
		}
	}
	return true
}
