package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Group is one cgroup, named by its path from the hierarchy's root.
type Group struct {
	h   *Hierarchy
	rel string
	// thread: a worker group (CPU controllers only; "threaded" on v2).
	thread bool
}

// Group returns the container group at rel (e.g. "xfaas/node-0/c-12ab").
func (h *Hierarchy) Group(rel string) *Group {
	return &Group{h: h, rel: "/" + strings.Trim(rel, "/")}
}

// Thread returns the worker group name inside g: it holds threads, not
// processes, and has CPU controllers only.
func (g *Group) Thread(name string) *Group {
	return &Group{h: g.h, rel: path.Join(g.rel, name), thread: true}
}

// Path is the group's path from the hierarchy root.
func (g *Group) Path() string { return g.rel }

func (g *Group) controllers() []string {
	if g.h.mode == V2 {
		return []string{""}
	}
	if g.thread {
		return workerControllers
	}
	return containerControllers
}

// dirs are the group's directories, one per controller hierarchy (one on
// v2), without duplicates for co-mounted controllers.
func (g *Group) dirs() []string {
	var out []string
	for _, c := range g.controllers() {
		if d := g.h.dir(c, g.rel); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// Create makes the group (and its parents) and applies res, which may be nil.
func (g *Group) Create(res *specs.LinuxResources) error {
	for _, d := range g.dirs() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", g.rel, err)
		}
	}
	if g.h.mode == V2 {
		if err := g.enableV2(); err != nil {
			return err
		}
	}
	return g.Set(res)
}

// enableV2 turns on the controllers a v2 group needs: for a worker group,
// "threaded" on itself and +cpu in its parent; for a container group, its
// controllers in its parent's subtree_control.
func (g *Group) enableV2() error {
	parent := g.h.dir("", path.Dir(g.rel))
	if g.thread {
		if err := write(g.h.dir("", g.rel), "cgroup.type", "threaded"); err != nil {
			return err
		}
		return write(parent, "cgroup.subtree_control", "+cpu")
	}
	avail, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read controllers of %s: %w", parent, err)
	}
	var enable []string
	for _, c := range []string{"cpu", "memory", "pids"} {
		if slices.Contains(strings.Fields(string(avail)), c) {
			enable = append(enable, "+"+c)
		}
	}
	if len(enable) == 0 {
		return nil
	}
	return write(parent, "cgroup.subtree_control", strings.Join(enable, " "))
}

// Set applies the CPU, memory and pids limits of res; nil fields are left
// alone.
func (g *Group) Set(res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	if g.h.mode == V2 {
		return g.setV2(res)
	}
	return g.setV1(res)
}

func (g *Group) setV1(res *specs.LinuxResources) error {
	cpu := g.h.dir("cpu", g.rel)
	if c := res.CPU; c != nil {
		if c.Period != nil {
			if err := write(cpu, "cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10)); err != nil {
				return err
			}
		}
		if c.Quota != nil {
			if err := write(cpu, "cpu.cfs_quota_us", strconv.FormatInt(*c.Quota, 10)); err != nil {
				return err
			}
		}
		if c.Shares != nil {
			if err := write(cpu, "cpu.shares", strconv.FormatUint(*c.Shares, 10)); err != nil {
				return err
			}
		}
	}
	if g.thread {
		return nil
	}
	mem := g.h.dir("memory", g.rel)
	if m := res.Memory; m != nil && m.Limit != nil {
		if err := write(mem, "memory.limit_in_bytes", strconv.FormatInt(*m.Limit, 10)); err != nil {
			return err
		}
		if m.Swap != nil {
			// memsw exists only with swap accounting on; without it the
			// memory limit alone applies.
			if err := write(mem, "memory.memsw.limit_in_bytes", strconv.FormatInt(*m.Swap, 10)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	if p := res.Pids; p != nil && p.Limit > 0 {
		return write(g.h.dir("pids", g.rel), "pids.max", strconv.FormatInt(p.Limit, 10))
	}
	return nil
}

func (g *Group) setV2(res *specs.LinuxResources) error {
	dir := g.h.dir("", g.rel)
	if c := res.CPU; c != nil && (c.Quota != nil || c.Period != nil) {
		period := uint64(100000)
		if c.Period != nil {
			period = *c.Period
		}
		quota := "max"
		if c.Quota != nil && *c.Quota > 0 {
			quota = strconv.FormatInt(*c.Quota, 10)
		}
		if err := write(dir, "cpu.max", quota+" "+strconv.FormatUint(period, 10)); err != nil {
			return err
		}
	}
	if g.thread {
		return nil
	}
	if m := res.Memory; m != nil && m.Limit != nil {
		if err := write(dir, "memory.max", strconv.FormatInt(*m.Limit, 10)); err != nil {
			return err
		}
		if m.Swap != nil {
			// v2's swap limit excludes memory; the OCI value includes it.
			swap := max(*m.Swap-*m.Limit, 0)
			if err := write(dir, "memory.swap.max", strconv.FormatInt(swap, 10)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	if p := res.Pids; p != nil && p.Limit > 0 {
		return write(dir, "pids.max", strconv.FormatInt(p.Limit, 10))
	}
	return nil
}

// AddProcess moves process pid (all its threads) into the group.
func (g *Group) AddProcess(pid int) error {
	for _, d := range g.dirs() {
		if err := write(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// AddThread moves one thread into a worker group.
func (g *Group) AddThread(tid int) error {
	file := "tasks"
	if g.h.mode == V2 {
		file = "cgroup.threads"
	}
	for _, d := range g.dirs() {
		if err := write(d, file, strconv.Itoa(tid)); err != nil {
			return err
		}
	}
	return nil
}

// ReturnThread moves thread tid from the worker group g back to g's
// container group. A worker thread does this before its goroutine ends:
// Go keeps a locked thread alive when it is the process's main thread, and
// a thread left behind would keep g from being removed.
// A thread that has already exited needs no returning.
func (g *Group) ReturnThread(tid int) error {
	home := &Group{h: g.h, rel: path.Dir(g.rel), thread: true}
	if err := home.AddThread(tid); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// Procs lists the processes in the group.
func (g *Group) Procs() ([]int, error) { return g.ids("cgroup.procs") }

// Threads lists the threads in the group.
func (g *Group) Threads() ([]int, error) {
	if g.h.mode == V2 {
		return g.ids("cgroup.threads")
	}
	return g.ids("tasks")
}

func (g *Group) ids(file string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(g.dirs()[0], file))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Kill sends SIGKILL to every process in the group and in the groups below
// it, except the calling process: a group lists a process when any of its
// threads is in it, and a worker thread of this process may be.
func (g *Group) Kill() error {
	self := os.Getpid()
	return filepath.WalkDir(g.dirs()[0], func(path string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil // the group went away meanwhile
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != self {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// Remove removes the group and every group below it, deepest first. A
// group whose tasks are still exiting is retried for up to a second; one
// that keeps tasks is ErrBusy. A group that does not exist is no error.
func (g *Group) Remove() error {
	deadline := time.Now().Add(time.Second)
	var errs []error
	for _, d := range g.dirs() {
		errs = append(errs, removeTree(d, deadline))
	}
	return errors.Join(errs...)
}

func removeTree(dir string, deadline time.Time) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name()), deadline); err != nil {
				return err
			}
		}
	}
	for {
		err := syscall.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, syscall.ENOENT):
			return nil
		case errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline):
			time.Sleep(10 * time.Millisecond)
		case errors.Is(err, syscall.EBUSY):
			return fmt.Errorf("%w: %s", ErrBusy, dir)
		default:
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
	}
}

// write writes val to dir/file, as cgroup files want: one write, no
// truncation, no creation.
func write(dir, file, val string) error {
	f, err := os.OpenFile(filepath.Join(dir, file), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", file, err)
	}
	_, werr := f.WriteString(val)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("cgroup write %q to %s: %w", val, filepath.Join(dir, file), werr)
	}
	return cerr
}

// Exists reports whether the group's directory exists.
func (g *Group) Exists() bool {
	_, err := os.Stat(g.dirs()[0])
	return err == nil
}
