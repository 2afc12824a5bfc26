package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/cgroup"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// testLimits returns cgroup limits on a fresh container group that this
// test process does not join (on v1 a thread can be placed in any group),
// removed at the end. It fails, with the reason, where cgroups cannot be
// written: `make test` runs as root on a cgroup host.
func testLimits(t testing.TB) *cgroupLimits {
	t.Helper()
	h, err := cgroup.Open(cgroup.Options{})
	if err == nil {
		err = h.Writable()
	}
	if err != nil {
		t.Fatalf("this test needs writable cgroups (run as root on a cgroup host): %v", err)
	}
	if h.Mode() != cgroup.V1 {
		t.Fatalf("this test places threads of a process outside its own group, which only cgroup v1 allows; this host has %v", h.Mode())
	}
	var b [4]byte
	rand.Read(b[:])
	c := h.Group("xfaas-test-" + hex.EncodeToString(b[:]))
	if err := c.Create(nil); err != nil {
		t.Fatal(err)
	}
	l := &cgroupLimits{h: h, container: c, status: LimitStatus{Enforced: true, Cgroup: c.Path()}}
	self, err := h.Self()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("remove worker groups: %v", err)
		}
		// Worker threads went back to the container group, which this
		// process never joined: bring them home (one may be Go's wedged
		// main thread) so the group can go.
		tids, err := c.Threads()
		if err != nil {
			t.Error(err)
		}
		for _, tid := range tids {
			if err := self.Thread("w").ReturnThread(tid); err != nil {
				t.Errorf("return thread %d: %v", tid, err)
			}
		}
		if err := c.Remove(); err != nil {
			t.Errorf("remove container group: %v", err)
		}
	})
	return l
}

// A slot thread that asks for a worker group the limits do not have (one
// that outlived Close) gets an error, not a panic that ends the process.
func TestMissingWorkerGroupIsAnError(t *testing.T) {
	l := &cgroupLimits{}
	for _, i := range []int{0, -1} {
		if err := l.ReturnThread(i, unix.Gettid()); err == nil {
			t.Errorf("ReturnThread(%d) without worker groups succeeded", i)
		}
		if err := l.PlaceThread(i, unix.Gettid()); err == nil {
			t.Errorf("PlaceThread(%d) without worker groups succeeded", i)
		}
	}
}

// A CPU-spinning function on two workers of 100 millicores each is held
// near 10% of a CPU per worker, by the worker groups' own accounting.
func TestSpinningFunctionIsHeldToItsQuota(t *testing.T) {
	l := testLimits(t)
	placer, err := l.Workers(2, 100, 128)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "test/spin", fixtureOptions{maxWorkers: 2, placer: placer, timeout: time.Minute})
	const wall = 1500 * time.Millisecond
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { f.mustInvoke(strconv.Itoa(int(wall.Milliseconds()))) })
	}
	wg.Wait()
	for i, w := range l.workers {
		s, err := w.Stats()
		if err != nil {
			t.Fatal(err)
		}
		share := float64(s.CPUTotal) / float64(wall)
		t.Logf("worker %d: %v of CPU in %v (%.1f%%), throttled in %d of %d periods", i, s.CPUTotal, wall, 100*share, s.Throttled, s.Periods)
		if share < 0.05 || share > 0.2 {
			t.Errorf("worker %d used %.1f%% of a CPU; its quota is 10%%", i, 100*share)
		}
		if s.Throttled == 0 {
			t.Errorf("worker %d was never throttled", i)
		}
	}
}

// TestSlotsServeTheirConnections drives a CPU-limited container over the
// wire the way the control plane does: each invocation connection is taken
// over by a worker slot, which serves it from its own thread. More
// connections than slots fall back to the wire server; a timeout discards
// the worker and the next request forks a new one on the same slot; the
// in-process path shares the workers; closing lets a running request
// finish and ends every connection.
func TestSlotsServeTheirConnections(t *testing.T) {
	c, cl := startContainer(t, Options{CacheDir: compileCache, Limits: testLimits(t)})
	cfg := fnconfig.Default()
	cfg.MaxWorkers = 3
	cfg.TimeoutMS = 300
	ctx := context.Background()
	if err := cl.Bind(ctx, Binding{Function: "f", Session: "s", Role: RolePrimary, Config: cfg, Module: testwasm.Bytes(t, "test/spin")}); err != nil {
		t.Fatal(err)
	}
	if !c.Status().Limits.Enforced {
		t.Fatal("worker limits are not enforced")
	}
	other, err := Dial(ctx, cl.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 6 { // twice the slots: three connections are served by the wire server
		wg.Go(func() {
			for i := range 200 {
				in := "0"
				if i%50 == 7 {
					in = "bad" // a function error: the worker stays
				}
				out, err := other.Invoke(ctx, []byte(in))
				if in == "bad" {
					if apierror.KindOf(err) != apierror.FunctionError {
						t.Errorf("connection %d: invoke %q: %v; want a function error", g, in, err)
					}
					continue
				}
				if err != nil || string(out) != "1" {
					t.Errorf("connection %d: invoke %q = %q, %v", g, in, out, err)
					return
				}
			}
		})
	}
	for range 50 { // the in-process path borrows the same workers
		if out, err := c.Invoke(ctx, []byte("0")); err != nil || string(out) != "1" {
			t.Errorf("local invoke = %q, %v", out, err)
		}
	}
	wg.Wait()
	if n := c.Status().Workers.SlotConns; n != 3 {
		t.Errorf("slots serve %d connections; want all 3 slots to own one", n)
	}
	// Connections that end free their slots for new ones.
	other.Close()
	waitUntil(t, "slots to let their connections go", func() bool { return c.Status().Workers.SlotConns == 0 })
	// A timeout discards the worker that ran it; its slot forks a new one.
	for range 3 {
		if _, err := cl.Invoke(ctx, []byte("1000")); apierror.KindOf(err) != apierror.Timeout {
			t.Fatalf("spin past the deadline: err = %v; want a timeout", err)
		}
		if out, err := cl.Invoke(ctx, []byte("0")); err != nil || string(out) != "1" {
			t.Fatalf("after a timeout: %q, %v", out, err)
		}
	}
	st := c.Status()
	if st.Workers.Discards < 3 {
		t.Errorf("discards = %d; want ≥ 3", st.Workers.Discards)
	}
	if st.Workers.SlotConns != 1 {
		t.Errorf("slots serve %d connections; want the one in use", st.Workers.SlotConns)
	}
	// Close lets a request running on a slot's connection finish.
	running := make(chan error, 1)
	go func() {
		_, err := cl.Invoke(ctx, []byte("150"))
		running <- err
	}()
	waitUntil(t, "the request to run", func() bool { return c.Status().Workers.InFlight == 1 })
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-running; err != nil {
		t.Errorf("request running at close: %v; want it to finish", err)
	}
	if _, err := cl.Invoke(ctx, []byte("0")); err == nil {
		t.Error("invoke after close succeeded")
	}
}
