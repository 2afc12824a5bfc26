package cgroup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Mountinfo samples of the layouts xfaas meets.
const (
	// This project's CI machine: hybrid, v1 controllers mounted one each.
	hybridSeparate = `25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
28 25 0:26 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
29 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
30 25 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
`
	// systemd hybrid with cpu and cpuacct co-mounted.
	hybridComounted = `25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
29 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
30 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
`
	pureV2 = `22 1 0:21 / /proc rw - proc proc rw
25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	// Inside a cgroup namespace: the mount's root is not "/".
	namespaced = `25 30 0:23 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw
`
)

func openFake(t *testing.T, mountinfo, procCgroup string) (*Hierarchy, error) {
	t.Helper()
	dir := t.TempDir()
	mi, pc := filepath.Join(dir, "mountinfo"), filepath.Join(dir, "cgroup")
	os.WriteFile(mi, []byte(mountinfo), 0o644)
	os.WriteFile(pc, []byte(procCgroup), 0o644)
	return Open(Options{MountInfo: mi, ProcCgroup: pc})
}

func TestOpenLayouts(t *testing.T) {
	cases := []struct {
		name, mountinfo, proc string
		mode                  Mode
		cpuDir, selfPath      string
	}{
		{"hybrid", hybridSeparate, "4:cpu:/user.slice\n5:cpuacct:/user.slice\n0::/user.slice\n", V1, "/sys/fs/cgroup/cpu/a/b", "/user.slice"},
		{"comounted", hybridComounted, "4:cpu,cpuacct:/x\n0::/x\n", V1, "/sys/fs/cgroup/cpu,cpuacct/a/b", "/x"},
		{"v2", pureV2, "0::/system.slice/xfaas.service\n", V2, "/sys/fs/cgroup/a/b", "/system.slice/xfaas.service"},
		{"namespaced", namespaced, "0::/kubepods/pod1/ctr\n", V2, "/sys/fs/cgroup/ctr/a/b", "/kubepods/pod1/ctr"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := openFake(t, c.mountinfo, c.proc)
			if err != nil {
				t.Fatal(err)
			}
			if h.Mode() != c.mode {
				t.Fatalf("mode %v; want %v", h.Mode(), c.mode)
			}
			rel := "/a/b"
			if c.name == "namespaced" {
				rel = "/kubepods/pod1/ctr/a/b"
			}
			if got := h.dir("cpu", rel); got != c.cpuDir {
				t.Errorf("cpu dir %s; want %s", got, c.cpuDir)
			}
			self, err := h.Self()
			if err != nil || self.Path() != c.selfPath {
				t.Errorf("Self() = %v, %v; want %s", self, err, c.selfPath)
			}
		})
	}
	if _, err := openFake(t, "22 1 0:21 / /proc rw - proc proc rw\n", ""); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no cgroup mounts: %v; want ErrUnavailable", err)
	}
}

func TestMountInfoEscapes(t *testing.T) {
	_, m, _, ok := parseMountLine(`30 25 0:28 / /sys/fs/cgroup/with\040space rw - cgroup cgroup rw,pids`)
	if !ok || m.path != "/sys/fs/cgroup/with space" {
		t.Fatalf("escaped mount point: %q %v", m.path, ok)
	}
}

// A fake cgroup v2 file system: directories pre-created with the control
// files a kernel would create, so that the exact bytes written can be read
// back. It stands in for a v2 host, which this CI machine (v1) is not.
func fakeV2(t *testing.T, groups ...string) (*Hierarchy, string) {
	t.Helper()
	root := t.TempDir()
	files := []string{"cgroup.controllers", "cgroup.subtree_control", "cgroup.type", "cgroup.procs", "cgroup.threads",
		"cpu.max", "memory.max", "memory.swap.max", "pids.max", "cpu.stat", "memory.current", "memory.stat"}
	for _, g := range append([]string{""}, groups...) {
		dir := filepath.Join(root, g)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
		os.WriteFile(filepath.Join(dir, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	}
	mi := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(mi, []byte("25 30 0:23 / "+root+" rw - cgroup2 cgroup2 rw\n"), 0o644)
	h, err := Open(Options{MountInfo: mi})
	if err != nil {
		t.Fatal(err)
	}
	return h, root
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestV2WritesOnTheFake(t *testing.T) {
	h, root := fakeV2(t, "xfaas", "xfaas/c1", "xfaas/c1/w0")
	c := h.Group("xfaas/c1")
	if err := c.Create(Resources(1000, 256<<20, 512)); err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		"xfaas/cgroup.subtree_control": "+cpu +memory +pids",
		"xfaas/c1/cpu.max":             "100000 100000",
		"xfaas/c1/memory.max":          "268435456",
		"xfaas/c1/memory.swap.max":     "0",
		"xfaas/c1/pids.max":            "512",
	}
	w := c.Thread("w0")
	if err := w.Create(Resources(100, 0, 0)); err != nil {
		t.Fatal(err)
	}
	checks["xfaas/c1/w0/cgroup.type"] = "threaded"
	checks["xfaas/c1/cgroup.subtree_control"] = "+cpu"
	checks["xfaas/c1/w0/cpu.max"] = "10000 100000"
	if err := w.AddThread(4242); err != nil {
		t.Fatal(err)
	}
	checks["xfaas/c1/w0/cgroup.threads"] = "4242"
	if err := c.AddProcess(77); err != nil {
		t.Fatal(err)
	}
	checks["xfaas/c1/cgroup.procs"] = "77"
	for file, want := range checks {
		if got := readFile(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q; want %q", file, got, want)
		}
	}
	if got := readFile(t, filepath.Join(root, "xfaas/c1/w0/memory.max")); got != "" {
		t.Errorf("a worker group got a memory limit: %q", got)
	}
}

func TestV2StatsOnTheFake(t *testing.T) {
	h, root := fakeV2(t, "c1")
	os.WriteFile(filepath.Join(root, "c1/cpu.stat"), []byte("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 40\nnr_throttled 30\nthrottled_usec 1200000\n"), 0o644)
	os.WriteFile(filepath.Join(root, "c1/memory.current"), []byte("10485760\n"), 0o644)
	os.WriteFile(filepath.Join(root, "c1/memory.stat"), []byte("anon 8388608\nfile 1048576\nkernel 4096\n"), 0o644)
	s, err := h.Group("c1").Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{CPUTotal: 2500 * time.Millisecond, CPUUser: 2 * time.Second, CPUSystem: 500 * time.Millisecond,
		Periods: 40, Throttled: 30, ThrottledTime: 1200 * time.Millisecond,
		MemoryUsage: 10 << 20, MemoryRSS: 8 << 20, MemoryCache: 1 << 20}
	if s != want {
		t.Fatalf("stats %+v\nwant  %+v", s, want)
	}
}

func TestNotWritable(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(mi, []byte("25 30 0:23 / /nonexistent/cgroup rw - cgroup2 cgroup2 rw\n"), 0o644)
	h, err := Open(Options{MountInfo: mi})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Writable(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/cgroup") {
		t.Fatalf("Writable() = %v; want ErrUnavailable naming the path", err)
	}
}

// host opens this machine's hierarchy and a fresh parent group under it,
// removed at the end. The test fails, with the reason, where cgroups cannot
// be written: `make test` runs as root on a cgroup host.
func host(t testing.TB) (*Hierarchy, *Group) {
	t.Helper()
	h, err := Open(Options{})
	if err != nil {
		t.Fatalf("this test needs a cgroup host: %v", err)
	}
	if err := h.Writable(); err != nil {
		t.Fatalf("this test needs writable cgroups (run as root): %v", err)
	}
	var b [4]byte
	rand.Read(b[:])
	parent := h.Group("xfaas-test-" + hex.EncodeToString(b[:]))
	if err := parent.Create(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		parent.Kill()
		if err := parent.Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return h, parent
}

func TestRealContainerGroup(t *testing.T) {
	h, parent := host(t)
	c := h.Group(parent.Path() + "/c1")
	if err := c.Create(Resources(500, 64<<20, 100)); err != nil {
		t.Fatal(err)
	}
	if h.Mode() == V1 {
		for file, want := range map[string]string{
			h.dir("cpu", c.rel) + "/cpu.cfs_quota_us":         "50000",
			h.dir("cpu", c.rel) + "/cpu.cfs_period_us":        "100000",
			h.dir("memory", c.rel) + "/memory.limit_in_bytes": "67108864",
			h.dir("pids", c.rel) + "/pids.max":                "100",
		} {
			if got := strings.TrimSpace(readFile(t, file)); got != want {
				t.Errorf("%s = %s; want %s", file, got, want)
			}
		}
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if err := c.AddProcess(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pids, err := c.Procs(); err != nil || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("Procs() = %v, %v; want %d in it", pids, err, cmd.Process.Pid)
	}
	if err := c.Remove(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove with a live task: %v; want ErrBusy", err)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if err := c.Remove(); err != nil {
		t.Fatalf("Remove after kill: %v", err)
	}
	for _, d := range c.dirs() {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", d)
		}
	}
}

// A thread spinning in a worker group of 100 millicores gets about 10% of a
// CPU, as the group's own accounting shows.
func TestRealWorkerQuotaHolds(t *testing.T) {
	h, parent := host(t)
	c := h.Group(parent.Path() + "/c1")
	if err := c.Create(nil); err != nil {
		t.Fatal(err)
	}
	w := c.Thread("w0")
	if err := w.Create(Resources(100, 0, 0)); err != nil {
		t.Fatal(err)
	}
	self, err := h.Self()
	if err != nil {
		t.Fatal(err)
	}
	const wall = 1500 * time.Millisecond
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		tid := unix.Gettid()
		if err := w.AddThread(tid); err != nil {
			done <- err
			return
		}
		if own := readFile(t, "/proc/self/task/"+strconv.Itoa(tid)+"/cgroup"); !strings.Contains(own, w.Path()) {
			done <- errors.New("thread not in its group: " + own)
			return
		}
		for start := time.Now(); time.Since(start) < wall; {
		}
		// Back to this process's own group, not c1, which it never joined:
		// the thread may be Go's main thread, which outlives the goroutine.
		done <- self.Thread("w").ReturnThread(tid)
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s, err := w.Stats()
	if err != nil {
		t.Fatal(err)
	}
	share := float64(s.CPUTotal) / float64(wall)
	t.Logf("CPU used: %v of %v wall (%.1f%%), throttled %d of %d periods", s.CPUTotal, wall, 100*share, s.Throttled, s.Periods)
	if share < 0.05 || share > 0.2 {
		t.Fatalf("a 100-millicore thread used %.1f%% of a CPU; want about 10%%", 100*share)
	}
	if s.Throttled == 0 {
		t.Fatal("no throttled periods counted")
	}
}

func FuzzParseMountInfo(f *testing.F) {
	for _, s := range []string{hybridSeparate, hybridComounted, pureV2, namespaced, "garbage - x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		fstype, m, opts, ok := parseMountLine(line)
		if !ok && (fstype != "" || m.path != "" || opts != "") {
			t.Fatal("a rejected line returned fields")
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	for _, s := range []string{"0::/a\n", "4:cpu,cpuacct:/x\n", "::", "1:2:3:4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		for _, mode := range []Mode{V1, V2} {
			if rel, err := parseProcCgroup(data, mode); err == nil && !strings.Contains(data, rel) {
				t.Fatalf("path %q is not in the input", rel)
			}
		}
	})
}

// BenchmarkWorkerGroup is what a container pays per worker slot at bind
// time: create a worker group with a quota and move a thread into it.
func BenchmarkWorkerGroup(b *testing.B) {
	h, parent := host(b)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := h.Self()
	if err != nil {
		b.Fatal(err)
	}
	tid := unix.Gettid()
	res := Resources(100, 0, 0)
	i := 0
	for b.Loop() {
		w := parent.Thread("w" + strconv.Itoa(i))
		i++
		if err := w.Create(res); err != nil {
			b.Fatal(err)
		}
		if err := w.AddThread(tid); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// Move the thread back before the groups go.
	if err := self.Thread("w").ReturnThread(tid); err != nil {
		b.Fatal(err)
	}
}

// Kill reaches processes in groups below the group; Children lists groups.
func TestKillReachesDescendants(t *testing.T) {
	h, parent := host(t)
	child := h.Group(parent.Path() + "/node/c1")
	if err := child.Create(nil); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := child.AddProcess(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if names, err := h.Children(parent.Path()); err != nil || !slices.Equal(names, []string{"node"}) {
		t.Fatalf("Children = %v, %v", names, err)
	}
	if err := parent.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("sleep was not killed")
	}
	if err := parent.Remove(); err != nil {
		t.Fatalf("Remove after Kill: %v", err)
	}
}
