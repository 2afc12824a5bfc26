package cgroup

// Tests against this machine's real cgroups. They need root on a cgroup
// host, as `make test` has, and fail (never skip) saying why otherwise.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// hostGroup opens this machine's hierarchy and creates a uniquely named
// group at its root for the test, removed with everything below it when
// the test ends, pass or fail.
func hostGroup(t testing.TB) (*Hierarchy, *Group) {
	t.Helper()
	h, err := Open(Options{})
	if err == nil {
		err = h.Writable()
	}
	if err != nil {
		t.Fatalf("this test needs writable cgroups (root on a cgroup host): %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	g := h.Group("xfaas-test-" + hex.EncodeToString(b[:]))
	if err := g.Create(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Kill(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := g.Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, d := range g.dirs() {
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("cleanup: %s left behind", d)
			}
		}
	})
	return h, g
}

// threadHome returns the group a test's worker threads go back to before
// their goroutines end. On v1 a thread may join any group, so it is the
// process's own. On v2 a thread may only join groups of its process's
// threaded domain, so the process joins container group c for the test.
func threadHome(t *testing.T, h *Hierarchy, c *Group) *Group {
	t.Helper()
	self, err := h.Self()
	if err != nil {
		t.Fatal(err)
	}
	if h.Mode() == V1 {
		return self
	}
	if err := c.AddProcess(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := self.AddProcess(os.Getpid()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return c
}

// onThread runs f on a goroutine locked to its own OS thread, with the
// thread's id, and returns f's error. The thread ends with the goroutine.
func onThread(f func(tid int) error) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with us
		done <- f(unix.Gettid())
	}()
	return <-done
}

// readControl reads a control file of g in controller c's hierarchy.
func readControl(t *testing.T, g *Group, c, file string) string {
	t.Helper()
	dir, err := g.dirIn(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// expectControls checks control files, keyed "controller/file".
func expectControls(t *testing.T, g *Group, want map[string]string) {
	t.Helper()
	for key, v := range want {
		c, file, _ := strings.Cut(key, "/")
		if got := readControl(t, g, c, file); got != v {
			t.Errorf("%s of %s = %q; want %q", file, g, got, v)
		}
	}
}

// groupsOf reads the groups of a task from /proc, by the controllers g
// uses, as paths below the mount points.
func groupsOf(t *testing.T, h *Hierarchy, procFile string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(procFile)
	if err != nil {
		t.Fatal(err)
	}
	paths := parseProcCgroup(string(b))
	out := map[string]string{}
	for _, c := range h.controllers(false) {
		out[c], err = h.mounts[h.key(c)].relative(paths[h.key(c)])
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestHostContainerGroup(t *testing.T) {
	h, parent := hostGroup(t)
	c := parent.Child("c1")
	if err := c.Create(Resources(500, 64<<20, 100)); err != nil {
		t.Fatal(err)
	}
	if h.Mode() == V1 {
		expectControls(t, c, map[string]string{
			"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000", "cpu/cpu.shares": "512",
			"memory/memory.limit_in_bytes": "67108864", "memory/memory.memsw.limit_in_bytes": "67108864",
			"pids/pids.max": "100",
		})
	} else {
		expectControls(t, c, map[string]string{
			"/cpu.max": "50000 100000", "/cpu.weight": "59", "/memory.max": "67108864", "/memory.swap.max": "0", "/pids.max": "100",
		})
	}

	// A shell that, once moved in, writes 8 MiB to a file (page cache
	// charged to the group) and waits.
	file := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command("sh", "-c", `read go; dd if=/dev/zero of="$1" bs=1M count=8 2>/dev/null; echo done; exec sleep 60`, "sh", file)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if err := c.AddProcess(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "go\n")
	if _, err := io.ReadFull(stdout, make([]byte, 5)); err != nil {
		t.Fatalf("the shell in the group: %v", err)
	}
	if pids, err := c.Procs(); err != nil || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("Procs() = %v, %v; want %d in it", pids, err, cmd.Process.Pid)
	}
	for ctl, p := range groupsOf(t, h, fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid)) {
		if p != c.Path() {
			t.Errorf("the shell's %s group is %s; want %s", ctl, p, c.Path())
		}
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", s)
	if s.CPUTotal == 0 || s.MemoryUsage < 8<<20 || s.MemoryMaxUsage < s.MemoryUsage || s.MemoryCache < 8<<20 {
		t.Errorf("stats %+v; want CPU used and at least 8 MiB of cache", s)
	}

	if err := c.Remove(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove() with a live process = %v; want ErrBusy", err)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(); err != nil {
		t.Fatalf("Remove() after Kill() = %v", err)
	}
	if c.Exists() {
		t.Fatal("the group exists after Remove()")
	}
	if err := c.Remove(); err != nil {
		t.Fatalf("Remove() of a removed group = %v", err)
	}
}

// Limits change in an order the kernel accepts: v1 refuses a child's
// quota/period above its parent's, and a memory limit above memsw.
func TestHostLimitChanges(t *testing.T) {
	h, parent := hostGroup(t)
	c := parent.Child("c1")
	if err := c.Create(Resources(500, 64<<20, 0)); err != nil {
		t.Fatal(err)
	}
	w := c.Thread("w0")
	if err := w.Create(&specs.LinuxResources{CPU: MilliCPU(500)}); err != nil {
		t.Fatal(err)
	}
	// Period first would be 2.5 CPUs under a parent of 0.5.
	quota, period := int64(10000), uint64(20000)
	if err := w.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}}); err != nil {
		t.Fatal(err)
	}
	for _, mib := range []int64{128, 32, 256} {
		if err := c.Set(&specs.LinuxResources{Memory: Memory(mib << 20)}); err != nil {
			t.Fatalf("memory limit %d MiB: %v", mib, err)
		}
		want := strconv.FormatInt(mib<<20, 10)
		if h.Mode() == V1 {
			expectControls(t, c, map[string]string{"memory/memory.limit_in_bytes": want, "memory/memory.memsw.limit_in_bytes": want})
		} else {
			expectControls(t, c, map[string]string{"/memory.max": want})
		}
	}
	if h.Mode() == V1 {
		expectControls(t, w, map[string]string{"cpu/cpu.cfs_quota_us": "10000", "cpu/cpu.cfs_period_us": "20000"})
	} else {
		expectControls(t, w, map[string]string{"/cpu.max": "10000 20000"})
	}
}

func TestHostWorkerThread(t *testing.T) {
	h, parent := hostGroup(t)
	c := parent.Child("c1")
	if err := c.Create(nil); err != nil {
		t.Fatal(err)
	}
	w := c.Thread("w0")
	if err := w.Create(&specs.LinuxResources{CPU: MilliCPU(500)}); err != nil {
		t.Fatal(err)
	}
	home := threadHome(t, h, c)
	err := onThread(func(tid int) error {
		defer home.AddThread(tid)
		if err := w.AddThread(tid); err != nil {
			return err
		}
		task := fmt.Sprintf("/proc/self/task/%d/cgroup", tid)
		if got := groupsOf(t, h, task)[h.key("cpu")]; got != w.Path() {
			return fmt.Errorf("after AddThread the thread is in %s; want %s", got, w.Path())
		}
		if tids, err := w.Threads(); err != nil || !slices.Equal(tids, []int{tid}) {
			return fmt.Errorf("Threads() = %v, %v; want [%d]", tids, err, tid)
		}
		for start := time.Now(); time.Since(start) < 100*time.Millisecond; {
		}
		if err := w.ReturnThread(tid); err != nil {
			return err
		}
		if got := groupsOf(t, h, task)[h.key("cpu")]; got != c.Path() {
			return fmt.Errorf("after ReturnThread the thread is in %s; want %s", got, c.Path())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := w.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats after 100 ms of spinning: %+v", s)
	if s.CPUTotal < 10*time.Millisecond || s.CPUUser == 0 {
		t.Fatalf("stats %+v; want the spin's CPU time", s)
	}
}

// A thread spinning in a worker group of 100 millicores gets about 10% of
// a CPU, by the group's own accounting (cpuacct.usage, cpu.stat).
func TestHostWorkerQuotaHolds(t *testing.T) {
	h, parent := hostGroup(t)
	c := parent.Child("c1")
	if err := c.Create(nil); err != nil {
		t.Fatal(err)
	}
	w := c.Thread("w0")
	if err := w.Create(&specs.LinuxResources{CPU: MilliCPU(100)}); err != nil {
		t.Fatal(err)
	}
	home := threadHome(t, h, c)
	var before, after Stats
	var wall time.Duration
	err := onThread(func(tid int) error {
		defer home.AddThread(tid)
		if err := w.AddThread(tid); err != nil {
			return err
		}
		var err error
		if before, err = w.Stats(); err != nil {
			return err
		}
		start := time.Now()
		for time.Since(start) < 1500*time.Millisecond {
		}
		wall = time.Since(start)
		after, err = w.Stats()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	used := after.CPUTotal - before.CPUTotal
	share := float64(used) / float64(wall)
	t.Logf("used %v of CPU in %v (%.1f%%); throttled in %d of %d periods, for %v",
		used, wall, 100*share, after.Throttled-before.Throttled, after.Periods-before.Periods, after.ThrottledTime-before.ThrottledTime)
	if share < 0.05 || share > 0.20 {
		t.Errorf("a 100-millicore thread used %.1f%% of a CPU; want about 10%%", 100*share)
	}
	if after.Throttled == before.Throttled || after.ThrottledTime == before.ThrottledTime {
		t.Errorf("no throttling counted: %+v", after)
	}
}

// Remove takes a container group with worker groups that held threads, in
// every hierarchy, and leaves nothing behind.
func TestHostRemoveTree(t *testing.T) {
	h, parent := hostGroup(t)
	c := parent.Child("c1")
	if err := c.Create(Resources(300, 64<<20, 0)); err != nil {
		t.Fatal(err)
	}
	home := threadHome(t, h, c)
	var all []string
	for i := range 3 {
		w := c.Thread("w" + strconv.Itoa(i))
		if err := w.Create(&specs.LinuxResources{CPU: MilliCPU(100)}); err != nil {
			t.Fatal(err)
		}
		err := onThread(func(tid int) error {
			defer home.AddThread(tid)
			return w.AddThread(tid)
		})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, w.dirs()...)
	}
	all = append(all, c.dirs()...)
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", d)
		}
	}
}

// Kill reaches processes in groups below the group, never the caller even
// when one of its threads is in the tree, and Children lists groups.
func TestHostKillReachesDescendantsNotTheCaller(t *testing.T) {
	h, parent := hostGroup(t)
	c := parent.Child("node").Child("c1")
	if err := c.Create(nil); err != nil {
		t.Fatal(err)
	}
	w := c.Thread("w0")
	if err := w.Create(nil); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if err := c.AddProcess(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if names, err := h.Children(parent.Path()); err != nil || !slices.Equal(names, []string{"node"}) {
		t.Fatalf("Children() = %v, %v; want [node]", names, err)
	}
	home := threadHome(t, h, c)
	err := onThread(func(tid int) error {
		defer home.AddThread(tid)
		if err := w.AddThread(tid); err != nil {
			return err
		}
		return parent.Kill()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("sleep ended with %v; want killed", err)
	}
}

func TestHostReturnExitedThread(t *testing.T) {
	_, parent := hostGroup(t)
	w := parent.Child("c1").Thread("w0")
	if err := w.Create(nil); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if err := w.AddThread(cmd.Process.Pid); !errors.Is(err, unix.ESRCH) {
		t.Errorf("AddThread() of an exited thread = %v; want ESRCH", err)
	}
	if err := w.ReturnThread(cmd.Process.Pid); err != nil {
		t.Errorf("ReturnThread() of an exited thread = %v; want nil", err)
	}
}

// On v1 a process may join only some of a group's hierarchies, here each
// one but the first, whose path the group is named by: Procs lists it and
// Kill reaches it, also once a Remove that it kept busy has taken the
// group from the other hierarchies.
func TestHostKillReachesEveryHierarchy(t *testing.T) {
	h, parent := hostGroup(t)
	if h.Mode() != V1 {
		t.Skip("cgroup v2 has one hierarchy: a process is in all of a group's controllers or in none")
	}
	c := parent.Child("c1")
	if err := c.Create(nil); err != nil {
		t.Fatal(err)
	}
	dirs := c.dirs()
	for i, dir := range dirs[1:] {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		if err := write(dir, "cgroup.procs", strconv.Itoa(cmd.Process.Pid)); err != nil {
			t.Fatal(err)
		}
		partly := i == len(dirs)-2 // the last: first Remove the group where it can be
		if partly {
			if err := c.Remove(); !errors.Is(err, ErrBusy) {
				t.Fatalf("Remove() with a process in %s = %v; want ErrBusy", dir, err)
			}
			if _, err := os.Stat(dirs[0]); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Remove() left %s, which held no process: %v", dirs[0], err)
			}
		}
		if pids, err := c.Procs(); err != nil || !slices.Equal(pids, []int{cmd.Process.Pid}) {
			t.Errorf("Procs() with a process in %s only = %v, %v; want [%d]", dir, pids, err, cmd.Process.Pid)
		}
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("the process in %s only (partly removed group: %v) ended with %v; want killed", dir, partly, err)
		}
	}
	if err := c.Remove(); err != nil {
		t.Fatalf("Remove() after Kill() = %v", err)
	}
}

// Children finds a group that a Remove, kept busy by a process in one
// hierarchy, took from the others, so that a later clean-up can still
// find it.
func TestHostChildrenFindsAPartlyRemovedGroup(t *testing.T) {
	h, parent := hostGroup(t)
	if h.Mode() != V1 {
		t.Skip("cgroup v2 has one hierarchy: a group is removed from all of it or not at all")
	}
	c := parent.Child("c1")
	if err := c.Create(nil); err != nil {
		t.Fatal(err)
	}
	dirs := c.dirs()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if err := write(dirs[len(dirs)-1], "cgroup.procs", strconv.Itoa(cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove() with a process in %s = %v; want ErrBusy", dirs[len(dirs)-1], err)
	}
	if _, err := os.Stat(dirs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Remove() left %s, which held no process: %v", dirs[0], err)
	}
	if names, err := h.Children(parent.Path()); err != nil || !slices.Equal(names, []string{"c1"}) {
		t.Errorf("Children() of a partly removed group's parent = %v, %v; want [c1]", names, err)
	}
}
