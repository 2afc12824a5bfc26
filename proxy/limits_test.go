package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/cgroup"
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
