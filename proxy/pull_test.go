package proxy

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/xfaas/xfaas/controlplane/bus"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/natstest"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/internal/wire"
)

const pullSession = "0123456789abcdef0123456789abcdef"

// pullEnv is the address bus of pull tests: an in-process NATS server, a
// publisher (the control plane placing sessions), a control-plane table
// that answers lookups, and the table a caller container resolves with.
type pullEnv struct {
	tb    testing.TB
	pub   *bus.Publisher
	cp    *bus.Table
	table *bus.Table
}

func newPullEnv(tb testing.TB) *pullEnv {
	tb.Helper()
	srv := natstest.Start(tb)
	conn := func() *nats.Conn {
		return natstest.Connect(tb, srv.ClientURL())
	}
	ctx := context.Background()
	e := &pullEnv{tb: tb, pub: bus.NewPublisher(conn())}
	var err error
	if e.cp, err = bus.NewTable(ctx, conn(), bus.TableOptions{All: true}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.cp.Close() })
	responder := conn()
	if _, err := bus.ServeLookups(responder, e.cp.Containers); err != nil {
		tb.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		tb.Fatal(err)
	}
	if e.table, err = bus.NewTable(ctx, conn(), bus.TableOptions{}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.table.Close() })
	return e
}

// publish announces a container of (function, session) and waits until the
// control plane's table has it.
func (e *pullEnv) publish(function, session string, c *pullContainer, state string) bus.Update {
	e.tb.Helper()
	u, err := e.pub.Publish(bus.Update{Function: function, Session: session, Role: bus.RolePrimary,
		Container: c.c.ID(), Node: "n1", Addr: c.addr, State: state})
	if err != nil {
		e.tb.Fatal(err)
	}
	waitUntil(e.tb, "the update reaches the control plane", func() bool {
		for _, got := range e.cp.Containers(function, session) {
			if got.Container == u.Container {
				return got == u
			}
		}
		return state == bus.Down
	})
	return u
}

// pullContainer is a container served on a Unix socket.
type pullContainer struct {
	c    *Container
	cl   *Client
	addr string
	stop func()
}

func startPullContainer(tb testing.TB, opts Options) *pullContainer {
	tb.Helper()
	opts.CacheDir = compileCache
	c := New(opts)
	ln, err := wire.Listen("unix://" + filepath.Join(tb.TempDir(), "c.sock"))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln, 5*time.Second) }()
	pc := &pullContainer{c: c, addr: wire.AddrOf(ln.Addr())}
	if pc.cl, err = Dial(context.Background(), pc.addr); err != nil {
		tb.Fatal(err)
	}
	pc.stop = sync.OnceFunc(func() {
		pc.cl.Close()
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	tb.Cleanup(pc.stop)
	return pc
}

func (pc *pullContainer) bind(tb testing.TB, function, session, guest string, cfg fnconfig.Config) {
	tb.Helper()
	err := pc.cl.Bind(context.Background(), Binding{Function: function, Session: session, Role: RolePrimary,
		Config: cfg, Module: testwasm.Bytes(tb, guest)})
	if err != nil {
		tb.Fatalf("bind %s: %v", function, err)
	}
}

func (pc *pullContainer) invoke(tb testing.TB, input string) string {
	tb.Helper()
	out, err := pc.cl.Invoke(context.Background(), []byte(input))
	if err != nil {
		tb.Fatalf("invoke %q: %v", input, err)
	}
	return string(out)
}

// startOrders starts a primary of function "orders" (the kv example) for
// pullSession, with total set to val.
func startOrders(tb testing.TB, val string) *pullContainer {
	tb.Helper()
	pc := startPullContainer(tb, Options{})
	pc.bind(tb, "orders", pullSession, "c/kv", fnconfig.Default())
	if out := pc.invoke(tb, "set total "+val); out != "ok" {
		tb.Fatalf("set total: %q", out)
	}
	return pc
}

// startReport starts a primary of function "report" that depends on
// "orders" and runs the pull guest on one worker, resolving with r.
func startReport(tb testing.TB, r Resolver) *pullContainer {
	tb.Helper()
	pc := startPullContainer(tb, Options{Resolver: r})
	cfg := fnconfig.Default()
	cfg.MaxWorkers, cfg.DependsOn = 1, []string{"orders"}
	pc.bind(tb, "report", "default", "test/pull", cfg)
	return pc
}

// A function pulls keys of another function's session from its primary,
// found through the address bus, and keeps doing so after the session
// moved to another container.
func TestPull(t *testing.T) {
	env := newPullEnv(t)
	orders := startOrders(t, "42")
	env.publish("orders", pullSession, orders, bus.Up) // before the caller exists: learnt by lookup
	report := startReport(t, env.table)

	cases := map[string]string{
		"orders " + pullSession + " total":   "42",
		"orders " + pullSession + " missing": "-1",
		"billing " + pullSession + " total":  "-7", // not in depends_on
		"orders alice total":                 "-7", // not a session id
		"orders default total":               "-8", // no primary known
	}
	for in, want := range cases {
		if got := report.invoke(t, in); got != want {
			t.Errorf("pull %q = %q; want %q", in, got, want)
		}
	}

	// Move the session: a new primary comes up with the state, the old one
	// is released and stops.
	moved := startOrders(t, "43")
	env.publish("orders", pullSession, moved, bus.Up)
	env.publish("orders", pullSession, orders, bus.Down)
	orders.stop()
	waitUntil(t, "the caller's table sees the move", func() bool {
		p, ok := env.table.Primary("orders", pullSession)
		return ok && p.Container == moved.c.ID()
	})
	if got := report.invoke(t, "orders "+pullSession+" total"); got != "43" {
		t.Fatalf("pull after the move = %q; want 43", got)
	}
	if st := report.c.Status(); st.Workers.Forks != 1 {
		t.Fatalf("%d workers forked; want the same worker for every pull", st.Workers.Forks)
	}
}

// An address that points at another session's primary (a stale or wrong
// update) is refused, never read.
func TestPullChecksWhoAnswers(t *testing.T) {
	env := newPullEnv(t)
	orders := startOrders(t, "42")
	env.publish("orders", "default", orders, bus.Up) // orders serves pullSession, not default
	report := startReport(t, env.table)
	if got := report.invoke(t, "orders default total"); got != "-8" {
		t.Fatalf("pull through a wrong address = %q; want -8", got)
	}
}

// Without a resolver, a declared function cannot be pulled from (-8); an
// undeclared one is still invalid (-7).
func TestPullWithoutResolver(t *testing.T) {
	report := startReport(t, nil)
	for in, want := range map[string]string{"orders default k": "-8", "billing default k": "-7"} {
		if got := report.invoke(t, in); got != want {
			t.Errorf("pull %q = %q; want %q", in, got, want)
		}
	}
}

// stepResolver answers with its addresses in turn: a resolver that learns
// of a move between two lookups.
type stepResolver struct {
	mu    sync.Mutex
	addrs []string
	calls int
}

func (r *stepResolver) Watch(context.Context, []string) error { return nil }

// reset sets the addresses and returns how many lookups there were.
func (r *stepResolver) reset(addrs ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls := r.calls
	r.addrs, r.calls = addrs, 0
	return calls
}

func (r *stepResolver) PrimaryAddr(context.Context, string, string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addr := r.addrs[min(r.calls, len(r.addrs)-1)]
	r.calls++
	return addr, true
}

// A pull that cannot reach the primary it resolved resolves again and
// retries once, so a move seen mid-pull costs no failure.
func TestPullRetriesAfterATransportFailure(t *testing.T) {
	moved := startOrders(t, "43")
	gone := "unix://" + filepath.Join(t.TempDir(), "gone.sock")
	r := &stepResolver{}
	r.reset(gone, moved.addr)
	report := startReport(t, r)
	if got := report.invoke(t, "orders "+pullSession+" total"); got != "43" {
		t.Fatalf("pull = %q; want 43 from the second address", got)
	}
	if calls := r.reset(gone); calls != 2 {
		t.Fatalf("%d resolutions; want 2", calls)
	}
	if got := report.invoke(t, "orders "+pullSession+" total"); got != "-8" {
		t.Fatalf("pull from an unreachable primary = %q; want -8", got)
	}
	if calls := r.reset(); calls != 2 {
		t.Fatalf("%d resolutions of an unreachable primary; want 2 (one retry)", calls)
	}
}

// BenchmarkPull measures one pull_state of a 16-byte value from another
// function's primary over a Unix socket, the address resolved from a
// bus.Table: the guest pulls 100 times per request and the request's time
// is divided by 100. Metric p50-µs/pull.
func BenchmarkPull(b *testing.B) {
	env := newPullEnv(b)
	orders := startOrders(b, "0123456789abcdef")
	env.publish("orders", pullSession, orders, bus.Up)
	report := startReport(b, env.table)
	const loops = 100
	in := []byte(fmt.Sprintf("orders %s total %d", pullSession, loops))
	ctx := context.Background()
	if out, err := report.c.Invoke(ctx, in); err != nil || string(out) != "0123456789abcdef" {
		b.Fatalf("warm-up pull: %q %v", out, err)
	}
	var samples []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := report.c.Invoke(ctx, in); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start)/loops)
	}
	b.ReportMetric(float64(p50(samples).Nanoseconds())/1000, "p50-µs/pull")
}
