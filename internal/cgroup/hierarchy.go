package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
)

// Mode is the cgroup version in use.
type Mode int

const (
	// V1 is the legacy layout: a hierarchy per controller, or per set of
	// co-mounted controllers. Hybrid hosts are V1.
	V1 Mode = 1
	// V2 is the unified hierarchy.
	V2 Mode = 2
)

func (m Mode) String() string { return fmt.Sprintf("cgroup v%d", int(m)) }

// Errors callers branch on. Returned errors wrap one of them with context.
var (
	// ErrUnavailable means there is no usable hierarchy: nothing mounted,
	// or a controller xfaas needs is missing. Callers run without limits
	// and say why.
	ErrUnavailable = errors.New("cgroups unavailable")
	// ErrNotWritable means groups cannot be created or changed here: not
	// root, or a read-only mount. Callers run without limits and say why.
	ErrNotWritable = errors.New("cgroups not writable")
	// ErrNotExist means the group (or one of its control files) does not
	// exist. Errors wrapping it also match fs.ErrNotExist.
	ErrNotExist = errors.New("cgroup does not exist")
	// ErrBusy means a group still holds tasks and cannot be removed.
	ErrBusy = errors.New("cgroup still has tasks")
)

// Options locate the hierarchy; the zero value means this host.
type Options struct {
	// Root is where cgroup file systems are mounted; only mounts at or
	// below it are used. The default is /sys/fs/cgroup.
	Root string
	// MountInfo is the mount table to read. The default is
	// /proc/self/mountinfo; tests point it at a fake.
	MountInfo string
	// ProcCgroup lists the process's groups. The default is
	// /proc/self/cgroup.
	ProcCgroup string
}

func (o *Options) setDefaults() {
	if o.Root == "" {
		o.Root = "/sys/fs/cgroup"
	}
	if o.MountInfo == "" {
		o.MountInfo = "/proc/self/mountinfo"
	}
	if o.ProcCgroup == "" {
		o.ProcCgroup = "/proc/self/cgroup"
	}
}

// The v1 controllers by kind of group. Writable requires all but pids,
// which groups skip where it is not mounted (v2: not available).
var (
	workerControllers    = []string{"cpu", "cpuacct"}
	containerControllers = []string{"cpu", "cpuacct", "memory", "pids"}
	requiredControllers  = []string{"cpu", "cpuacct", "memory"}
)

// Hierarchy is the host's cgroup file system. It is immutable and safe
// for concurrent use, as are the Groups it returns.
type Hierarchy struct {
	mode Mode
	// mounts holds v1 hierarchies by controller, or the v2 one under "".
	mounts map[string]mount
	opts   Options
}

// Open finds the cgroup hierarchy in the mount table. It fails with
// ErrUnavailable when no cgroup file system is mounted under Options.Root.
// Whether groups can be created is [Hierarchy.Writable]'s question.
func Open(opts Options) (*Hierarchy, error) {
	opts.setDefaults()
	data, err := os.ReadFile(opts.MountInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	v1, v2 := parseMounts(string(data), opts.Root)
	h := &Hierarchy{opts: opts}
	switch _, cpuOnV1 := v1["cpu"]; {
	case cpuOnV1:
		h.mode, h.mounts = V1, v1
	case v2 != nil:
		h.mode, h.mounts = V2, map[string]mount{"": *v2}
	default:
		return nil, fmt.Errorf("%w: no cgroup v2 file system and no v1 cpu controller mounted under %s (per %s)", ErrUnavailable, opts.Root, opts.MountInfo)
	}
	return h, nil
}

// Mode is the hierarchy's version.
func (h *Hierarchy) Mode() Mode { return h.mode }

// probeSeq names probe groups uniquely within the process.
var probeSeq atomic.Uint64

// Writable reports why groups cannot be created and limited at the root of
// the hierarchy, or nil. The error wraps ErrUnavailable (a controller is
// missing) or ErrNotWritable (a read-only mount, no permission) and names
// the path. It is cheap: a mkdir and rmdir per hierarchy.
func (h *Hierarchy) Writable() error {
	for _, c := range h.controllers(false) {
		if m := h.mounts[h.key(c)]; m.readOnly {
			return fmt.Errorf("%w: %s is mounted read-only", ErrNotWritable, m.point)
		}
	}
	if err := h.available(); err != nil {
		return err
	}
	probe := h.Group(fmt.Sprintf("xfaas-probe-%d-%d", os.Getpid(), probeSeq.Add(1)))
	for _, d := range probe.dirs() {
		err := os.Mkdir(d, 0o755)
		if err == nil {
			err = os.Remove(d)
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case err != nil:
			return fmt.Errorf("%w: %w", ErrNotWritable, err)
		}
	}
	return nil
}

// available reports a missing required controller.
func (h *Hierarchy) available() error {
	if h.mode == V1 {
		for _, c := range requiredControllers {
			if _, ok := h.mounts[c]; !ok {
				return fmt.Errorf("%w: the v1 %s controller is not mounted under %s", ErrUnavailable, c, h.opts.Root)
			}
		}
		return nil
	}
	root := h.mounts[""].point
	have, err := readFields(root, "cgroup.controllers")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, c := range []string{"cpu", "memory"} {
		if !slices.Contains(have, c) {
			return fmt.Errorf("%w: the %s controller is not available in %s (cgroup.controllers: %q)", ErrUnavailable, c, root, strings.Join(have, " "))
		}
	}
	return nil
}

// Self returns the group of the calling process. On v1 its Path is the cpu
// controller's group; other controllers keep their own paths, which may
// differ (a process may sit in /user.slice for cpu and elsewhere for
// memory).
func (h *Hierarchy) Self() (*Group, error) {
	data, err := os.ReadFile(h.opts.ProcCgroup)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	paths := parseProcCgroup(string(data))
	g := &Group{h: h}
	for _, c := range h.controllers(false) {
		p, ok := paths[h.key(c)]
		if !ok {
			return nil, fmt.Errorf("%w: no %s entry for %s in %s", ErrUnavailable, h.mode, c, h.opts.ProcCgroup)
		}
		rel, err := h.mounts[h.key(c)].relative(p)
		if err != nil {
			return nil, err
		}
		if g.path == "" {
			g.path = rel
		} else if rel != g.path {
			g.setAt(c, rel)
		}
	}
	return g, nil
}

// Group returns the container group at path p below the mount point (e.g.
// "xfaas/node-0/c-12ab"); a leading "/" is optional and ".." cannot climb
// out of the hierarchy. Nothing is created.
func (h *Hierarchy) Group(p string) *Group {
	return &Group{h: h, path: clean(p)}
}

// Children lists the names of the groups directly below the group at path
// p, e.g. to find groups left by a process that died without removing
// them. On v1 it reads every container controller's hierarchy, so a group
// that a failed Remove took from some of them is still found.
func (h *Hierarchy) Children(p string) ([]string, error) {
	g := h.Group(p)
	names, err := union(g.dirs(), func(dir string) ([]string, error) {
		entries, err := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
		return names, err
	})
	if err != nil {
		return nil, g.fail("list children", err)
	}
	return names, nil
}

// key is the mounts key of controller c: c on v1, "" on v2.
func (h *Hierarchy) key(c string) string {
	if h.mode == V2 {
		return ""
	}
	return c
}

// controllers are the v1 controllers a group of the kind uses that are
// mounted here ("" on v2, where one directory serves them all).
func (h *Hierarchy) controllers(worker bool) []string {
	if h.mode == V2 {
		return []string{""}
	}
	want := containerControllers
	if worker {
		want = workerControllers
	}
	var out []string
	for _, c := range want {
		if _, ok := h.mounts[c]; ok {
			out = append(out, c)
		}
	}
	return out
}

// dir is the directory of group path p in controller c's hierarchy.
func (h *Hierarchy) dir(c, p string) string {
	return filepath.Join(h.mounts[h.key(c)].point, p)
}
