package proxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/linearcheck"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy/state"
)

// invoker runs one request; pools and container clients both are.
type invoker func(ctx context.Context, input []byte) ([]byte, error)

// hammerCounter sends clients×perClient "incr" requests through the given
// invokers (round robin by client), records every increment in a history,
// and checks that the counter ends at exactly the number of increments and
// that the history is linearizable. A 409 (an optimistic function that ran
// out of retries) applied nothing: the client retries it, as a real client
// would.
func hammerCounter(t *testing.T, invokers []invoker, clients, perClient int) {
	t.Helper()
	h := linearcheck.NewHistory()
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	for c := range clients {
		inv := invokers[c%len(invokers)]
		wg.Go(func() {
			for done := 0; done < perClient; {
				call := h.Now()
				out, err := inv(context.Background(), []byte("incr"))
				ret := h.Now()
				if apierror.KindOf(err) == apierror.Conflict {
					conflicts.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("client %d: %v", c, err)
					return
				}
				h.Add(c, linearcheck.Input{Kind: linearcheck.Incr, Key: "count"}, call, linearcheck.Output{Value: string(out)}, ret)
				done++
			}
		})
	}
	wg.Wait()
	t.Logf("%d requests answered 409 and were retried", conflicts.Load())
	out, err := invokers[0](context.Background(), []byte("get"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), strconv.Itoa(clients*perClient); got != want {
		t.Fatalf("counter = %s after %s increments", got, want)
	}
	h.Check(t, time.Minute)
}

// N concurrent linearizable increments of one key give exactly N, for C and
// Go guests, pessimistic and optimistic, and the history is linearizable.
func TestConcurrentIncrementsThroughGuests(t *testing.T) {
	for _, guest := range []string{"c/counter", "go/counter"} {
		for _, scheme := range []state.Scheme{state.Pessimistic, state.Optimistic} {
			t.Run(guest+"/"+scheme.String(), func(t *testing.T) {
				f := newFixture(t, guest, fixtureOptions{scheme: scheme, maxWorkers: 10})
				hammerCounter(t, []invoker{f.pool.Invoke}, 20, 25)
				if st := f.pool.Status(); st.Forks > 10 || st.Discards != 0 {
					t.Fatalf("pool after the hammer: %+v", st)
				}
			})
		}
	}
}

// startContainer serves a container on a Unix socket and returns it and a
// client for it.
func startContainer(t *testing.T, opts Options) (*Container, *Client) {
	t.Helper()
	c := New(opts)
	ln, err := wire.Listen("unix://" + filepath.Join(t.TempDir(), "c.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln, 5*time.Second) }()
	cl, err := Dial(context.Background(), wire.AddrOf(ln.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return c, cl
}

func bindCounter(t *testing.T, cl *Client, role Role, primary, lock string) {
	t.Helper()
	cfg := fnconfig.Default()
	cfg.MaxWorkers, cfg.Lock = 4, lock
	wasm := testwasm.Bytes(t, "c/counter")
	err := cl.Bind(context.Background(), Binding{Function: "counter", Session: "s1", Role: role,
		Config: cfg, Module: wasm, Digest: Digest(wasm), Primary: primary})
	if err != nil {
		t.Fatalf("bind %s: %v", role, err)
	}
}

// A secondary reaches the primary's state by RPC with the same semantics:
// increments spread over a primary and two secondaries give the exact count
// and a linearizable history.
func TestSecondariesShareThePrimarysState(t *testing.T) {
	for _, lock := range []string{"pessimistic", "optimistic"} {
		t.Run(lock, func(t *testing.T) {
			_, primary := startContainer(t, Options{CacheDir: compileCache})
			bindCounter(t, primary, RolePrimary, "", lock)
			invokers := []invoker{primary.Invoke}
			for range 2 {
				_, sec := startContainer(t, Options{CacheDir: compileCache})
				bindCounter(t, sec, RoleSecondary, primary.Addr(), lock)
				invokers = append(invokers, sec.Invoke)
			}
			hammerCounter(t, invokers, 12, 20)
			st, err := primary.Status(context.Background())
			if err != nil || st.Role != RolePrimary || st.State == nil || st.State.Keys != 1 {
				t.Fatalf("primary status %+v, %v", st, err)
			}
		})
	}
}

// A secondary whose primary is gone answers 503 through the function: the
// state is unavailable, never silently empty.
func TestSecondaryWithoutPrimaryIsUnavailable(t *testing.T) {
	_, sec := startContainer(t, Options{CacheDir: compileCache})
	bindCounter(t, sec, RoleSecondary, "unix://"+filepath.Join(t.TempDir(), "nobody.sock"), "pessimistic")
	_, err := sec.Invoke(context.Background(), []byte("incr"))
	if apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("secondary without primary: %v; want unavailable", err)
	}
}

// A container is bound once; a second binding is a conflict. Bad bindings
// are refused with the reason.
func TestBindingRules(t *testing.T) {
	_, cl := startContainer(t, Options{CacheDir: compileCache})
	ctx := context.Background()
	if _, err := cl.Invoke(ctx, nil); apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("invoke of an unbound container: %v", err)
	}
	st, err := cl.Status(ctx)
	if err != nil || st.Role != RolePool {
		t.Fatalf("unbound status %+v %v", st, err)
	}
	wasm := testwasm.Bytes(t, "c/counter")
	bad := []Binding{
		{Function: "f", Session: "s", Role: "boss", Config: fnconfig.Default(), Module: wasm},
		{Function: "f", Session: "s", Role: RoleSecondary, Config: fnconfig.Default(), Module: wasm},
		{Function: "f", Session: "s", Role: RolePrimary, Config: fnconfig.Default(), Module: wasm, Digest: "sha256:00"},
		{Function: "f", Session: "s", Role: RolePrimary, Config: fnconfig.Default(), Module: []byte("junk")},
		{Function: "", Session: "s", Role: RolePrimary, Config: fnconfig.Default(), Module: wasm},
	}
	for i, b := range bad {
		if err := cl.Bind(ctx, b); apierror.KindOf(err) != apierror.BadRequest {
			t.Errorf("bad binding %d: %v; want a bad request", i, err)
		}
	}
	bindCounter(t, cl, RolePrimary, "", "pessimistic")
	if out, err := cl.Invoke(ctx, []byte("incr")); err != nil || string(out) != "1" {
		t.Fatalf("invoke after bind: %q %v", out, err)
	}
	err = cl.Bind(ctx, Binding{Function: "other", Session: "s2", Role: RolePrimary, Config: fnconfig.Default(), Module: wasm})
	if apierror.KindOf(err) != apierror.Conflict {
		t.Fatalf("second binding: %v; want a conflict", err)
	}
}

// Shutdown lets a running request finish and refuses new ones.
func TestGracefulClose(t *testing.T) {
	c := New(Options{CacheDir: compileCache})
	cfg := fnconfig.Default()
	err := c.Bind(context.Background(), Binding{Function: "spin", Session: "s", Role: RolePrimary, Config: cfg, Module: testwasm.Bytes(t, "test/spin")})
	if err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() { _, err := c.Invoke(context.Background(), []byte("200")); result <- err }()
	waitUntil(t, "request running", func() bool { return c.Status().Workers.InFlight == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-result; err != nil {
		t.Fatalf("the running request did not finish: %v", err)
	}
	if _, err := c.Invoke(context.Background(), nil); apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("invoke after close: %v", err)
	}
}

func ExampleContainer() {
	ctx := context.Background()
	c := New(Options{})
	defer c.Close(ctx)
	path, err := testwasm.Build("c/counter")
	if err != nil {
		panic(err)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	if err := c.Bind(ctx, Binding{Function: "counter", Session: "alice", Role: RolePrimary, Config: fnconfig.Default(), Module: wasm}); err != nil {
		panic(err)
	}
	for range 3 {
		out, _ := c.Invoke(ctx, []byte("incr"))
		fmt.Println(string(out))
	}
	// Output:
	// 1
	// 2
	// 3
}
