package controlplane

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
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/testbin"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// env is a control plane on real parts: an in-process NATS server with
// JetStream, the local backend running xfaas proxy processes, the memory
// registry, and the HTTP API on a test server.
type env struct {
	t       *testing.T
	srv     *Server
	api     *httptest.Server
	backend *placement.Local
	reg     *registry.Memory
	keys    map[string]hint.Keyset
}

type envOptions struct {
	nodes, pool   int
	token         string
	secondaryIdle time.Duration
}

func startEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cache := filepath.Join(os.TempDir(), "xfaas-test-compile-cache")
	log := hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Warn})
	backend, err := placement.NewLocal(placement.LocalOptions{Binary: testbin.Xfaas(t), Dir: t.TempDir(),
		Nodes: max(o.nodes, 1), PoolSize: max(o.pool, 1), CacheDir: cache, Cgroups: true, Logger: log.Named("local")})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, backend: backend, reg: registry.NewMemory(), keys: map[string]hint.Keyset{}}
	e.srv, err = NewServer(context.Background(), Config{Token: o.token, CacheDir: cache, SecondaryIdle: o.secondaryIdle},
		Deps{NATS: nc, Backend: backend, Registry: e.reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.api = httptest.NewServer(e.srv.Handler())
	t.Cleanup(func() {
		e.api.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e.srv.Close(ctx)
		if err := backend.Close(ctx); err != nil {
			t.Errorf("close backend: %v", err)
		}
	})
	return e
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// deploy deploys guest as name with a fresh hint keyset and config JSON.
func (e *env) deploy(name, guest, config string) FunctionInfo {
	e.t.Helper()
	ks := hint.Generate()
	e.keys[name] = ks
	vk, _ := ks.VerifyKey().MarshalText()
	resp := e.deployForm(name, map[string][]byte{"module": testwasm.Bytes(e.t, guest), "config": []byte(config), "hint_key": vk}, "")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		e.t.Fatalf("deploy %s: %s %s", name, resp.Status, body)
	}
	var info FunctionInfo
	if err := json.Unmarshal(body, &info); err != nil {
		e.t.Fatal(err)
	}
	return info
}

func (e *env) deployForm(name string, parts map[string][]byte, token string) *http.Response {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for field, data := range parts {
		w, _ := mw.CreateFormFile(field, field)
		w.Write(data)
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPut, e.api.URL+"/v1/functions/"+name, &buf)
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

// invocation is an answered invocation.
type invocation struct {
	status    int
	body      string
	container string
	role      string
	node      string
	kind      string
}

// invoke calls fn with a hint sealed from label ("" for none).
func (e *env) invoke(fn, label, body string) invocation {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.api.URL+"/v1/functions/"+fn+"/invoke", bytes.NewBufferString(body))
	if label != "" {
		token, err := e.keys[fn].Seal(fn, label)
		if err != nil {
			e.t.Fatal(err)
		}
		req.Header.Set(hint.Header, token)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) invocation {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	inv := invocation{status: resp.StatusCode, body: string(data), container: resp.Header.Get(HeaderContainer),
		role: resp.Header.Get(HeaderRole), node: resp.Header.Get(HeaderNode)}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		json.Unmarshal(data, &eb)
		inv.kind, inv.body = eb.Kind, eb.Error
	}
	return inv
}

func (e *env) mustInvoke(fn, label, body string) invocation {
	e.t.Helper()
	inv := e.invoke(fn, label, body)
	if inv.status != http.StatusOK {
		e.t.Fatalf("invoke %s %q: %d %s %s", fn, label, inv.status, inv.kind, inv.body)
	}
	return inv
}

func (e *env) getJSON(path string, v any) int {
	e.t.Helper()
	resp, err := http.Get(e.api.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

func decodeJSON(resp *http.Response, v any) {
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(v)
}

// kill sends SIGKILL to a container's process, as a crash would.
func (e *env) kill(container string) {
	e.t.Helper()
	pid, ok := e.backend.Pid(container)
	if !ok {
		e.t.Fatalf("no process for container %s", container)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		e.t.Fatal(err)
	}
}

// sessionID is the platform's id of label's session of fn.
func (e *env) sessionID(fn, label string) string {
	token, err := e.keys[fn].Seal(fn, label)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(hint.SessionIDOf(token))
}
