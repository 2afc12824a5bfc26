package proxy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// workerThreads returns the thread ids in each of l's worker groups.
func workerThreads(t *testing.T, l *cgroupLimits) [][]int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([][]int, len(l.workers))
	for i, w := range l.workers {
		tids, err := w.Threads()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = tids
	}
	return out
}

// quota reads worker group i's cpu.cfs_quota_us from the v1 cpu hierarchy.
func quota(t *testing.T, l *cgroupLimits, i int) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/cpu*", l.container.Path(), "w"+strconv.Itoa(i), "cpu.cfs_quota_us"))
	if len(files) == 0 {
		t.Fatalf("no cpu.cfs_quota_us for worker group %d of %s", i, l.container.Path())
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// A pool container readies its bind while it waits: the default config's
// worker threads sit in their cgroups before the bind, and the bind serves
// on those same threads. A bind with another config resizes what was
// prepared: extra threads are set aside (parked until Close, which the
// cleanup's group removal checks), missing ones start, a new quota is
// written.
func TestPreparedBind(t *testing.T) {
	cases := []struct {
		name  string
		set   func(*fnconfig.Config)
		quota string // cpu.cfs_quota_us of the bound workers
	}{
		{"default config", func(*fnconfig.Config) {}, "10000"},
		{"fewer workers, more CPU, less memory", func(c *fnconfig.Config) {
			c.MaxWorkers, c.WorkerCPUMillicores, c.WorkerMemoryMB = 3, 250, 64
		}, "25000"},
		{"more workers", func(c *fnconfig.Config) { c.MaxWorkers = 12 }, "10000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := testLimits(t)
			c, cl := startContainer(t, Options{CacheDir: compileCache, Limits: l})
			c.Prepare()
			waitUntil(t, "the container to prepare", func() bool { return c.Status().Prepared })
			def := fnconfig.Default().MaxWorkers
			before := workerThreads(t, l)
			if len(before) != def {
				t.Fatalf("%d worker groups prepared; want %d", len(before), def)
			}
			for i, tids := range before {
				if len(tids) != 1 {
					t.Fatalf("prepared worker group %d holds threads %v; want one", i, tids)
				}
			}
			cfg := fnconfig.Default()
			tc.set(&cfg)
			ctx := context.Background()
			if err := cl.Bind(ctx, Binding{Function: "f", Session: "s", Role: RolePrimary, Config: cfg, Module: testwasm.Bytes(t, "test/spin")}); err != nil {
				t.Fatal(err)
			}
			if c.Status().Prepared {
				t.Error("a bound container still reports a preparation")
			}
			for range 20 {
				if out, err := cl.Invoke(ctx, []byte("0")); err != nil || string(out) != "1" {
					t.Fatalf("invoke = %q, %v", out, err)
				}
			}
			n := cfg.MaxWorkers
			if st := c.Status().Workers; st.Max != n {
				t.Errorf("the pool has %d workers; want %d", st.Max, n)
			}
			after := workerThreads(t, l)
			if len(after) != max(n, def) {
				t.Fatalf("%d worker groups after the bind; want %d", len(after), max(n, def))
			}
			for i := range n {
				if len(after[i]) != 1 {
					t.Errorf("worker group %d holds threads %v; want one", i, after[i])
				}
				if i < def && !slices.Equal(after[i], before[i]) {
					t.Errorf("worker group %d holds thread %v after the bind, %v before; want the prepared thread", i, after[i], before[i])
				}
				if q := quota(t, l, i); q != tc.quota {
					t.Errorf("worker group %d: cpu.cfs_quota_us = %s; want %s", i, q, tc.quota)
				}
			}
		})
	}
}

// A bind made while the container prepares waits for the preparation and
// uses it; Close of a prepared container that never bound stops its
// threads and removes its worker groups.
func TestPrepareRaceAndClose(t *testing.T) {
	l := testLimits(t)
	c, cl := startContainer(t, Options{CacheDir: compileCache, Limits: l})
	c.Prepare()
	ctx := context.Background()
	if err := cl.Bind(ctx, Binding{Function: "f", Session: "s", Role: RolePrimary, Config: fnconfig.Default(), Module: testwasm.Bytes(t, "test/spin")}); err != nil {
		t.Fatal(err)
	}
	for i, tids := range workerThreads(t, l) {
		if len(tids) != 1 {
			t.Errorf("worker group %d holds threads %v; want one", i, tids)
		}
	}

	l2 := testLimits(t)
	c2 := New(Options{CacheDir: compileCache, Limits: l2})
	c2.Prepare()
	waitUntil(t, "the second container to prepare", func() bool { return c2.Status().Prepared })
	l2.mu.Lock()
	groups := slices.Clone(l2.workers)
	l2.mu.Unlock()
	if len(groups) == 0 {
		t.Fatal("no worker groups prepared")
	}
	if err := c2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i, g := range groups {
		if g.Exists() {
			t.Errorf("worker group %d still exists after Close", i)
		}
	}
	if err := c2.Bind(ctx, Binding{Function: "f", Session: "s", Role: RolePrimary, Config: fnconfig.Default(), Module: testwasm.Bytes(t, "test/spin")}); err == nil {
		t.Error("bind after Close succeeded")
	}
}
