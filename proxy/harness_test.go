package proxy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/proxy/state"
)

// compileCache is shared by every test engine (and test binary), so each
// guest is compiled once: a Go guest takes about a second.
var compileCache = filepath.Join(os.TempDir(), "xfaas-test-compile-cache")

// fixture is one pool running a guest against its own state.
type fixture struct {
	t     testing.TB
	pool  *Pool
	store *state.Store
	logs  *syncBuffer
}

type fixtureOptions struct {
	scheme      state.Scheme
	maxWorkers  int
	maxQueue    int
	timeout     time.Duration
	memoryMB    int
	idleTimeout time.Duration
	placer      ThreadPlacer
	stateOpts   state.Options
}

func newFixture(t testing.TB, guest string, o fixtureOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	e, err := NewEngine(ctx, EngineOptions{CacheDir: compileCache, MemoryLimitMB: o.memoryMB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(ctx) })
	m, err := e.Compile(ctx, testwasm.Bytes(t, guest))
	if err != nil {
		t.Fatalf("compile %s: %v", guest, err)
	}
	o.stateOpts.Scheme = o.scheme
	f := &fixture{t: t, store: state.New(o.stateOpts), logs: &syncBuffer{}}
	log := hclog.New(&hclog.LoggerOptions{Output: f.logs, Level: hclog.Debug})
	f.pool, err = NewPool(e, m, PoolOptions{
		Function: "fn", Session: "sess", MaxWorkers: o.maxWorkers, MaxQueue: o.maxQueue,
		Timeout: o.timeout, IdleTimeout: o.idleTimeout, Placer: o.placer, Logger: log,
		NewAccessor: func() Accessor { return f.store.NewTxn() },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := f.pool.Close(ctx); err != nil {
			t.Errorf("close pool: %v", err)
		}
	})
	return f
}

func (f *fixture) invoke(input string) (string, error) {
	out, err := f.pool.Invoke(context.Background(), []byte(input))
	return string(out), err
}

func (f *fixture) mustInvoke(input string) string {
	f.t.Helper()
	out, err := f.invoke(input)
	if err != nil {
		f.t.Fatalf("invoke %.40q: %v", input, err)
	}
	return out
}

// state returns a copy of the whole session state.
func (f *fixture) state() map[string][]byte {
	m := map[string][]byte{}
	f.store.Range(func(k string, v []byte) bool {
		m[k] = bytes.Clone(v)
		return true
	})
	return m
}

func (f *fixture) put(key string, val []byte) {
	f.t.Helper()
	if err := f.store.NewTxn().Put(context.Background(), []byte(key), val, 0); err != nil {
		f.t.Fatal(err)
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) contains(sub string) bool { return strings.Contains(s.String(), sub) }

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
