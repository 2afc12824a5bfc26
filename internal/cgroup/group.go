package cgroup

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Group is one cgroup. It is a name, not a handle: methods act on the
// file system each time, and a Group is safe for concurrent use.
type Group struct {
	h *Hierarchy
	// path is below the mount point, "/a/b"; on v1 the cpu controller's.
	path string
	// at holds v1 controllers whose path differs from path; only groups
	// derived from Hierarchy.Self have any.
	at map[string]string
	// worker marks a worker group: CPU controllers only, threaded on v2.
	worker bool
}

// Path is the group's path below the hierarchy's mount point, e.g.
// "/xfaas/node-0/c-12ab".
func (g *Group) Path() string { return g.path }

// String describes the group for logs.
func (g *Group) String() string { return g.h.mode.String() + " " + g.path }

// Child returns the group name below g, of g's kind.
func (g *Group) Child(name string) *Group { return g.derive(name, g.worker) }

// Thread returns the worker group name below the container group g: it
// holds threads rather than processes, uses CPU controllers only, and on
// v2 is created "threaded".
func (g *Group) Thread(name string) *Group { return g.derive(name, true) }

func (g *Group) derive(name string, worker bool) *Group {
	c := &Group{h: g.h, path: path.Join(g.path, clean(name)), worker: worker}
	for ctl, p := range g.at {
		c.setAt(ctl, path.Join(p, clean(name)))
	}
	return c
}

// parent is the group above g, of g's kind.
func (g *Group) parent() *Group {
	p := &Group{h: g.h, path: path.Dir(g.path), worker: g.worker}
	for ctl, q := range g.at {
		p.setAt(ctl, path.Dir(q))
	}
	return p
}

func (g *Group) setAt(controller, p string) {
	if g.at == nil {
		g.at = map[string]string{}
	}
	g.at[controller] = p
}

// dirOf is g's directory in controller c's hierarchy ("" on v2), which
// must be mounted.
func (g *Group) dirOf(c string) string {
	if p, ok := g.at[c]; ok {
		return g.h.dir(c, p)
	}
	return g.h.dir(c, g.path)
}

// dirIn is g's directory in controller c's hierarchy, or ErrUnavailable
// if c is not mounted.
func (g *Group) dirIn(c string) (string, error) {
	if _, ok := g.h.mounts[g.h.key(c)]; !ok {
		return "", fmt.Errorf("%w: the v1 %s controller is not mounted", ErrUnavailable, c)
	}
	return g.dirOf(c), nil
}

// dirs are g's directories, one per hierarchy its kind uses (one on v2),
// co-mounted controllers counted once.
func (g *Group) dirs() []string { return g.dirsOf(g.h.controllers(g.worker)) }

// cpuDirs are g's directories in the CPU hierarchies, where threads move.
func (g *Group) cpuDirs() []string { return g.dirsOf(g.h.controllers(true)) }

func (g *Group) dirsOf(controllers []string) []string {
	var out []string
	for _, c := range controllers {
		if d := g.dirOf(c); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// Exists reports whether the group's directory exists.
func (g *Group) Exists() bool {
	_, err := os.Stat(g.dirs()[0])
	return err == nil
}

// Create makes the group and any missing parents, then applies res (nil
// for none). Creating a group that exists only applies res. On v2 it also
// enables the group's controllers in every ancestor and makes a worker
// group threaded.
func (g *Group) Create(res *specs.LinuxResources) error {
	var err error
	if g.h.mode == V2 {
		err = g.createV2()
	} else {
		for _, d := range g.dirs() {
			if err = os.MkdirAll(d, 0o755); err != nil {
				break
			}
		}
	}
	if err != nil {
		return g.fail("create", err)
	}
	return g.Set(res)
}

// createV2 walks from the root to g, enabling in each ancestor's
// subtree_control the controllers g needs and creating what is missing.
// Worker groups need only cpu, so the container group (their parent) stays
// free of domain controllers and can become a threaded-subtree root.
func (g *Group) createV2() error {
	required, optional := []string{"cpu", "memory"}, []string{"pids"}
	if g.worker {
		required, optional = []string{"cpu"}, nil
	}
	dir := g.h.mounts[""].point
	for _, name := range strings.Split(strings.Trim(g.path, "/"), "/") {
		if name == "" {
			break // the root group
		}
		if err := enable(dir, required, optional); err != nil {
			return err
		}
		dir = filepath.Join(dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	if g.worker {
		return write(dir, "cgroup.type", "threaded")
	}
	return nil
}

// enable turns on, in dir's cgroup.subtree_control, the controllers not
// yet on. A required controller that dir does not have is ErrUnavailable;
// a missing optional one is skipped.
func enable(dir string, required, optional []string) error {
	have, err := readFields(dir, "cgroup.controllers")
	if err != nil {
		return err
	}
	on, err := readFields(dir, "cgroup.subtree_control")
	if err != nil {
		return err
	}
	var add []string
	for _, c := range slices.Concat(required, optional) {
		switch {
		case slices.Contains(on, c):
		case slices.Contains(have, c):
			add = append(add, "+"+c)
		case slices.Contains(required, c):
			return fmt.Errorf("%w: the %s controller is not available in %s", ErrUnavailable, c, dir)
		}
	}
	if len(add) == 0 {
		return nil
	}
	return write(dir, "cgroup.subtree_control", strings.Join(add, " "))
}

// AddProcess moves process pid, with all its threads, into the group.
func (g *Group) AddProcess(pid int) error {
	for _, d := range g.dirs() {
		if err := write(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return g.fail("add process", err)
		}
	}
	return nil
}

// AddThread moves thread tid (from unix.Gettid on a goroutine that called
// runtime.LockOSThread) into the group's CPU hierarchies; on v1 its memory
// and pids groups stay those of its process. On v2 g must be the container
// group of the thread's process or a worker group in it.
func (g *Group) AddThread(tid int) error {
	file := "tasks"
	if g.h.mode == V2 {
		file = "cgroup.threads"
	}
	for _, d := range g.cpuDirs() {
		if err := write(d, file, strconv.Itoa(tid)); err != nil {
			return g.fail("add thread", err)
		}
	}
	return nil
}

// ReturnThread moves thread tid from the worker group g back to g's parent,
// the container group. A worker slot does this before its goroutine ends:
// Go keeps a locked thread alive when it is the process's main thread, and
// a thread left in g would keep g from being removed.
// A thread that has exited needs no returning.
func (g *Group) ReturnThread(tid int) error {
	if err := g.parent().AddThread(tid); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// Procs lists the processes in the group (not in groups below it): on v1
// those in any of its controllers' groups, since a process may have joined
// only some of them. On v2 a container group with worker groups lists its
// whole threaded subtree's, and a worker group refuses (EOPNOTSUPP).
func (g *Group) Procs() ([]int, error) { return g.ids("cgroup.procs") }

// Threads lists the threads in the group (not in groups below it), on v1
// in any of its controllers' groups.
func (g *Group) Threads() ([]int, error) {
	if g.h.mode == V2 {
		return g.ids("cgroup.threads")
	}
	return g.ids("tasks")
}

func (g *Group) ids(file string) ([]int, error) {
	ids, err := union(g.dirs(), func(dir string) ([]int, error) { return readIDs(filepath.Join(dir, file)) })
	if err != nil {
		return nil, g.fail("list", err)
	}
	return ids, nil
}

// union calls read on each of a group's directories (one per v1
// hierarchy) and returns what they hold, sorted and each once. A missing
// directory holds nothing, so a group that a failed Remove left in some
// hierarchies still lists (and Kill still reaches) what is there; only a
// group missing from all of them is fs.ErrNotExist.
func union[T cmp.Ordered](dirs []string, read func(dir string) ([]T, error)) ([]T, error) {
	all := []T{}
	var missing error
	found := false
	for _, d := range dirs {
		some, err := read(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = err
			continue
		case err != nil:
			return nil, err
		}
		all, found = append(all, some...), true
	}
	if !found {
		return nil, missing
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// Kill sends SIGKILL to every process in the group and the groups below
// it, except the calling process: a group lists a process when any of its
// threads is in it, and a worker thread of the caller may be. On v1 that is
// every process in any of the group's controllers' trees, since a process
// may have joined only some of them. On v2 with cgroup.kill (Linux 5.14+)
// the kernel does it atomically, unless the caller is in the tree;
// otherwise the trees are read and signalled until a pass finds no process
// it has not signalled, which catches processes forked meanwhile. A group
// that does not exist is no error. Kill does not wait for the processes to
// exit; Remove does.
func (g *Group) Kill() error {
	self := os.Getpid()
	signalled := map[int]bool{self: true}
	for pass := 0; pass < 16; pass++ {
		pids, err := union(g.dirs(), func(dir string) ([]int, error) { return treeIDs(dir, "cgroup.procs") })
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // gone, or going: nothing left to signal
		case err != nil:
			return g.fail("kill", err)
		case pass == 0 && g.h.mode == V2 && !slices.Contains(pids, self):
			switch err := write(g.dirs()[0], "cgroup.kill", "1"); {
			case err == nil:
				return nil
			case !errors.Is(err, fs.ErrNotExist): // no cgroup.kill: before 5.14
				return g.fail("kill", err)
			}
		}
		n := len(signalled)
		for _, pid := range pids {
			if !signalled[pid] {
				signalled[pid] = true
				_ = unix.Kill(pid, unix.SIGKILL) // ESRCH: it is exiting already
			}
		}
		if len(signalled) == n {
			return nil
		}
	}
	return fmt.Errorf("%w: kill %s: processes keep forking", ErrBusy, g)
}

// Remove removes the group and every group below it, deepest first. A
// group whose tasks are still exiting is retried for up to a second; one
// that keeps tasks is ErrBusy (Kill first, or move them out). A group that
// does not exist is no error.
func (g *Group) Remove() error {
	deadline := time.Now().Add(time.Second)
	var errs []error
	for _, d := range g.dirs() {
		errs = append(errs, removeTree(d, deadline))
	}
	if err := errors.Join(errs...); err != nil {
		return g.fail("remove", err)
	}
	return nil
}

// removeTree removes dir, first the groups below it if it has any. Most
// groups are leaves, so rmdir comes first and the directory is read only
// when the kernel says it is busy.
func removeTree(dir string, deadline time.Time) error {
	for {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case !errors.Is(err, unix.EBUSY):
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		removed, err := removeChildren(dir, deadline)
		if err != nil {
			return err
		}
		if !removed {
			// Tasks, perhaps exiting.
			if time.Now().After(deadline) {
				return fmt.Errorf("%w: remove %s", ErrBusy, dir)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// removeChildren removes the groups below dir and reports whether there
// were any.
func removeChildren(dir string, deadline time.Time) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("remove cgroup: %w", err)
	}
	removed := false
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name()), deadline); err != nil {
				return false, err
			}
			removed = true
		}
	}
	return removed, nil
}

// fail wraps err from operation op on g with the sentinel it amounts to.
func (g *Group) fail(op string, err error) error {
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrNotExist), errors.Is(err, ErrNotWritable), errors.Is(err, ErrBusy):
		return fmt.Errorf("%s %s: %w", op, g, err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s %s: %w", ErrNotExist, op, g, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, unix.EROFS):
		return fmt.Errorf("%w: %s %s: %w", ErrNotWritable, op, g, err)
	}
	return fmt.Errorf("%s %s: %w", op, g, err)
}

// write writes val to dir/file in one write, as control files want. The
// truncation is a no-op on cgroupfs and keeps fakes in plain files exact.
func write(dir, file, val string) error {
	name := filepath.Join(dir, file)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(val)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", val, name, err)
	}
	return nil
}

// readFields reads a space-separated control file such as
// cgroup.controllers.
func readFields(dir, file string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(data)), nil
}

// readIDs reads a list of PIDs or TIDs, sorted and without the duplicates
// v1's cgroup.procs may hold.
func readIDs(name string) ([]int, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	ids := []int{}
	for _, f := range strings.Fields(string(data)) {
		id, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// treeIDs reads file in dir and every directory below it. A v2 threaded
// group refuses to list processes (EOPNOTSUPP): its thread root lists them.
func treeIDs(dir, file string) ([]int, error) {
	ids, err := readIDs(filepath.Join(dir, file))
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ids, err
	}
	for _, e := range entries {
		if e.IsDir() {
			sub, err := treeIDs(filepath.Join(dir, e.Name()), file)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return ids, err
			}
			ids = append(ids, sub...)
		}
	}
	return ids, nil
}

// clean makes p an absolute, clean path ("a/../b" is "/b", ".." is "/").
func clean(p string) string { return path.Clean("/" + p) }
