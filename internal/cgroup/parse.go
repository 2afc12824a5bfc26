package cgroup

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// mount is one mounted cgroup hierarchy.
type mount struct {
	// point is where it is mounted, e.g. /sys/fs/cgroup/cpu,cpuacct.
	point string
	// root is the hierarchy path mounted there: "/" except in a
	// container's view without a cgroup namespace (e.g. /docker/<id>).
	root string
	// readOnly is set for a read-only mount, as in most containers.
	readOnly bool
}

// mountEntry is the part of one mountinfo line that matters here.
type mountEntry struct {
	mount
	fstype string
	// superOpts are the super block options; a v1 mount lists its
	// controllers there ("rw,cpu,cpuacct").
	superOpts []string
}

// parseMountLine parses one line of /proc/<pid>/mountinfo (proc(5)):
//
//	36 35 98:0 /root /mnt/point rw,noatime master:1 - cgroup cgroup rw,cpu
//
// Fields are separated by one space; the kernel escapes white space inside
// them, and only " \t\n\\", so other white space is data. Optional fields
// ("master:1") may be absent or many; the first "-" after the six fixed
// fields ends them (a root or mount point may itself be "-").
func parseMountLine(line string) (mountEntry, bool) {
	fields := strings.Split(line, " ")
	if len(fields) < 10 || fields[3] == "" || fields[4] == "" {
		return mountEntry{}, false
	}
	sep := slices.Index(fields[6:], "-")
	if sep < 0 || len(fields) != 6+sep+4 {
		return mountEntry{}, false
	}
	tail := fields[6+sep+1:]
	e := mountEntry{
		mount: mount{
			point:    unescape(fields[4]),
			root:     unescape(fields[3]),
			readOnly: hasOption(fields[5], "ro"),
		},
		fstype:    unescape(tail[0]),
		superOpts: strings.Split(unescape(tail[2]), ","),
	}
	return e, true
}

// parseMounts returns the cgroup mounts at or below root: v1 hierarchies by
// controller, and the v2 hierarchy if any (preferring one mounted at root).
func parseMounts(mountinfo, root string) (v1 map[string]mount, v2 *mount) {
	v1 = map[string]mount{}
	for line := range strings.Lines(mountinfo) {
		e, ok := parseMountLine(strings.TrimSuffix(line, "\n"))
		if !ok || !within(e.point, root) {
			continue
		}
		switch e.fstype {
		case "cgroup2":
			if v2 == nil || e.point == root {
				v2 = &e.mount
			}
		case "cgroup":
			for _, c := range e.superOpts {
				if _, seen := v1[c]; !seen && knownController[c] {
					v1[c] = e.mount
				}
			}
		}
	}
	return v1, v2
}

// knownController lists the v1 controllers this package uses.
var knownController = map[string]bool{"cpu": true, "cpuacct": true, "memory": true, "pids": true}

// parseProcCgroup parses /proc/<pid>/cgroup (cgroups(7)) into the group
// path of each v1 controller, and of v2 under the key "".
//
//	4:cpu,cpuacct:/user.slice
//	0::/user.slice/user-1000.slice/session-2.scope
func parseProcCgroup(data string) map[string]string {
	paths := map[string]string{}
	for line := range strings.Lines(data) {
		id, rest, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
		if !ok {
			continue
		}
		controllers, p, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(p, "/") {
			continue
		}
		if id == "0" && controllers == "" {
			paths[""] = p
			continue
		}
		for _, c := range strings.Split(controllers, ",") {
			if c != "" {
				paths[c] = p
			}
		}
	}
	return paths
}

// relative returns the path below the mount point of the hierarchy path p.
func (m mount) relative(p string) (string, error) {
	root, p := path.Clean(m.root), path.Clean(p)
	switch {
	case root == "/":
		return p, nil
	case p == root:
		return "/", nil
	case strings.HasPrefix(p, root+"/"):
		return p[len(root):], nil
	}
	return "", fmt.Errorf("%w: cgroup %s is outside the hierarchy mounted at %s (root %s)", ErrUnavailable, p, m.point, root)
}

// within reports whether path p is dir or below it.
func within(p, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == ""
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash (\040, \011, \012, \134).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
