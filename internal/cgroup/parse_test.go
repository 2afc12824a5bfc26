package cgroup

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// openSample opens the hierarchy described by testdata/<name>.mountinfo
// and testdata/<name>.cgroup, real files from the layouts xfaas meets.
func openSample(t *testing.T, name string) *Hierarchy {
	t.Helper()
	h, err := Open(Options{
		MountInfo:  filepath.Join("testdata", name+".mountinfo"),
		ProcCgroup: filepath.Join("testdata", name+".cgroup"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLayouts(t *testing.T) {
	cases := []struct {
		sample string
		mode   Mode
		// Directories of the container group /xfaas/c1 and of its worker
		// group w0, below /sys/fs/cgroup.
		container, worker []string
		self              string
		selfAt            map[string]string
		// readOnly: Writable fails from the mount table alone.
		readOnly bool
	}{{
		sample:    "this-machine", // hybrid, v1 controllers mounted one each
		mode:      V1,
		container: []string{"cpu/xfaas/c1", "cpuacct/xfaas/c1", "memory/xfaas/c1", "pids/xfaas/c1"},
		worker:    []string{"cpu/xfaas/c1/w0", "cpuacct/xfaas/c1/w0"},
		self:      "/",
		selfAt:    map[string]string{"memory": "/process_api/5f0c2d1e"},
	}, {
		sample:    "v1-comounted", // Ubuntu 18.04: pure v1, cpu,cpuacct together
		mode:      V1,
		container: []string{"cpu,cpuacct/xfaas/c1", "memory/xfaas/c1", "pids/xfaas/c1"},
		worker:    []string{"cpu,cpuacct/xfaas/c1/w0"},
		self:      "/user.slice",
		selfAt:    map[string]string{"pids": "/user.slice/user-1000.slice/session-2.scope"},
	}, {
		sample:    "hybrid", // systemd hybrid: v1 controllers, empty v2 at unified
		mode:      V1,
		container: []string{"cpu,cpuacct/xfaas/c1", "memory/xfaas/c1", "pids/xfaas/c1"},
		worker:    []string{"cpu,cpuacct/xfaas/c1/w0"},
		self:      "/system.slice/nomad.service",
	}, {
		sample:    "v2", // Ubuntu 22.04
		mode:      V2,
		container: []string{"xfaas/c1"},
		worker:    []string{"xfaas/c1/w0"},
		self:      "/system.slice/nomad.service",
	}, {
		sample:    "docker-v1", // a container's view: mount roots /docker/<id>, read-only
		mode:      V1,
		container: []string{"cpu,cpuacct/xfaas/c1", "memory/xfaas/c1", "pids/xfaas/c1"},
		worker:    []string{"cpu,cpuacct/xfaas/c1/w0"},
		self:      "/",
		readOnly:  true,
	}, {
		sample:    "docker-v2", // cgroup namespace, read-only
		mode:      V2,
		container: []string{"xfaas/c1"},
		worker:    []string{"xfaas/c1/w0"},
		self:      "/",
		readOnly:  true,
	}}
	for _, c := range cases {
		t.Run(c.sample, func(t *testing.T) {
			h := openSample(t, c.sample)
			if h.Mode() != c.mode {
				t.Fatalf("mode %v; want %v", h.Mode(), c.mode)
			}
			g := h.Group("xfaas/c1")
			if got, want := g.dirs(), underRoot(c.container); !slices.Equal(got, want) {
				t.Errorf("container dirs %q; want %q", got, want)
			}
			if got, want := g.Thread("w0").dirs(), underRoot(c.worker); !slices.Equal(got, want) {
				t.Errorf("worker dirs %q; want %q", got, want)
			}
			self, err := h.Self()
			if err != nil {
				t.Fatal(err)
			}
			if self.Path() != c.self || !maps.Equal(self.at, c.selfAt) {
				t.Errorf("Self() = %s %v; want %s %v", self.Path(), self.at, c.self, c.selfAt)
			}
			if c.readOnly {
				err := h.Writable()
				if !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), "read-only") {
					t.Errorf("Writable() = %v; want ErrNotWritable for a read-only mount", err)
				}
			}
		})
	}
}

func underRoot(rel []string) []string {
	var out []string
	for _, r := range rel {
		out = append(out, "/sys/fs/cgroup/"+r)
	}
	return out
}

// A worker group derived from Self keeps the per-controller paths of v1.
func TestSelfChildKeepsControllerPaths(t *testing.T) {
	self, err := openSample(t, "this-machine").Self()
	if err != nil {
		t.Fatal(err)
	}
	c := self.Child("c1")
	want := []string{"/sys/fs/cgroup/cpu/c1", "/sys/fs/cgroup/cpuacct/c1", "/sys/fs/cgroup/memory/process_api/5f0c2d1e/c1", "/sys/fs/cgroup/pids/c1"}
	if got := c.dirs(); !slices.Equal(got, want) {
		t.Fatalf("dirs %q; want %q", got, want)
	}
	// ReturnThread's target: the container group in the CPU hierarchies.
	if got := c.Thread("w0").parent().cpuDirs(); !slices.Equal(got, want[:2]) {
		t.Fatalf("parent of a worker: dirs %q; want %q", got, want[:2])
	}
}

func TestOpenWithoutCgroups(t *testing.T) {
	mi := writeTemp(t, "mountinfo", "22 1 0:21 / /proc rw - proc proc rw\n"+
		// A cgroup mount outside Root does not count.
		"30 25 0:28 / /run/other rw,relatime - cgroup2 cgroup2 rw\n")
	_, err := Open(Options{MountInfo: mi})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "/sys/fs/cgroup") {
		t.Fatalf("Open() = %v; want ErrUnavailable naming the root", err)
	}
	if _, err := Open(Options{MountInfo: "/nonexistent/mountinfo"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open() without a mount table = %v; want ErrUnavailable", err)
	}
}

func TestMountRelative(t *testing.T) {
	m := mount{point: "/sys/fs/cgroup", root: "/kubepods/pod1"}
	for p, want := range map[string]string{
		"/kubepods/pod1":       "/",
		"/kubepods/pod1/ctr":   "/ctr",
		"/kubepods/pod1/a/../": "/a/..", // cleaned below
		"/kubepods/pod12/ctr":  "",      // a sibling that merely shares a prefix
		"/":                    "",
	} {
		got, err := m.relative(p)
		switch {
		case want == "" && !errors.Is(err, ErrUnavailable):
			t.Errorf("relative(%q) = %q, %v; want ErrUnavailable", p, got, err)
		case want != "" && (err != nil || got != filepath.Clean(want)):
			t.Errorf("relative(%q) = %q, %v; want %q", p, got, err, filepath.Clean(want))
		}
	}
}

func TestGroupPathsStayInTheHierarchy(t *testing.T) {
	h := openSample(t, "v2")
	for _, g := range []*Group{h.Group("../../etc"), h.Group("/a/../../etc"), h.Group("a").Child("../../etc")} {
		if g.Path() != "/etc" && g.Path() != "/a/etc" {
			t.Errorf("path %q climbed out", g.Path())
		}
		if d := g.dirs()[0]; !strings.HasPrefix(d, "/sys/fs/cgroup/") {
			t.Errorf("dir %q is outside the mount", d)
		}
	}
	if got := h.Group("").Path(); got != "/" {
		t.Errorf("Group(\"\") = %q; want /", got)
	}
}

func TestMountInfoEscapes(t *testing.T) {
	e, ok := parseMountLine(`30 25 0:28 /a\134b /sys/fs/cgroup/with\040space\011tab rw - cgroup cgroup rw,pids`)
	if !ok || e.point != "/sys/fs/cgroup/with space\ttab" || e.root != `/a\b` {
		t.Fatalf("parsed %+v, %v", e, ok)
	}
	if got := unescape(`\777\12x\`); got != `\777\12x\` {
		t.Fatalf("unescape kept %q", got)
	}
}

func TestParseKV(t *testing.T) {
	got := parseKV("usage_usec 10\nweird -1\n\nnr_periods 3 extra\nthrottled_usec 7\n")
	want := map[string]uint64{"usage_usec": 10, "throttled_usec": 7}
	if !maps.Equal(got, want) {
		t.Fatalf("parseKV = %v; want %v", got, want)
	}
}

// seeds returns the testdata samples with the extension.
func seeds(f *testing.F, ext string) []string {
	names, err := filepath.Glob(filepath.Join("testdata", "*."+ext))
	if err != nil || len(names) == 0 {
		f.Fatalf("no %s samples: %v", ext, err)
	}
	var out []string
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, string(data))
	}
	return out
}

func FuzzParseMounts(f *testing.F) {
	for _, s := range append(seeds(f, "mountinfo"), "", " - ", "1 2 3 4 5 6 - cgroup2 x rw", "1 2 3 / /sys/fs/cgroup/cpu rw - cgroup c rw,cpu\n\n") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		v1, v2 := parseMounts(data, "/sys/fs/cgroup")
		for c, m := range v1 {
			if !knownController[c] || !within(m.point, "/sys/fs/cgroup") {
				t.Fatalf("v1 %s at %q", c, m.point)
			}
		}
		if v2 != nil && !within(v2.point, "/sys/fs/cgroup") {
			t.Fatalf("v2 at %q", v2.point)
		}
	})
}

// The kernel's mangling (fs/proc_namespace.c): octal escapes for these.
var mangle = strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`)

func FuzzMountLineRoundTrip(f *testing.F) {
	f.Add("/", "/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct", true)
	f.Add("/docker/3f2a", "/sys/fs/cgroup/with space", "cgroup2", "rw,nsdelegate", false)
	f.Add(`/a\040b`, "/p\r\v", "fuse.x y", `rw,opt=a\b`, true)
	f.Fuzz(func(t *testing.T, root, point, fstype, super string, ro bool) {
		if root == "" || point == "" || fstype == "" {
			return // the kernel prints none of these empty
		}
		opts := "rw,relatime"
		if ro {
			opts = "ro,nosuid"
		}
		line := fmt.Sprintf("36 35 98:0 %s %s %s shared:9 master:1 - %s src %s",
			mangle.Replace(root), mangle.Replace(point), opts, mangle.Replace(fstype), mangle.Replace(super))
		e, ok := parseMountLine(line)
		if !ok {
			t.Fatalf("rejected %q", line)
		}
		if e.root != root || e.point != point || e.fstype != fstype || e.readOnly != ro || strings.Join(e.superOpts, ",") != super {
			t.Fatalf("parsed %q as %+v", line, e)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	for _, s := range append(seeds(f, "cgroup"), "0::/a\n", "4:cpu,cpuacct:/x\n", "::", "1:2:3:4", "0::relative\n") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		for c, p := range parseProcCgroup(data) {
			if !strings.HasPrefix(p, "/") || !strings.Contains(data, p) || strings.ContainsAny(c, ":,\n") {
				t.Fatalf("controller %q path %q from %q", c, p, data)
			}
		}
	})
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
