// Package cptest starts a control plane on real parts for tests: an
// in-process NATS server with JetStream, the local placement backend
// running xfaas proxy processes, the memory registry (or one the test
// gives), and the HTTP API on a test server; Replica adds another control
// plane on the same cluster. It is what the control plane's, the CLI's and
// the benchmarks' tests run against.
package cptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/natstest"
	"github.com/xfaas/xfaas/internal/testbin"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// Env is a running control plane.
type Env struct {
	t testing.TB
	// URL is the HTTP API's base URL.
	URL     string
	Server  *controlplane.Server
	Backend *placement.Local
	Reg     registry.Registry
	// NATS is the server's client URL.
	NATS string
	// Dir is the local backend's directory: sockets, and each simulated
	// node's checkpoints under nodes/<node>/checkpoints.
	Dir string
	// Keys are the hint keysets of the functions Deploy deployed.
	Keys map[string]hint.Keyset

	cache string // the compilation cache
	log   hclog.Logger
}

// Options configure Start.
type Options struct {
	// Nodes and Pool size the local backend; the defaults are 1 and 1.
	Nodes, Pool   int
	Token         string
	SecondaryIdle time.Duration
	SweepInterval time.Duration
	// Network is "unix" (the default) or "tcp" for container addresses.
	Network string
	// BeforeClaim, if set, runs before every container claim of a
	// ColdSession or CopySession: a test holds one there until something
	// else has happened.
	BeforeClaim func(ctx context.Context)
	// Registry is the control plane's registry; the caller closes it. The
	// default is a new registry.Memory, and for Replica that one's
	// Replica.
	Registry registry.Registry
	// Placement, if set, makes the backend the control plane places
	// containers with from the local one: a test puts a fake in front of
	// it for what the local backend cannot be made to do (say, report a
	// node's room as Nomad would).
	Placement func(*placement.Local) placement.Backend
}

// Start starts a control plane, stopped when the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	ns := natstest.Start(t)
	cache := filepath.Join(os.TempDir(), "xfaas-test-compile-cache")
	// XFAAS_TEST_LOG=debug (or info, trace) shows more of the control plane.
	level := hclog.Warn
	if l := os.Getenv("XFAAS_TEST_LOG"); l != "" {
		level = hclog.LevelFromString(l)
	}
	log := hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: level})
	dir := t.TempDir()
	backend, err := placement.NewLocal(placement.LocalOptions{Binary: testbin.Xfaas(t), Dir: dir,
		Nodes: max(o.Nodes, 1), PoolSize: max(o.Pool, 1), CacheDir: cache, Cgroups: true, Network: o.Network, Logger: log.Named("local"),
		ProxyArgs: []string{"--nats", ns.ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after every control plane's clean-up.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := backend.Close(ctx); err != nil {
			t.Errorf("close backend: %v", err)
		}
	})
	if o.Registry == nil {
		o.Registry = registry.NewMemory()
	}
	e := &Env{t: t, Backend: backend, NATS: ns.ClientURL(), Dir: dir, Keys: map[string]hint.Keyset{}, cache: cache, log: log}
	e.serve(o)
	return e
}

// Replica starts another control plane on e's NATS server, backend and
// hint keysets, as a second control-plane process of the same cluster
// would be: its own NATS connection and, in o.Registry, its own owner
// leases on e's records (the default is e.Reg's Replica, for a
// registry.Memory). Nodes, Pool and Network are e's. It is stopped when
// the test ends, before e.
func (e *Env) Replica(o Options) *Env {
	e.t.Helper()
	if o.Registry == nil {
		mem, ok := e.Reg.(*registry.Memory)
		if !ok {
			e.t.Fatalf("cptest: Replica needs Options.Registry beside a %T", e.Reg)
		}
		o.Registry = mem.Replica()
	}
	r := &Env{t: e.t, Backend: e.Backend, NATS: e.NATS, Dir: e.Dir, Keys: e.Keys, cache: e.cache, log: e.log.Named("replica")}
	r.serve(o)
	return r
}

// serve starts e's control plane with o's settings on e's cluster, and
// its HTTP API on a test server.
func (e *Env) serve(o Options) {
	e.t.Helper()
	nc := natstest.Connect(e.t, e.NATS)
	e.Reg = o.Registry
	var placed placement.Backend = e.Backend
	if o.Placement != nil {
		placed = o.Placement(e.Backend)
	}
	if o.BeforeClaim != nil {
		placed = claimHook{Backend: placed, before: o.BeforeClaim}
	}
	var err error
	e.Server, err = controlplane.NewServer(context.Background(),
		controlplane.Config{Token: o.Token, CacheDir: e.cache, SecondaryIdle: o.SecondaryIdle, SweepInterval: o.SweepInterval},
		controlplane.Deps{NATS: nc, Backend: placed, Registry: e.Reg, Logger: e.log})
	if err != nil {
		e.t.Fatal(err)
	}
	api := httptest.NewServer(e.Server.Handler())
	e.URL = api.URL
	e.t.Cleanup(func() {
		api.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e.Server.Close(ctx)
	})
}

// claimHook is a backend with Options.BeforeClaim run before each claim.
type claimHook struct {
	placement.Backend
	before func(ctx context.Context)
}

func (h claimHook) Claim(ctx context.Context, node string, size placement.Size) (placement.Container, bool, error) {
	h.before(ctx)
	return h.Backend.Claim(ctx, node, size)
}

// testWriter sends log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Deploy deploys guest (a testwasm name) as name with config JSON and the
// function's hint keyset (new on its first deploy, kept afterwards, as the
// CLI's keystore does), and fails the test unless it succeeds.
func (e *Env) Deploy(name, guest, config string) controlplane.FunctionInfo {
	e.t.Helper()
	// Like the CLI's keystore: a function keeps its keyset across deploys.
	ks, ok := e.Keys[name]
	if !ok {
		ks = hint.Generate()
		e.Keys[name] = ks
	}
	vk, _ := ks.VerifyKey().MarshalText()
	resp := e.DeployForm(name, map[string][]byte{"module": testwasm.Bytes(e.t, guest), "config": []byte(config), "hint_key": vk}, "")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		e.t.Fatalf("deploy %s: %s %s", name, resp.Status, body)
	}
	var info controlplane.FunctionInfo
	if err := json.Unmarshal(body, &info); err != nil {
		e.t.Fatal(err)
	}
	return info
}

// DeployForm sends a deploy form with the given parts, as is.
func (e *Env) DeployForm(name string, parts map[string][]byte, token string) *http.Response {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for field, data := range parts {
		w, _ := mw.CreateFormFile(field, field)
		w.Write(data)
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPut, e.URL+"/v1/functions/"+name, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// Invocation is an answered invocation. For an error, Body is the error
// message and Kind its kind.
type Invocation struct {
	Status    int
	Body      string
	Container string
	Role      string
	Node      string
	SessionID string
	Kind      string
	// RetryAfter is the Retry-After header of an error.
	RetryAfter string
}

// Invoke calls fn with a hint sealed from label ("" for none).
func (e *Env) Invoke(fn, label, body string) Invocation {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/functions/"+fn+"/invoke", bytes.NewBufferString(body))
	if label != "" {
		token, err := e.Keys[fn].Seal(fn, label)
		if err != nil {
			e.t.Fatal(err)
		}
		req.Header.Set(hint.Header, token)
	}
	return e.Do(req)
}

// Do sends a request and reads the answer.
func (e *Env) Do(req *http.Request) Invocation {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	inv := Invocation{Status: resp.StatusCode, Body: string(data), Container: resp.Header.Get(controlplane.HeaderContainer),
		Role: resp.Header.Get(controlplane.HeaderRole), Node: resp.Header.Get(controlplane.HeaderNode),
		SessionID: resp.Header.Get(controlplane.HeaderSessionID)}
	if resp.StatusCode != http.StatusOK {
		var eb controlplane.ErrorBody
		json.Unmarshal(data, &eb)
		inv.Kind, inv.Body, inv.RetryAfter = eb.Kind, eb.Error, resp.Header.Get("Retry-After")
	}
	return inv
}

// MustInvoke is Invoke that fails the test unless the answer is 200.
func (e *Env) MustInvoke(fn, label, body string) Invocation {
	e.t.Helper()
	inv := e.Invoke(fn, label, body)
	if inv.Status != http.StatusOK {
		e.t.Fatalf("invoke %s %q: %d %s %s", fn, label, inv.Status, inv.Kind, inv.Body)
	}
	return inv
}

// GetJSON gets path from the API, decodes it into v (if not nil) and
// returns the status.
func (e *Env) GetJSON(path string, v any) int {
	e.t.Helper()
	resp, err := http.Get(e.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// Kill sends SIGKILL to a container's process, as a crash would.
func (e *Env) Kill(container string) {
	e.t.Helper()
	pid, ok := e.Backend.Pid(container)
	if !ok {
		e.t.Fatalf("no process for container %s", container)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		e.t.Fatal(err)
	}
}

// SessionID is the platform's id of label's session of fn.
func (e *Env) SessionID(fn, label string) string {
	token, err := e.Keys[fn].Seal(fn, label)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(hint.SessionIDOf(token))
}
