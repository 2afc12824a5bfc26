// Package testbin gives tests the programs they run as separate processes:
// the xfaas binary and the Nomad driver plugin, built from this checkout
// once per test binary, and the pinned nomad and consul binaries that
// `make tools` builds into .cache/bin. It also holds the small helpers the
// tests of real agents share (free ports, a log buffer).
package testbin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Root is the repository root, two folders above this file.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var xfaas = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "xfaas-testbin-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "xfaas")
	return path, build("./cmd/xfaas", path)
})

// Xfaas returns the path of a freshly built cmd/xfaas. The build goes
// through the Go build cache, so it is quick after the first time.
func Xfaas(t testing.TB) string {
	t.Helper()
	path, err := xfaas()
	if err != nil {
		t.Fatalf("testbin: build xfaas: %v", err)
	}
	return path
}

// DriverVersion is the version the test driver is built with: Nomad
// refuses a plugin whose version is not semantic.
const DriverVersion = "0.0.0-test"

var driver = sync.OnceValues(func() (string, error) {
	// One place per checkout, the same for every test binary: a Nomad
	// plugin_dir links to it, and a rename means an agent of another test
	// binary never sees a half-written plugin.
	sum := sha256.Sum256([]byte(Root()))
	dir := filepath.Join(os.TempDir(), "xfaas-testdriver-"+hex.EncodeToString(sum[:4]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, fmt.Sprintf("xfaas.%d.tmp", os.Getpid()))
	if err := build("./cmd/xfaas-driver", tmp, "-ldflags", "-X main.version="+DriverVersion); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "xfaas")
	return path, os.Rename(tmp, path)
})

// Driver returns the path of a freshly built cmd/xfaas-driver, named xfaas
// as a plugin_dir wants it.
func Driver(t testing.TB) string {
	t.Helper()
	path, err := driver()
	if err != nil {
		t.Fatalf("testbin: build the driver: %v", err)
	}
	return path
}

func build(pkg, out string, flags ...string) error {
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", out, pkg)...)
	cmd.Dir = Root()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// Tool returns the path of a pinned tool (nomad, consul): .cache/bin/<name>
// at the repository root, else <name> on PATH. Without either the test
// fails and says how to build it.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Root(), ".cache", "bin", name)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return p
	}
	if lp, err := exec.LookPath(name); err == nil {
		return lp
	}
	t.Fatalf("testbin: no %s binary (tried %s and %s on PATH): run `make tools` at the repository root to build it", name, p, name)
	return ""
}

// FreePorts returns n distinct ports of 127.0.0.1 that are free for both
// TCP and UDP (agents' DNS and gossip use both). They are free when it
// returns; an agent that loses one to a race fails to start, and callers
// retry with new ones.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		closers = append(closers, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken on UDP: keep the TCP one held and try another
		}
		closers = append(closers, u.Close)
		ports = append(ports, port)
	}
	return ports, nil
}

// FreePort is FreePorts(1) that fails t.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return p[0]
}

// Log collects a process's output from its copy goroutines.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Log) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Log) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Poll calls ok every 20 ms until it is true, or fails t after timeout
// with msg().
func Poll(t testing.TB, timeout time.Duration, ok func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitReady calls ready every 50 ms until it returns nil, the process
// ends (exited is closed) or timeout passes; the error names what (the
// agent's name) and ready's last error.
func WaitReady(what string, exited <-chan struct{}, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited during start (last check: %v)", what, err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", what, timeout, err)
		}
	}
}
