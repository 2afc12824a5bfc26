package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/client"
	"github.com/xfaas/xfaas/controlplane/cptest"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/testwasm"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func verifyKeyText(t *testing.T, ks hint.Keyset) string {
	t.Helper()
	vk, err := ks.VerifyKey().MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	return string(vk)
}

// wantKind fails the test unless err is an *apierror.Error of kind whose
// message mentions says.
func wantKind(t *testing.T, what string, err error, kind apierror.Kind, says string) {
	t.Helper()
	ae, ok := errors.AsType[*apierror.Error](err)
	if !ok || ae.Kind != kind || !strings.Contains(ae.Message, says) {
		t.Errorf("%s: %v (%T); want %s mentioning %q", what, err, err, kind, says)
	}
}

func TestEveryCall(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	ctx := ctxFor(t)
	c := client.New(e.URL, "")
	ks := hint.Generate()

	info, err := c.Deploy(ctx, "counter", testwasm.Bytes(t, "c/counter"), []byte(`{"max_workers": 2}`), verifyKeyText(t, ks))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "counter" || info.Version == 0 || info.Hints != "sealed" || info.HintKeyID != ks.ID() || info.Config.MaxWorkers != 2 {
		t.Fatalf("deploy: %+v", info)
	}
	list, err := c.Functions(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "counter" {
		t.Fatalf("functions: %+v, %v", list, err)
	}
	if got, err := c.Function(ctx, "counter"); err != nil || got.Digest != info.Digest {
		t.Fatalf("function: %+v, %v", got, err)
	}

	token, _ := ks.Seal("counter", "alice")
	for _, want := range []string{"1", "2"} {
		resp, err := c.Invoke(ctx, "counter", token, []byte("incr"))
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Body) != want || resp.Role != "primary" || resp.Container == "" || resp.Node == "" || resp.SessionID != string(hint.SessionIDOf(token)) {
			t.Fatalf("invoke alice: %+v; want %s", resp, want)
		}
	}
	def, err := c.Invoke(ctx, "counter", "", nil)
	if err != nil || string(def.Body) != "1" || def.SessionID != string(hint.DefaultSession) {
		t.Fatalf("invoke default session: %+v, %v", def, err)
	}

	sessions, err := c.Sessions(ctx, "counter")
	if err != nil || len(sessions) != 2 {
		t.Fatalf("sessions: %+v, %v", sessions, err)
	}
	alice := string(hint.SessionIDOf(token))
	if reply, err := c.Evict(ctx, "counter", alice); err != nil || reply.Action != "evicted" || reply.Checkpoint.Keys != 1 || !reply.Checkpoint.Durable {
		t.Fatalf("evict: %+v, %v", reply, err)
	}
	sessions, err = c.Sessions(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		if s.ID == alice && s.Status == "active" {
			t.Fatalf("evicted session still active: %+v", s)
		}
	}

	if err := c.Delete(ctx, "counter"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Function(ctx, "counter")
	wantKind(t, "describe deleted", err, apierror.NotFound, "counter")
	if apierror.KindOf(err) != apierror.NotFound {
		t.Fatalf("KindOf(%v) = %s", err, apierror.KindOf(err))
	}
}

func TestErrorKinds(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	ctx := ctxFor(t)
	c := client.New(e.URL, "")
	e.Deploy("counter", "c/counter", "")

	_, err := c.Invoke(ctx, "nothere", "", nil)
	wantKind(t, "invoke unknown", err, apierror.NotFound, "nothere")
	_, err = c.Deploy(ctx, "bad", testwasm.Bytes(t, "test/garbage"), nil, "")
	wantKind(t, "deploy garbage", err, apierror.BadRequest, "invalid module")
	_, err = c.Deploy(ctx, "bad", testwasm.Bytes(t, "c/counter"), []byte(`{"max_workers": 0}`), "")
	wantKind(t, "deploy bad config", err, apierror.BadRequest, "max_workers")
	_, err = c.Deploy(ctx, "bad", testwasm.Bytes(t, "c/counter"), nil, "xfhv1_garbage")
	wantKind(t, "deploy bad hint key", err, apierror.BadRequest, "hint_key")
	forged, _ := hint.Generate().Seal("counter", "alice")
	_, err = c.Invoke(ctx, "counter", forged, nil)
	wantKind(t, "forged hint", err, apierror.BadHint, "not sealed")
	_, err = c.Invoke(ctx, "counter", "", make([]byte, 7<<20))
	wantKind(t, "7 MiB input", err, apierror.TooLarge, "exceeds")
	_, err = c.Evict(ctx, "counter", strings.Repeat("ab", hint.SessionIDLen/2))
	wantKind(t, "evict unknown session", err, apierror.NotFound, "no active session")
	_, err = c.Sessions(ctx, "nothere")
	wantKind(t, "sessions of unknown", err, apierror.NotFound, "nothere")
	// The connections survive error answers.
	if resp, err := c.Invoke(ctx, "counter", "", []byte("incr")); err != nil || string(resp.Body) != "1" {
		t.Fatalf("invoke after errors: %+v, %v", resp, err)
	}
}

func TestManagementToken(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Token: "x"})
	ctx := ctxFor(t)
	wasm := testwasm.Bytes(t, "c/counter")
	for _, token := range []string{"", "wrong"} {
		c := client.New(e.URL, token)
		_, err := c.Deploy(ctx, "counter", wasm, nil, "")
		wantKind(t, "deploy with token "+token, err, apierror.Unauthorized, "management token")
		wantKind(t, "delete with token "+token, c.Delete(ctx, "counter"), apierror.Unauthorized, "management token")
		wantKind(t, "evict with token "+token, evictErr(c.Evict(ctx, "counter", "default")), apierror.Unauthorized, "management token")
	}
	c := client.New(e.URL, "x")
	if _, err := c.Deploy(ctx, "counter", wasm, nil, ""); err != nil {
		t.Fatal(err)
	}
	// Reads and invocations need no token.
	anon := client.New(e.URL, "")
	if _, err := anon.Invoke(ctx, "counter", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Sessions(ctx, "counter"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Evict(ctx, "counter", "default"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "counter"); err != nil {
		t.Fatal(err)
	}
}

func TestFromEnvAndAddresses(t *testing.T) {
	t.Setenv(client.AddrEnv, "")
	if got := client.FromEnv().Addr(); got != client.DefaultAddr {
		t.Errorf("FromEnv without %s: %s", client.AddrEnv, got)
	}
	t.Setenv(client.AddrEnv, "Example.COM:9000/")
	if got := client.FromEnv().Addr(); got != "http://example.com:9000" {
		t.Errorf("FromEnv: %s", got)
	}
	for in, want := range map[string]string{
		"127.0.0.1:8080":           "http://127.0.0.1:8080",
		"  http://127.0.0.1:8080/": "http://127.0.0.1:8080",
		"HTTPS://CP.example:443":   "https://cp.example:443",
		"http://cp/prefix/":        "http://cp/prefix",
	} {
		if got := client.New(in, "").Addr(); got != want {
			t.Errorf("New(%q).Addr() = %q; want %q", in, got, want)
		}
	}
}

func TestUnreachableNamesTheAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	_, err = client.New(addr, "").Functions(ctxFor(t))
	if err == nil || !strings.Contains(err.Error(), "control plane "+addr+": ") || strings.Contains(err.Error(), "/v1/functions") {
		t.Fatalf("unreachable: %v", err)
	}
	if apierror.KindOf(err) != apierror.Internal {
		t.Fatalf("an unreachable control plane is kind %s", apierror.KindOf(err))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := client.New(addr, "").Functions(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled call: %v", err)
	}
}

// A proxy in front of the control plane may answer errors that are not
// ErrorBody JSON; the status then gives the kind.
func TestAnswersThatAreNotErrorBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/functions/busy/invoke":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/v1/functions/later/invoke":
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			http.Error(w, "<html><body>\n  Service   Unavailable\n</body></html>", http.StatusServiceUnavailable)
		default:
			http.Error(w, "bad gateway", http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	c := client.New(srv.URL, "")
	ctx := ctxFor(t)

	_, err := c.Invoke(ctx, "busy", "", nil)
	if ae, ok := errors.AsType[*apierror.Error](err); !ok || ae.Kind != apierror.Overloaded || ae.RetryAfter != 7 || ae.Message != "HTTP 429 Too Many Requests" {
		t.Errorf("429: %#v", err)
	}
	_, err = c.Invoke(ctx, "later", "", nil)
	if ae, ok := errors.AsType[*apierror.Error](err); !ok || ae.Kind != apierror.Unavailable || ae.RetryAfter < 85 || ae.RetryAfter > 91 ||
		ae.Message != "HTTP 503 Service Unavailable: <html><body> Service Unavailable </body></html>" {
		t.Errorf("503: %#v", err)
	}
	_, err = c.Functions(ctx)
	wantKind(t, "502", err, apierror.Internal, "HTTP 502 Bad Gateway: bad gateway")
}

// BenchmarkInvoke drives warm invocations of a C function through one
// shared Client from parallel goroutines, as a load generator does.
func BenchmarkInvoke(b *testing.B) {
	e := cptest.Start(b, cptest.Options{})
	e.Deploy("hello", "c/hello", `{"max_workers": 4}`)
	c := client.New(e.URL, "")
	ctx := b.Context()
	if _, err := c.Invoke(ctx, "hello", "", nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Invoke(ctx, "hello", "", nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func evictErr(_ controlplane.CheckpointReply, err error) error { return err }
