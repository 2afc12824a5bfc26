package cgroup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWritableHere(t *testing.T) {
	h, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Writable(); err != nil {
		t.Fatalf("Writable() = %v; this test runs as root on a cgroup host", err)
	}
	left, _ := filepath.Glob("/sys/fs/cgroup/*/xfaas-probe-*")
	more, _ := filepath.Glob("/sys/fs/cgroup/xfaas-probe-*")
	if left = append(left, more...); len(left) > 0 {
		t.Fatalf("probes left behind: %v", left)
	}
}

func TestWritableMissingRoot(t *testing.T) {
	// Nothing is mounted there.
	_, err := Open(Options{Root: "/nonexistent/cgroup"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/cgroup") {
		t.Errorf("Open() = %v; want ErrUnavailable naming the root", err)
	}
	// Mounted there, says the mount table, but not there (v2, then v1).
	gone := filepath.Join(t.TempDir(), "gone")
	for _, mountinfo := range []string{
		"35 22 0:30 / " + gone + " rw - cgroup2 cgroup2 rw\n",
		"31 30 0:28 / " + gone + "/cpu rw - cgroup cgroup rw,cpu,cpuacct\n34 30 0:31 / " + gone + "/memory rw - cgroup cgroup rw,memory\n",
	} {
		h, err := Open(Options{Root: gone, MountInfo: writeTemp(t, "mountinfo", mountinfo)})
		if err != nil {
			t.Fatal(err)
		}
		err = h.Writable()
		if err == nil || !strings.Contains(err.Error(), gone) {
			t.Errorf("%v: Writable() = %v; want an error naming %s", h.Mode(), err, gone)
		}
		t.Logf("%v: %v", h.Mode(), err)
	}
}

func TestWritableReadOnlyMount(t *testing.T) {
	f := newFakeCgroup2(t)
	mi := writeTemp(t, "mountinfo", "35 22 0:30 / "+f.root+" ro,nosuid - cgroup2 cgroup2 rw\n")
	h, err := Open(Options{Root: f.root, MountInfo: mi})
	if err != nil {
		t.Fatal(err)
	}
	err = h.Writable()
	if !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), f.root+" is mounted read-only") {
		t.Fatalf("Writable() = %v; want ErrNotWritable naming the mount", err)
	}
}

// helperEnv makes the test binary a helper that prints what Writable says.
const helperEnv = "XFAAS_CGROUP_TEST_HELPER"

// As an ordinary user the real hierarchy is not writable, and Writable
// says so, naming what it tried.
func TestWritableAsNobody(t *testing.T) {
	if os.Getenv(helperEnv) == "writable" {
		h, err := Open(Options{})
		if err == nil {
			err = h.Writable()
		}
		fmt.Printf("writable: %v\n", err)
		return
	}
	// A copy of this binary that the nobody user can run.
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "cgroup.test")
	copyFile(t, os.Args[0], exe)
	cmd := exec.Command(exe, "-test.run=^TestWritableAsNobody$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), helperEnv+"=writable")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	t.Log(line)
	if !strings.HasPrefix(line, "writable: "+ErrNotWritable.Error()) || !strings.Contains(line, "permission denied") || !strings.Contains(line, "xfaas-probe-") {
		t.Fatalf("as nobody: %q; want ErrNotWritable with the probe's permission error", line)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
