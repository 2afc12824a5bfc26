// Package cgroup creates, limits, measures and removes Linux control groups,
// on cgroup v1 (separate controller hierarchies; this project's CI machine)
// and v2 (the unified hierarchy of most production hosts).
//
// xfaas uses two kinds of groups. A container group holds one session
// container's process, with the container's memory, CPU and pids limits.
// A worker group is a child of a container group that holds one worker's
// OS thread, with that worker's CPU quota; it uses only CPU controllers
// because v1 charges memory per process and v2's memory controller is not
// threaded. On v2 worker groups are "threaded" cgroups, which makes the
// container group a threaded-subtree root. See RATIONALE.md, "Workers and
// cgroups".
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Mode is the cgroup version in use.
type Mode int

const (
	// V1 is the legacy hierarchy: one mount per controller (or set of
	// co-mounted controllers), as on hybrid systems.
	V1 Mode = 1
	// V2 is the unified hierarchy.
	V2 Mode = 2
)

func (m Mode) String() string { return fmt.Sprintf("cgroup v%d", int(m)) }

// Errors callers branch on.
var (
	// ErrUnavailable: no usable cgroup hierarchy (no mount, no controller,
	// or not writable). Callers run without limits and say why.
	ErrUnavailable = errors.New("cgroups unavailable")
	// ErrBusy: a group still holds tasks and cannot be removed.
	ErrBusy = errors.New("cgroup still has tasks")
)

// Options locate the hierarchy; the zero value means this host.
type Options struct {
	// MountInfo is the mountinfo file to read. The default is
	// /proc/self/mountinfo. Tests point it at a fake.
	MountInfo string
	// ProcCgroup is the file listing the process's cgroups. The default is
	// /proc/self/cgroup.
	ProcCgroup string
}

// Controllers used by xfaas, by kind of group.
var (
	containerControllers = []string{"cpu", "cpuacct", "memory", "pids"}
	workerControllers    = []string{"cpu", "cpuacct"}
)

// Hierarchy is the host's cgroup file system.
type Hierarchy struct {
	mode Mode
	// v1: controller → mount (cpu, cpuacct, memory, pids); v2: "" → mount.
	mounts map[string]mount
	opts   Options
}

// mount is where a hierarchy is mounted: path is the mount point and root
// the hierarchy path mounted there (not "/" inside a cgroup namespace).
type mount struct{ path, root string }

// Open finds the cgroup hierarchy from mountinfo. Hybrid hosts (v1
// controllers and an empty v2 mount) are V1.
func Open(opts Options) (*Hierarchy, error) {
	if opts.MountInfo == "" {
		opts.MountInfo = "/proc/self/mountinfo"
	}
	if opts.ProcCgroup == "" {
		opts.ProcCgroup = "/proc/self/cgroup"
	}
	f, err := os.Open(opts.MountInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer f.Close()
	v1, v2, err := parseMountInfo(f)
	if err != nil {
		return nil, err
	}
	h := &Hierarchy{opts: opts}
	switch {
	case v1["cpu"].path != "" && v1["memory"].path != "":
		h.mode, h.mounts = V1, v1
	case v2.path != "":
		h.mode, h.mounts = V2, map[string]mount{"": v2}
	default:
		return nil, fmt.Errorf("%w: no cgroup v2 mount and no v1 cpu and memory controllers in %s", ErrUnavailable, opts.MountInfo)
	}
	return h, nil
}

// parseMountInfo returns the v1 controller mounts and the v2 mount.
func parseMountInfo(f *os.File) (v1 map[string]mount, v2 mount, err error) {
	v1 = map[string]mount{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fstype, m, opts, ok := parseMountLine(sc.Text())
		if !ok {
			continue
		}
		switch fstype {
		case "cgroup2":
			if v2.path == "" || m.path == "/sys/fs/cgroup" {
				v2 = m
			}
		case "cgroup":
			for _, o := range strings.Split(opts, ",") {
				if o == "cpu" || o == "cpuacct" || o == "memory" || o == "pids" {
					v1[o] = m
				}
			}
		}
	}
	return v1, v2, sc.Err()
}

// parseMountLine parses one mountinfo line:
//
//	36 35 98:0 /root /mnt/point rw,noatime master:1 - cgroup cgroup rw,cpu
func parseMountLine(line string) (fstype string, m mount, superOpts string, ok bool) {
	pre, post, found := strings.Cut(line, " - ")
	if !found {
		return "", mount{}, "", false
	}
	fields, tail := strings.Fields(pre), strings.Fields(post)
	if len(fields) < 5 || len(tail) < 3 {
		return "", mount{}, "", false
	}
	return tail[0], mount{path: unescape(fields[4]), root: unescape(fields[3])}, tail[2], true
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// Mode is the hierarchy's version.
func (h *Hierarchy) Mode() Mode { return h.mode }

// Writable reports why groups cannot be created here, or nil: it creates and
// removes a probe group under every controller xfaas needs.
func (h *Hierarchy) Writable() error {
	probe := h.Group(fmt.Sprintf("xfaas-probe-%d", os.Getpid()))
	if err := probe.Create(nil); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := probe.Remove(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Self returns the group of the calling process (its cpu controller's group
// on v1).
func (h *Hierarchy) Self() (*Group, error) {
	data, err := os.ReadFile(h.opts.ProcCgroup)
	if err != nil {
		return nil, err
	}
	rel, err := parseProcCgroup(string(data), h.mode)
	if err != nil {
		return nil, err
	}
	return h.Group(rel), nil
}

// parseProcCgroup returns the process's group path from /proc/<pid>/cgroup:
// the "0::" line on v2, the cpu controller's line on v1.
func parseProcCgroup(data string, mode Mode) (string, error) {
	for _, line := range strings.Split(data, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if mode == V2 && parts[0] == "0" && parts[1] == "" {
			return parts[2], nil
		}
		if mode == V1 {
			for _, c := range strings.Split(parts[1], ",") {
				if c == "cpu" {
					return parts[2], nil
				}
			}
		}
	}
	return "", fmt.Errorf("%w: no %v entry in the process's cgroup file", ErrUnavailable, mode)
}

// Children lists the names of the groups directly below rel.
func (h *Hierarchy) Children(rel string) ([]string, error) {
	c := ""
	if h.mode == V1 {
		c = "cpu"
	}
	entries, err := os.ReadDir(h.dir(c, rel))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// dir is the directory of group rel in the hierarchy of controller c ("" on
// v2). rel is a path from the hierarchy's root.
func (h *Hierarchy) dir(c, rel string) string {
	m := h.mounts[c]
	if h.mode == V2 {
		m = h.mounts[""]
	}
	rel = "/" + strings.TrimPrefix(rel, "/")
	if m.root != "/" && m.root != "" {
		rel = strings.TrimPrefix(rel, m.root)
	}
	return filepath.Join(m.path, rel)
}
