package controlplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/cptest"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/linearcheck"
	"github.com/xfaas/xfaas/internal/testwasm"
)

func TestDeployInvokeAndDescribe(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	info := e.Deploy("counter", "c/counter", `{"max_workers": 2}`)
	if info.Version == 0 || info.Hints != "sealed" || info.Config.MaxWorkers != 2 || !strings.HasPrefix(info.Digest, "sha256:") {
		t.Fatalf("deploy answered %+v", info)
	}
	for _, want := range []string{"1", "2", "3"} {
		inv := e.MustInvoke("counter", "", "incr")
		if inv.Body != want || inv.Role != "primary" || inv.Container == "" || inv.Node == "" {
			t.Fatalf("invoke: %+v; want %s from a primary", inv, want)
		}
	}
	var list []controlplane.FunctionInfo
	if e.GetJSON("/v1/functions", &list); len(list) != 1 || list[0].Name != "counter" {
		t.Fatalf("list: %+v", list)
	}
	var sessions []controlplane.SessionInfo
	e.GetJSON("/v1/functions/counter/sessions", &sessions)
	if len(sessions) != 1 || sessions[0].ID != string(hint.DefaultSession) || sessions[0].Primary == nil || sessions[0].StateKeys != 1 || sessions[0].Status != "active" {
		t.Fatalf("sessions: %+v", sessions)
	}
	if status := e.GetJSON("/v1/functions/nothere", nil); status != http.StatusNotFound {
		t.Fatalf("describe unknown: %d", status)
	}
	if inv := e.Invoke("nothere", "", ""); inv.Status != http.StatusNotFound || inv.Kind != "not_found" {
		t.Fatalf("invoke unknown: %+v", inv)
	}
	// A redeploy without a hint key keeps the function's: a client's
	// tokens stay valid, and name the same session.
	resp := e.DeployForm("counter", map[string][]byte{"module": testwasm.Bytes(t, "c/counter"), "config": []byte(`{"max_workers": 3}`)}, "")
	var again controlplane.FunctionInfo
	json.NewDecoder(resp.Body).Decode(&again)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || again.Version <= info.Version || again.HintKeyID != info.HintKeyID || again.Config.MaxWorkers != 3 {
		t.Fatalf("redeploy: %d %+v after %+v", resp.StatusCode, again, info)
	}
	if inv := e.MustInvoke("counter", "alice", "incr"); inv.SessionID != e.SessionID("counter", "alice") {
		t.Fatalf("a hint sealed before the redeploy: %+v", inv)
	}
}

func TestDeployRefusesBadInput(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	wasm := testwasm.Bytes(t, "c/counter")
	cases := []struct {
		name  string
		parts map[string][]byte
		kind  string
		says  string
	}{
		{"good", map[string][]byte{"module": testwasm.Bytes(t, "test/garbage")}, "bad_request", "invalid module"},
		{"good", map[string][]byte{"module": testwasm.Bytes(t, "test/noexport")}, "bad_request", "handle"},
		{"good", map[string][]byte{"module": testwasm.Bytes(t, "test/badwasi")}, "bad_request", "wasi_snapshot_preview1.nonexistent"},
		{"good", map[string][]byte{"module": testwasm.Bytes(t, "test/bigmem")}, "bad_request", "200 MiB of linear memory"},
		{"good", map[string][]byte{"config": []byte(`{}`)}, "bad_request", "no module part"},
		{"good", map[string][]byte{"module": wasm, "config": []byte(`{"max_workers": 0}`)}, "bad_request", "max_workers"},
		{"good", map[string][]byte{"module": wasm, "config": []byte(`{"typo": 1}`)}, "bad_request", "unknown field"},
		{"good", map[string][]byte{"module": wasm, "hint_key": []byte("xfhv1_garbage")}, "bad_request", "hint_key"},
		{"good", map[string][]byte{"module": wasm, "config": []byte(`{"hook": "missing"}`)}, "bad_request", "not deployed"},
		{"good", map[string][]byte{"module": wasm, "extra": []byte("x")}, "bad_request", "unknown form part"},
		{"Bad.Name", map[string][]byte{"module": wasm}, "bad_request", "function names"},
		{"good", map[string][]byte{"module": make([]byte, 33<<20)}, "too_large", "exceeds"},
	}
	for _, c := range cases {
		resp := e.DeployForm(c.name, c.parts, "")
		var eb controlplane.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if eb.Kind != c.kind || !strings.Contains(eb.Error, c.says) {
			t.Errorf("deploy %s with %v: %d %+v; want %s mentioning %q", c.name, keys(c.parts), resp.StatusCode, eb, c.kind, c.says)
		}
	}
	if status := e.GetJSON("/v1/functions/good", nil); status != http.StatusNotFound {
		t.Fatalf("a refused deploy left a function behind: %d", status)
	}
	e.Deploy("good", "c/counter", "")
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/functions/good/invoke", bytes.NewReader(make([]byte, 7<<20)))
	if inv := e.Do(req); inv.Status != http.StatusRequestEntityTooLarge || inv.Kind != "too_large" {
		t.Fatalf("7 MiB invoke: %+v", inv)
	}
}

// A module's memory is checked at deploy against the function's own
// worker_memory_mb: one that needs more is refused there, not at its
// first invoke, and one that fits is deployed whatever the control
// plane's own limits.
func TestDeployChecksMemoryAgainstTheFunction(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	resp := e.DeployForm("big", map[string][]byte{"module": testwasm.Bytes(t, "test/bigmem"),
		"config": []byte(`{"worker_memory_mb": 199}`)}, "")
	var eb controlplane.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(eb.Error, "worker_memory_mb is 199") {
		t.Fatalf("deploy of a 200 MiB module with 199 MiB workers: %d %+v", resp.StatusCode, eb)
	}
	e.Deploy("big", "test/bigmem", `{"worker_memory_mb": 256, "max_workers": 1}`)
	if inv := e.Invoke("big", "", ""); inv.Status != http.StatusOK {
		t.Fatalf("invoke of the 200 MiB module with 256 MiB workers: %+v", inv)
	}
}

// Forged, tampered, truncated, foreign and misplaced hints are all 403.
func TestHintForgeryMatrix(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	e.Deploy("counter", "c/counter", "")
	e.Deploy("other", "c/counter", "")
	good, _ := e.Keys["counter"].Seal("counter", "alice")
	foreign, _ := e.Keys["other"].Seal("other", "alice")
	wrongKey, _ := hint.Generate().Seal("counter", "alice")
	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 1
	if flipped[len(flipped)/2] == good[len(good)/2] {
		t.Fatal("flip did nothing")
	}
	bad := map[string]string{
		"tampered":          string(flipped),
		"truncated":         good[:len(good)-4],
		"extended":          good + "AAAA",
		"another function":  foreign,
		"another keyset":    wrongKey,
		"not base64":        strings.Repeat("!", len(good)),
		"label in the open": "alice",
	}
	for what, token := range bad {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/functions/counter/invoke", strings.NewReader("incr"))
		req.Header.Set(hint.Header, token)
		if inv := e.Do(req); inv.Status != http.StatusForbidden || inv.Kind != "bad_hint" || strings.Contains(inv.Body, "alice") {
			t.Errorf("%s: %d %s %q; want 403 bad_hint without the label", what, inv.Status, inv.Kind, inv.Body)
		}
	}
	if inv := e.Invoke("counter", "alice", "incr"); inv.Status != http.StatusOK || inv.Body != "1" {
		t.Fatalf("the good Token: %+v", inv)
	}
	// A function deployed without a key serves only the default session.
	resp := e.DeployForm("keyless", map[string][]byte{"module": testwasm.Bytes(t, "c/counter")}, "")
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/functions/keyless/invoke", nil)
	req.Header.Set(hint.Header, good)
	if inv := e.Do(req); inv.Status != http.StatusForbidden {
		t.Fatalf("hint for a keyless function: %+v", inv)
	}
}

// One session's requests reach one primary at low load; sessions spread
// across nodes.
func TestStickinessAndSpread(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Nodes: 2, Pool: 2})
	e.Deploy("counter", "c/counter", "")
	where := map[string]string{}
	nodes := map[string]bool{}
	for round := range 5 {
		for _, label := range []string{"alice", "bob", "carol", "dave"} {
			inv := e.MustInvoke("counter", label, "incr")
			if inv.Body != strconv.Itoa(round+1) {
				t.Fatalf("%s round %d: count %s", label, round, inv.Body)
			}
			if prev, ok := where[label]; ok && prev != inv.Container {
				t.Fatalf("%s moved from %s to %s at low load", label, prev, inv.Container)
			}
			where[label] = inv.Container
			nodes[inv.Node] = true
		}
	}
	if len(nodes) != 2 {
		t.Fatalf("4 sessions on nodes %v; want them spread over both", nodes)
	}
}

// Many clients on one session: the primary fills its workers, then
// secondaries join (on the primary's node first); the count is exact and
// the history linearizable.
func TestScaleOutKeepsStateLinearizable(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Nodes: 2, Pool: 3})
	e.Deploy("counter", "c/counter", `{"max_workers": 2, "max_containers": 4}`)
	e.MustInvoke("counter", "alice", "get") // the namespace exists before the rush
	h := linearcheck.NewHistory()
	var wg sync.WaitGroup
	var mu sync.Mutex
	roles := map[string]int{}
	nodes := map[string]int{}
	const clients, each = 24, 10
	for c := range clients {
		wg.Go(func() {
			for range each {
				call := h.Now()
				inv := e.Invoke("counter", "alice", "incr")
				ret := h.Now()
				if inv.Status != http.StatusOK {
					t.Errorf("client %d: %d %s %s", c, inv.Status, inv.Kind, inv.Body)
					return
				}
				h.Add(c, linearcheck.Input{Kind: linearcheck.Incr, Key: "count"}, call, linearcheck.Output{Value: inv.Body}, ret)
				mu.Lock()
				roles[inv.Role]++
				nodes[inv.Node+"/"+inv.Role]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got := e.MustInvoke("counter", "alice", "get").Body; got != strconv.Itoa(clients*each) {
		t.Fatalf("count %s after %d increments", got, clients*each)
	}
	if roles["secondary"] == 0 {
		t.Fatalf("no request reached a secondary: %v", roles)
	}
	t.Logf("served by role: %v; by node/role: %v", roles, nodes)
	h.Check(t, time.Minute)
	var sessions []controlplane.SessionInfo
	e.GetJSON("/v1/functions/counter/sessions", &sessions)
	if len(sessions) != 1 || sessions[0].Primary == nil || len(sessions[0].Secondaries) == 0 || len(sessions[0].Secondaries) > 3 {
		t.Fatalf("session after the rush: %+v", sessions)
	}
}

// Past max_containers × max_workers and the queue, requests get 429 with
// Retry-After; every request answered 200 was applied.
func TestOverloadAnswers429(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	e.Deploy("spin", "test/spin", `{"max_workers": 1, "max_containers": 1}`)
	e.MustInvoke("spin", "", "1")
	var wg sync.WaitGroup
	var ok, overloaded atomic.Int64
	var retryAfter atomic.Value
	for range 12 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/functions/spin/invoke", strings.NewReader("200"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusTooManyRequests:
				overloaded.Add(1)
				retryAfter.Store(resp.Header.Get("Retry-After"))
			default:
				t.Errorf("status %s", resp.Status)
			}
		})
	}
	wg.Wait()
	if overloaded.Load() == 0 || ok.Load() < 5 {
		t.Fatalf("%d ok, %d overloaded; want 1 running + 4 queued served and the rest refused", ok.Load(), overloaded.Load())
	}
	if ra, _ := retryAfter.Load().(string); ra == "" {
		t.Fatal("429 without Retry-After")
	}
}

func TestManagementToken(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Token: "s3cret"})
	wasm := testwasm.Bytes(t, "c/counter")
	for _, token := range []string{"", "wrong"} {
		resp := e.DeployForm("counter", map[string][]byte{"module": wasm}, token)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("deploy with token %q: %s", token, resp.Status)
		}
	}
	resp := e.DeployForm("counter", map[string][]byte{"module": wasm}, "s3cret")
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("deploy with the Token: %s", resp.Status)
	}
	if inv := e.Invoke("counter", "", "incr"); inv.Status != http.StatusOK {
		t.Fatalf("invoke needs no Token: %+v", inv)
	}
	req, _ := http.NewRequest(http.MethodDelete, e.URL+"/v1/functions/counter", nil)
	if inv := e.Do(req); inv.Status != http.StatusUnauthorized {
		t.Fatalf("delete without the Token: %+v", inv)
	}
}

func TestDeleteReleasesContainers(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	e.Deploy("counter", "c/counter", "")
	e.MustInvoke("counter", "alice", "incr")
	req, _ := http.NewRequest(http.MethodDelete, e.URL+"/v1/functions/counter", nil)
	if inv := e.Do(req); inv.Status != http.StatusOK {
		t.Fatalf("delete: %+v", inv)
	}
	if inv := e.Invoke("counter", "", "incr"); inv.Status != http.StatusNotFound {
		t.Fatalf("invoke after delete: %+v", inv)
	}
	waitFor(t, "containers released", func() bool {
		nodes, _ := e.Backend.Nodes(t.Context())
		return nodes[0].Claimed == 0
	})
}

// A session whose primary process dies is recreated on the next request.
func TestLostPrimaryIsReplaced(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 2})
	e.Deploy("counter", "c/counter", "")
	first := e.MustInvoke("counter", "alice", "incr")
	regs, _ := e.Reg.List(t.Context(), "counter")
	if len(regs) != 1 || regs[0].Container != first.Container || regs[0].Role != "primary" {
		t.Fatalf("registry: %+v", regs)
	}
	e.Kill(first.Container)
	waitFor(t, "lost primary forgotten", func() bool {
		_, err := e.Reg.Primary(t.Context(), "counter", e.SessionID("counter", "alice"))
		return err != nil
	})
	next := e.MustInvoke("counter", "alice", "incr")
	if next.Container == first.Container {
		t.Fatal("served by the dead container")
	}
}

// A hook that a function names cannot be deleted: every invoke of that
// function would fail. Deleting it is a 409 that names the function, until
// the function is deployed without it.
func TestDeleteOfAHookInUseIsRefused(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	e.Deploy("users", "test/hook", "")
	e.Deploy("greeter", "c/hello", `{"hook": "users"}`)
	if r := call(t, e, http.MethodDelete, "/v1/functions/users"); r.Status != http.StatusConflict || !strings.Contains(r.Body, "greeter") {
		t.Fatalf("delete of the hook greeter names: %+v; want 409 naming greeter", r)
	}
	if inv := e.Invoke("greeter", "", "alice buys"); inv.Status != http.StatusOK {
		t.Fatalf("greeter after the refused delete: %+v", inv)
	}
	e.Deploy("greeter", "c/hello", "")
	if r := call(t, e, http.MethodDelete, "/v1/functions/users"); r.Status != http.StatusOK {
		t.Fatalf("delete of a hook nobody names: %+v", r)
	}
}

// A hook computes the label from the request: the same label lands in the
// same session, another label in another, and a request the hook refuses
// is a 403.
func TestHookNamesTheSession(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	e.Deploy("users", "test/hook", "")
	e.Deploy("greeter", "c/hello", `{"hook": "users"}`)
	id := func(body string, header ...string) (string, cptest.Invocation) {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/functions/greeter/invoke", strings.NewReader(body))
		if len(header) == 2 {
			req.Header.Set(header[0], header[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("invoke %q: %s", body, resp.Status)
		}
		return resp.Header.Get(controlplane.HeaderSessionID), cptest.Invocation{Container: resp.Header.Get(controlplane.HeaderContainer)}
	}
	a1, inv1 := id("alice buys")
	a2, inv2 := id("alice sells")
	b, _ := id("bob buys")
	if !hint.ValidSessionID(a1) || a1 != a2 || inv1.Container != inv2.Container {
		t.Fatalf("alice's requests: sessions %q %q on %s %s", a1, a2, inv1.Container, inv2.Container)
	}
	if b == a1 {
		t.Fatal("alice and bob share a session")
	}
	// The hook reads the request's headers too (read_input argument 3).
	if h, _ := id("", "X-User", "alice"); h != a1 {
		t.Fatalf("the X-User header named session %q, the body %q", h, a1)
	}
	if inv := e.Invoke("greeter", "", "   "); inv.Status != http.StatusForbidden || inv.Kind != "bad_hint" {
		t.Fatalf("a request the hook refuses: %+v", inv)
	}
}

// A function redeployed without its hook takes the client's sealed hints
// again: the keyset the control plane kept for the hook does not stand in
// for the function's verify key.
func TestHookRemovedSealedHintsWork(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	e.Deploy("users", "test/hook", "")
	hooked := e.Deploy("greeter", "c/counter", `{"hook": "users"}`)
	e.MustInvoke("greeter", "", "incr") // the hook names the session "incr"
	info := e.Deploy("greeter", "c/counter", "")
	if want := e.Keys["greeter"].ID(); info.Hints != "sealed" || info.HintKeyID != want {
		t.Fatalf("after removing the hook: %+v (was %+v); want sealed hints with keyset %s", info, hooked, want)
	}
	if inv := e.Invoke("greeter", "alice", "incr"); inv.Status != http.StatusOK || inv.SessionID != e.SessionID("greeter", "alice") {
		t.Fatalf("a sealed hint after removing the hook: %+v", inv)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func keys(m map[string][]byte) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	return out
}

// An HTTP client that gives up frees the worker at once: the control plane
// hangs up on the container, which stops the guest, so the next request
// does not wait out the abandoned one's timeout.
func TestGivingUpFreesTheWorker(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	e.Deploy("spin", "test/spin", `{"max_workers": 1, "max_containers": 1, "timeout_ms": 60000}`)
	e.MustInvoke("spin", "", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.URL+"/v1/functions/spin/invoke", strings.NewReader("30000"))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a 30 s spin answered within 300 ms: %s", resp.Status)
	}
	start := time.Now()
	e.MustInvoke("spin", "", "1")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the next request took %v: the abandoned one kept the worker", d)
	}
}

// holdFirstClaim returns a cptest.Options.BeforeClaim that holds the first
// claim until release is called (or the claim gives up), and a channel
// closed when the claim is held. release may be called more than once.
func holdFirstClaim() (hook func(context.Context), held <-chan struct{}, release func()) {
	h, r := make(chan struct{}), make(chan struct{})
	var hold, done sync.Once
	hook = func(ctx context.Context) {
		hold.Do(func() {
			close(h)
			select {
			case <-r:
			case <-ctx.Done():
			}
		})
	}
	return hook, h, func() { done.Do(func() { close(r) }) }
}

// A function deleted while the first request of a session is in its
// ColdSession does not get the session afterwards: the request is a 404,
// and the container goes back with no claim left in the registry.
func TestDeleteDuringColdSessionLeavesNothing(t *testing.T) {
	hook, held, release := holdFirstClaim()
	e := cptest.Start(t, cptest.Options{Pool: 1, BeforeClaim: hook})
	defer release() // also when the test fails while the claim is held
	e.Deploy("counter", "c/counter", "")
	// Another function with the same module keeps the module in the store
	// after the delete, so the ColdSession gets past loading it, as it
	// does when the delete comes a moment later.
	e.Deploy("twin", "c/counter", "")
	done := make(chan cptest.Invocation, 1)
	go func() { done <- e.Invoke("counter", "alice", "incr") }()
	<-held
	if inv := call(t, e, http.MethodDelete, "/v1/functions/counter"); inv.Status != http.StatusOK {
		t.Fatalf("delete: %+v", inv)
	}
	release()
	if inv := <-done; inv.Status != http.StatusNotFound || inv.Kind != "not_found" {
		t.Errorf("the request racing the delete: %+v; want 404 not_found", inv)
	}
	waitFor(t, "the deleted function's container released", func() bool {
		nodes, _ := e.Backend.Nodes(t.Context())
		return nodes[0].Claimed == 0
	})
	if regs, _ := e.Reg.List(t.Context(), "counter"); len(regs) != 0 {
		t.Fatalf("the registry still names containers of the deleted function: %+v", regs)
	}
}

// A version deployed while the first request of a session is in its
// ColdSession serves that request and the session: it does not start on
// the version it asked for first.
func TestDeployDuringColdSessionStartsTheNewVersion(t *testing.T) {
	hook, held, release := holdFirstClaim()
	e := cptest.Start(t, cptest.Options{Pool: 1, BeforeClaim: hook})
	defer release() // also when the test fails while the claim is held
	e.Deploy("greeter", "c/counter", "")
	done := make(chan cptest.Invocation, 1)
	go func() { done <- e.Invoke("greeter", "alice", "incr") }()
	<-held
	e.Deploy("greeter", "c/hello", "")
	release()
	if inv := <-done; inv.Status != http.StatusOK || inv.Body != "hello" {
		t.Errorf("the request racing the deploy: %+v; want the new version's hello", inv)
	}
	if inv := e.MustInvoke("greeter", "alice", "incr"); inv.Body != "hello" {
		t.Errorf("the session serves %q; want the new version's hello", inv.Body)
	}
}
