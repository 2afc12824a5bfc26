package baseline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/xfaas/xfaas/internal/abi"
)

// WorkerOptions configure one traditional container: the process that
// `xfaas bench-worker` runs.
type WorkerOptions struct {
	// Module is the path of the wasm module. Required.
	Module string
	// Function names the function; its state lives under "fn:<Function>:"
	// in Redis. The default is "bench".
	Function string
	// Redis is the address of the Redis server. Required.
	Redis string
	// Listen is the HTTP address. The default is 127.0.0.1:0.
	Listen string
	// CacheDir holds wazero's compilation cache, shared by the containers
	// as xfaas's containers share theirs. Empty means in memory.
	CacheDir string
	// Timeout bounds one invocation, as xfaas's timeout_ms. The default is
	// 30 s.
	Timeout time.Duration
}

// ReadyLine is what a worker prints on stdout once it serves.
type ReadyLine struct {
	Event string `json:"event"`
	Addr  string `json:"addr"`
	Pid   int    `json:"pid"`
}

// worker is one wasm instance of the module, serving one request at a time.
type worker struct {
	opts   WorkerOptions
	rt     wazero.Runtime
	mod    wazero.CompiledModule
	cfg    wazero.ModuleConfig
	h      *host
	mu     sync.Mutex // one request at a time: one worker per container
	inst   api.Module
	handle api.Function
	stack  [1]uint64
}

// ServeWorker runs a traditional container until ctx is done: it compiles
// the module, instantiates it once, connects to Redis (a pool of two
// connections: the worker runs one request at a time), prints a ReadyLine
// on stdout and serves POST /invoke (body in, output out) on loopback.
func ServeWorker(ctx context.Context, opts WorkerOptions, stdout io.Writer) error {
	if opts.Module == "" || opts.Redis == "" {
		return errors.New("bench-worker: --module and --redis are required")
	}
	if opts.Function == "" {
		opts.Function = "bench"
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	rdb := redis.NewClient(&redis.Options{Addr: opts.Redis, PoolSize: 2, MinIdleConns: 1})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", opts.Redis, err)
	}
	w, err := newWorker(ctx, opts, rdb)
	if err != nil {
		return err
	}
	defer w.rt.Close(context.Background())
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: w.routes(), ReadHeaderTimeout: 10 * time.Second}
	if err := json.NewEncoder(stdout).Encode(ReadyLine{Event: "ready", Addr: ln.Addr().String(), Pid: os.Getpid()}); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func newWorker(ctx context.Context, opts WorkerOptions, rdb *redis.Client) (*worker, error) {
	wasm, err := os.ReadFile(opts.Module)
	if err != nil {
		return nil, err
	}
	cache := wazero.NewCompilationCache()
	if opts.CacheDir != "" {
		if cache, err = wazero.NewCompilationCacheWithDir(opts.CacheDir); err != nil {
			return nil, err
		}
	}
	rtCfg := wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCloseOnContextDone(true).WithMemoryLimitPages(128 * 16)
	w := &worker{opts: opts, rt: wazero.NewRuntimeWithConfig(ctx, rtCfg)}
	w.h = &host{st: newStore(rdb, opts.Function, fmt.Sprintf("w%d", os.Getpid())), c: &call{}, function: opts.Function}
	if err := w.init(ctx, wasm); err != nil {
		w.rt.Close(ctx)
		return nil, err
	}
	return w, nil
}

func (w *worker) init(ctx context.Context, wasm []byte) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, w.rt); err != nil {
		return err
	}
	if err := w.h.instantiate(ctx, w.rt); err != nil {
		return err
	}
	var err error
	if w.mod, err = w.rt.CompileModule(ctx, wasm); err != nil {
		return fmt.Errorf("compile: %w", err)
	}
	w.cfg = wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithRandSource(rand.Reader).WithSysWalltime().WithSysNanotime()
	return w.instantiate(ctx)
}

// instantiate makes the worker's instance, at start and after a trap.
func (w *worker) instantiate(ctx context.Context) error {
	inst, err := w.rt.InstantiateModule(ctx, w.mod, w.cfg)
	if err != nil {
		return fmt.Errorf("instantiate: %w", err)
	}
	if f := inst.ExportedFunction("_initialize"); f != nil {
		if _, err := f.Call(ctx); err != nil {
			inst.Close(ctx)
			return fmt.Errorf("_initialize: %w", err)
		}
	}
	w.inst, w.handle = inst, inst.ExportedFunction(abi.Handle)
	if w.handle == nil {
		return fmt.Errorf("the module exports no %s", abi.Handle)
	}
	return nil
}

func (w *worker) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { rw.Write([]byte("ok")) })
	mux.HandleFunc("POST /invoke", w.serveInvoke)
	return mux
}

func (w *worker) serveInvoke(rw http.ResponseWriter, r *http.Request) {
	input, err := io.ReadAll(io.LimitReader(r.Body, 6<<20))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	out, status, err := w.invoke(r.Context(), input)
	if err != nil {
		http.Error(rw, err.Error(), status)
		return
	}
	rw.Write(out)
}

// invoke runs handle() once; a request waits for the instance while
// another runs.
func (w *worker) invoke(ctx context.Context, input []byte) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inst == nil {
		if err := w.instantiate(ctx); err != nil {
			return nil, http.StatusInternalServerError, err
		}
	}
	c := w.h.c
	c.ctx, c.input, c.output, c.pending.val = ctx, input, c.output[:0], nil
	callErr := w.handle.CallWithStack(ctx, w.stack[:])
	w.h.st.end(ctx)
	c.ctx, c.input = nil, nil
	if callErr != nil {
		w.inst.Close(context.Background())
		w.inst = nil
		return nil, http.StatusInternalServerError, fmt.Errorf("function trapped: %w", callErr)
	}
	if rc := int32(w.stack[0]); rc != 0 {
		return nil, http.StatusInternalServerError, fmt.Errorf("function error %d: %s", rc, c.output)
	}
	return bytes.Clone(c.output), http.StatusOK, nil // c.output is reused once mu is released
}
