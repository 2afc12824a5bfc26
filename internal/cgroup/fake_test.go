package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeCgroup2 is a FAKE cgroup v2 file system in a temporary directory,
// standing in for a v2 host, which this machine (v1) is not. Each group
// is a directory of plain files named as the kernel's control files, so
// the exact bytes the package writes can be read back; the fake does none
// of the kernel's work (no controller propagation, no rmdir of non-empty
// directories).
type fakeCgroup2 struct {
	t    *testing.T
	root string
	h    *Hierarchy
}

// fakeV2Files are the control files of every fake group, and their content.
var fakeV2Files = map[string]string{
	"cgroup.controllers":     "cpuset cpu io memory hugetlb pids rdma misc\n",
	"cgroup.subtree_control": "",
	"cgroup.type":            "domain\n",
	"cgroup.procs":           "",
	"cgroup.threads":         "",
	"cgroup.kill":            "",
	"cpu.max":                "max 100000\n",
	"cpu.weight":             "100\n",
	"cpu.stat":               "",
	"memory.max":             "max\n",
	"memory.swap.max":        "max\n",
	"memory.current":         "",
	"memory.peak":            "",
	"memory.stat":            "",
	"pids.max":               "max\n",
}

// newFakeCgroup2 makes the root and the groups, and a mount table that
// mounts the root as cgroup2. The root's subtree_control starts as systemd
// leaves it.
func newFakeCgroup2(t *testing.T, groups ...string) *fakeCgroup2 {
	t.Helper()
	f := &fakeCgroup2{t: t, root: t.TempDir()}
	for _, g := range append([]string{""}, groups...) {
		f.addGroup(g)
	}
	f.write("cgroup.subtree_control", "cpu memory pids\n")
	mi := writeTemp(t, "mountinfo", "35 22 0:30 / "+f.root+" rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n")
	h, err := Open(Options{Root: f.root, MountInfo: mi})
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

func (f *fakeCgroup2) addGroup(g string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Join(f.root, g), 0o755); err != nil {
		f.t.Fatal(err)
	}
	for name, content := range fakeV2Files {
		f.write(filepath.Join(g, name), content)
	}
}

func (f *fakeCgroup2) write(file, content string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.root, file), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeCgroup2) read(file string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.root, file))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// settle does what the kernel would have: a subtree_control written as
// "+cpu +memory" reads back as "cpu memory".
func (f *fakeCgroup2) settle() {
	f.t.Helper()
	err := filepath.WalkDir(f.root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.subtree_control" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "+", "")), 0o644)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// expect checks the content of each file.
func (f *fakeCgroup2) expect(files map[string]string) {
	f.t.Helper()
	for file, want := range files {
		if got := f.read(file); got != want {
			f.t.Errorf("%s = %q; want %q", file, got, want)
		}
	}
}

func TestV2ContainerAndWorkerGroups(t *testing.T) {
	f := newFakeCgroup2(t, "xfaas", "xfaas/c1", "xfaas/c1/w0")
	c := f.h.Group("xfaas/c1")
	if err := c.Create(Resources(1000, 256<<20, 512)); err != nil {
		t.Fatal(err)
	}
	f.expect(map[string]string{
		"cgroup.subtree_control":          "cpu memory pids\n", // already on: not written
		"xfaas/cgroup.subtree_control":    "+cpu +memory +pids",
		"xfaas/c1/cgroup.subtree_control": "", // c1 enables no domain controller
		"xfaas/c1/cpu.max":                "100000 100000",
		"xfaas/c1/cpu.weight":             "100",
		"xfaas/c1/memory.max":             "268435456",
		"xfaas/c1/memory.swap.max":        "0",
		"xfaas/c1/pids.max":               "512",
	})
	f.settle()

	w := c.Thread("w0")
	if err := w.Create(&specs.LinuxResources{CPU: MilliCPU(100)}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddProcess(77); err != nil {
		t.Fatal(err)
	}
	if err := w.AddThread(4242); err != nil {
		t.Fatal(err)
	}
	f.expect(map[string]string{
		"xfaas/cgroup.subtree_control":    "cpu memory pids",
		"xfaas/c1/cgroup.subtree_control": "+cpu",
		"xfaas/c1/w0/cgroup.type":         "threaded",
		"xfaas/c1/w0/cpu.max":             "10000 100000",
		"xfaas/c1/w0/cpu.weight":          "17",    // 102 shares, as runc converts them
		"xfaas/c1/w0/memory.max":          "max\n", // untouched: memory is the container's
		"xfaas/c1/cgroup.procs":           "77",
		"xfaas/c1/w0/cgroup.threads":      "4242",
	})
	if err := w.ReturnThread(4242); err != nil {
		t.Fatal(err)
	}
	f.expect(map[string]string{"xfaas/c1/cgroup.threads": "4242"})
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	f.expect(map[string]string{"xfaas/c1/cgroup.kill": "1"})
}

// cgroup.kill would kill the caller too when one of its threads is in the
// tree; then Kill signals the others one by one.
func TestV2KillSparesTheCaller(t *testing.T) {
	f := newFakeCgroup2(t, "c1", "c1/w0")
	f.write("c1/w0/cgroup.procs", strconv.Itoa(os.Getpid())+"\n")
	if err := f.h.Group("c1").Kill(); err != nil {
		t.Fatal(err)
	}
	f.expect(map[string]string{"c1/cgroup.kill": ""})
}

func TestV2Set(t *testing.T) {
	ptr := func(n int64) *int64 { return &n }
	uptr := func(n uint64) *uint64 { return &n }
	cases := []struct {
		name  string
		res   specs.LinuxResources
		files map[string]string
	}{
		{"quota only", specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(50000)}}, map[string]string{"cpu.max": "50000"}},
		{"period only: no quota, as runc", specs.LinuxResources{CPU: &specs.LinuxCPU{Period: uptr(20000)}}, map[string]string{"cpu.max": "max 20000"}},
		{"no quota", specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(-1), Period: uptr(Period)}}, map[string]string{"cpu.max": "max 100000"}},
		{"minimum quota", specs.LinuxResources{CPU: MilliCPU(1)}, map[string]string{"cpu.max": "1000 100000", "cpu.weight": "1"}},
		{"no memory limit", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(-1), Swap: ptr(-1)}}, map[string]string{"memory.max": "max", "memory.swap.max": "max"}},
		{"swap beyond memory", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(256 << 20), Swap: ptr(384 << 20)}}, map[string]string{"memory.max": "268435456", "memory.swap.max": "134217728"}},
		{"no pids limit", specs.LinuxResources{Pids: &specs.LinuxPids{Limit: -1}}, map[string]string{"pids.max": "max"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeCgroup2(t, "c1")
			if err := f.h.Group("c1").Set(&c.res); err != nil {
				t.Fatal(err)
			}
			for file, want := range c.files {
				if got := f.read("c1/" + file); got != want {
					t.Errorf("%s = %q; want %q", file, got, want)
				}
			}
		})
	}
}

func TestSetRefusesWhatItCannotApply(t *testing.T) {
	f := newFakeCgroup2(t, "c1", "c1/w0")
	limit, swap := int64(256<<20), int64(128<<20)
	for name, set := range map[string]func() error{
		"memory on a worker": func() error { return f.h.Group("c1").Thread("w0").Set(Resources(100, 64<<20, 0)) },
		"cpuset":             func() error { return f.h.Group("c1").Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-1"}}) },
		"devices": func() error {
			return f.h.Group("c1").Set(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false}}})
		},
		"swap below memory": func() error {
			return f.h.Group("c1").Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &swap}})
		},
		"swap alone": func() error {
			return f.h.Group("c1").Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: &swap}})
		},
	} {
		if err := set(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if got := f.read("c1/w0/memory.max"); got != "max\n" {
		t.Errorf("memory.max of the worker written: %q", got)
	}
}

func TestV2MissingControllerOrGroup(t *testing.T) {
	f := newFakeCgroup2(t, "c1")
	f.write("cgroup.controllers", "cpuset io pids\n")
	f.write("cgroup.subtree_control", "pids\n")
	if err := f.h.Writable(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "cpu controller") {
		t.Errorf("Writable() = %v; want ErrUnavailable naming the cpu controller", err)
	}
	if err := f.h.Group("c1").Create(nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Create() = %v; want ErrUnavailable", err)
	}
	_, err := f.h.Group("nope").Stats()
	if !errors.Is(err, ErrNotExist) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stats() of a missing group = %v; want ErrNotExist", err)
	}
}

// Realistic control files from Linux 6.8.
const (
	v2CPUStat = `usage_usec 2503817
user_usec 2001234
system_usec 502583
core_sched.force_idle_usec 0
nr_periods 40
nr_throttled 30
throttled_usec 1200345
nr_bursts 0
burst_usec 0
`
	v2MemoryStat = `anon 8388608
file 1048576
kernel 569344
kernel_stack 98304
pagetables 258048
sec_pagetables 0
percpu 1680
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 0
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 8372224
active_anon 16384
inactive_file 1048576
active_file 0
unevictable 0
slab_reclaimable 112072
slab_unreclaimable 131288
slab 243360
workingset_refault_anon 0
workingset_refault_file 0
pgscan 0
pgsteal 0
pgfault 10342
pgmajfault 0
thp_fault_alloc 0
`
)

func TestV2Stats(t *testing.T) {
	f := newFakeCgroup2(t, "c1", "c1/w0")
	f.write("c1/cpu.stat", v2CPUStat)
	f.write("c1/memory.current", "10485760\n")
	f.write("c1/memory.peak", "12582912\n")
	f.write("c1/memory.stat", v2MemoryStat)
	f.write("c1/w0/cpu.stat", "usage_usec 150000\nuser_usec 150000\nsystem_usec 0\nnr_periods 15\nnr_throttled 15\nthrottled_usec 1350000\n")
	for _, name := range []string{"memory.current", "memory.peak", "memory.stat"} {
		if err := os.Remove(filepath.Join(f.root, "c1/w0", name)); err != nil { // not in a threaded group
			t.Fatal(err)
		}
	}
	got, err := f.h.Group("c1").Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		CPUTotal: 2503817 * time.Microsecond, CPUUser: 2001234 * time.Microsecond, CPUSystem: 502583 * time.Microsecond,
		Periods: 40, Throttled: 30, ThrottledTime: 1200345 * time.Microsecond,
		MemoryUsage: 10 << 20, MemoryMaxUsage: 12 << 20, MemoryRSS: 8 << 20, MemoryCache: 1 << 20,
	}
	if got != want {
		t.Errorf("container stats\n got %+v\nwant %+v", got, want)
	}
	got, err = f.h.Group("c1").Thread("w0").Stats()
	if err != nil {
		t.Fatal(err)
	}
	want = Stats{CPUTotal: 150 * time.Millisecond, CPUUser: 150 * time.Millisecond, Periods: 15, Throttled: 15, ThrottledTime: 1350 * time.Millisecond}
	if got != want {
		t.Errorf("worker stats\n got %+v\nwant %+v", got, want)
	}
}

// newFakeCgroup1 is a FAKE cgroup v1 file system in a temporary directory:
// this machine's layout (cpu and cpuacct mounted apart) with group c1's
// control files, for reading stats in formats the real kernel here does
// not produce. It returns the group's directory per controller.
func newFakeCgroup1(t *testing.T, files map[string]string) (*Hierarchy, map[string]string) {
	t.Helper()
	root := t.TempDir()
	var mountinfo strings.Builder
	dirs := map[string]string{}
	for i, c := range []string{"cpu", "cpuacct", "memory"} {
		dirs[c] = filepath.Join(root, c, "c1")
		if err := os.MkdirAll(dirs[c], 0o755); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&mountinfo, "%d 30 0:%d / %s/%s rw,relatime - cgroup cgroup rw,%s\n", 31+i, 28+i, root, c, c)
	}
	for key, content := range files {
		c, file, _ := strings.Cut(key, "/")
		if err := os.WriteFile(filepath.Join(dirs[c], file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, err := Open(Options{Root: root, MountInfo: writeTemp(t, "mountinfo", mountinfo.String())})
	if err != nil {
		t.Fatal(err)
	}
	return h, dirs
}

// Realistic v1 memory.stat (Linux 4.15).
const v1MemoryStat = `cache 1048576
rss 8388608
rss_huge 0
shmem 0
mapped_file 0
dirty 0
writeback 0
pgpgin 4120
pgpgout 1815
pgfault 5203
pgmajfault 0
inactive_anon 0
active_anon 8388608
inactive_file 1048576
active_file 0
unevictable 0
hierarchical_memory_limit 268435456
hierarchical_memsw_limit 268435456
total_cache 2097152
total_rss 9437184
total_rss_huge 0
total_shmem 0
total_mapped_file 0
total_dirty 0
total_writeback 0
total_pgpgin 4120
total_pgpgout 1815
total_pgfault 5203
total_pgmajfault 0
total_inactive_anon 0
total_active_anon 9437184
total_inactive_file 2097152
total_active_file 0
total_unevictable 0
`

func TestV1Stats(t *testing.T) {
	files := map[string]string{
		"cpuacct/cpuacct.usage":            "2503817000\n",
		"cpuacct/cpuacct.stat":             "user 200\nsystem 50\n",
		"cpu/cpu.stat":                     "nr_periods 40\nnr_throttled 30\nthrottled_time 1200345000\nnr_bursts 0\nburst_time 0\n",
		"memory/memory.usage_in_bytes":     "11534336\n",
		"memory/memory.max_usage_in_bytes": "12582912\n",
		"memory/memory.stat":               v1MemoryStat,
	}
	want := Stats{
		CPUTotal: 2503817 * time.Microsecond, CPUUser: 2 * time.Second, CPUSystem: 500 * time.Millisecond,
		Periods: 40, Throttled: 30, ThrottledTime: 1200345 * time.Microsecond,
		MemoryUsage: 11 << 20, MemoryMaxUsage: 12 << 20, MemoryRSS: 9 << 20, MemoryCache: 2 << 20,
	}
	// Before Linux 4.11 only cpuacct.stat, in USER_HZ ticks, splits the time.
	h, dirs := newFakeCgroup1(t, files)
	if got, err := h.Group("c1").Stats(); err != nil || got != want {
		t.Errorf("from cpuacct.stat:\n got %+v, %v\nwant %+v", got, err, want)
	}
	for file, content := range map[string]string{"cpuacct.usage_user": "2001234000\n", "cpuacct.usage_sys": "502583000\n"} {
		if err := os.WriteFile(filepath.Join(dirs["cpuacct"], file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want.CPUUser, want.CPUSystem = 2001234*time.Microsecond, 502583*time.Microsecond
	if got, err := h.Group("c1").Stats(); err != nil || got != want {
		t.Errorf("from cpuacct.usage_user and _sys:\n got %+v, %v\nwant %+v", got, err, want)
	}
}
