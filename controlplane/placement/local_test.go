package placement

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/testbin"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/proxy"
)

func newLocal(t *testing.T, opts LocalOptions) *Local {
	t.Helper()
	opts.Binary = testbin.Xfaas(t)
	opts.Dir = t.TempDir()
	opts.Cgroups = true
	l, err := NewLocal(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
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

func poolsFull(l *Local, size int) func() bool {
	return func() bool {
		nodes, _ := l.Nodes(context.Background())
		for _, n := range nodes {
			if n.Pool != size {
				return false
			}
		}
		return true
	}
}

// Pools fill, and their containers prepare their binds; a claim is a hit
// that serves after Bind; the pool refills.
func TestClaimFromThePoolAndServe(t *testing.T) {
	l := newLocal(t, LocalOptions{Nodes: 2, PoolSize: 2})
	waitFor(t, "pools filled", poolsFull(l, 2))
	ctx := context.Background()
	c, hit, err := l.Claim(ctx, "node-1", Size{})
	if err != nil || !hit || c.Node != "node-1" || !strings.HasPrefix(c.Addr, "unix://") {
		t.Fatalf("claim: %+v hit=%v %v", c, hit, err)
	}
	cl, err := proxy.Dial(ctx, c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, "the claimed container to prepare its bind", func() bool {
		st, err := cl.Status(ctx)
		return err == nil && st.Prepared
	})
	wasm := testwasm.Bytes(t, "c/counter")
	if err := cl.Bind(ctx, proxy.Binding{Function: "counter", Session: "s", Role: proxy.RolePrimary, Config: fnconfig.Default(), Module: wasm}); err != nil {
		t.Fatal(err)
	}
	if st, err := cl.Status(ctx); err != nil || st.Prepared || st.Workers.Max != 10 {
		t.Fatalf("status after bind %+v, %v; want a bound container of 10 workers", st, err)
	}
	if out, err := cl.Invoke(ctx, []byte("incr")); err != nil || string(out) != "1" {
		t.Fatalf("invoke: %q %v", out, err)
	}
	st, err := cl.Status(ctx)
	if err != nil || st.Node != "node-1" || !st.Limits.Enforced {
		t.Fatalf("status %+v %v; want node-1 with limits enforced", st, err)
	}
	waitFor(t, "pool refilled", poolsFull(l, 2))
	nodes, _ := l.Nodes(ctx)
	if nodes[1].Claimed != 1 {
		t.Fatalf("nodes %+v; want one claimed on node-1", nodes)
	}
	if err := l.Release(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "released container gone", func() bool { n, _ := l.Nodes(ctx); return n[1].Claimed == 0 })
	select {
	case lost := <-l.Lost():
		t.Fatalf("a released container was reported lost: %+v", lost)
	default:
	}
}

// Past the pool a claim starts a container (a miss); past the capacity it
// is refused.
func TestPoolMissAndCapacity(t *testing.T) {
	l := newLocal(t, LocalOptions{Nodes: 1, PoolSize: 1, Capacity: 2})
	waitFor(t, "pool filled", poolsFull(l, 1))
	ctx := context.Background()
	if _, hit, err := l.Claim(ctx, "node-0", Size{}); err != nil || !hit {
		t.Fatalf("first claim: hit=%v %v", hit, err)
	}
	// The refill takes the second place. A claim made while it is on its
	// way waits for it instead of being refused for want of room.
	waitFor(t, "the refill to start", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.nodes[0].filling+len(l.nodes[0].pool) == 1
	})
	if _, hit, err := l.Claim(ctx, "node-0", Size{}); err != nil || !hit {
		t.Fatalf("second claim: hit=%v %v; want the refilled container", hit, err)
	}
	if _, _, err := l.Claim(ctx, "node-0", Size{}); !errors.Is(err, ErrNodeFull) {
		t.Fatalf("third claim: %v; want ErrNodeFull", err)
	}
	if _, _, err := l.Claim(ctx, "node-9", Size{}); err == nil {
		t.Fatal("claim on an unknown node succeeded")
	}
}

// A claimed container killed with SIGKILL is reported lost and its cgroup
// and socket are cleaned up; Close leaves no process and no cgroup behind.
func TestLostContainerAndCleanShutdown(t *testing.T) {
	opts := LocalOptions{Nodes: 1, PoolSize: 1, Binary: testbin.Xfaas(t), Dir: t.TempDir(), Cgroups: true}
	l, err := NewLocal(opts)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pool filled", poolsFull(l, 1))
	ctx := context.Background()
	c, _, err := l.Claim(ctx, "node-0", Size{})
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	victim := l.procs[c.ID].cmd.Process.Pid
	l.mu.Unlock()
	syscall.Kill(victim, syscall.SIGKILL)
	select {
	case lost := <-l.Lost():
		if lost.ID != c.ID {
			t.Fatalf("lost %+v; want %s", lost, c.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a killed container was not reported lost")
	}
	waitFor(t, "pool refilled", poolsFull(l, 1))
	l.mu.Lock()
	var pids []int
	for _, p := range l.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	root := l.cgroup
	l.mu.Unlock()
	if root == nil {
		t.Fatal("no cgroup root: this test needs writable cgroups (run as root)")
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pid := range append(pids, victim) {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still runs after Close", pid)
		}
	}
	if root.Exists() {
		t.Errorf("cgroup %s left behind", root.Path())
	}
	if entries, _ := os.ReadDir(opts.Dir); len(entries) != 0 {
		t.Errorf("sockets left behind: %v", entries)
	}
}
