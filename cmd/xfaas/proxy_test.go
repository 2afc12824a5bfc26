package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy"
)

func getJSON(t *testing.T, addr, path string, v any) {
	t.Helper()
	_, hostport := wire.SplitAddr(addr)
	resp, err := http.Get("http://" + hostport + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// A standalone proxy serves a module, enforces CPU limits in its own
// cgroup, and leaves nothing behind after SIGTERM.
func TestProxyStandalone(t *testing.T) {
	p := start(t, "proxy", "--module", testwasm.Path(t, "c/counter"), "--listen", "tcp://127.0.0.1:0")
	var ready readyLine
	p.line(t, &ready)
	if ready.Event != "ready" || !strings.HasPrefix(ready.Addr, "tcp://127.0.0.1:") {
		t.Fatalf("ready line %+v", ready)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := proxy.Dial(ctx, ready.Addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1", "2", "3"} {
		if out, err := c.Invoke(ctx, []byte("incr")); err != nil || string(out) != want {
			t.Fatalf("invoke: %q %v; want %s", out, err, want)
		}
	}
	c.Close()
	var st proxy.Status
	getJSON(t, ready.Addr, "/v1/status", &st)
	if st.Role != proxy.RolePrimary || st.State == nil || st.State.Keys != 1 || !st.Limits.Enforced || st.Limits.Cgroup == "" {
		t.Fatalf("status %+v", st)
	}
	cgroupDir := "/sys/fs/cgroup/cpu" + st.Limits.Cgroup
	if _, err := os.Stat(cgroupDir); err != nil {
		t.Fatalf("container cgroup: %v", err)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, p.stderr)
	}
	if _, err := os.Stat(cgroupDir); !os.IsNotExist(err) {
		t.Fatalf("cgroup %s left behind (%v)", cgroupDir, err)
	}
}

func TestProxyWithoutCgroupsSaysSo(t *testing.T) {
	p := start(t, "proxy", "--module", testwasm.Path(t, "c/hello"), "--no-cgroups")
	var ready readyLine
	p.line(t, &ready)
	var st proxy.Status
	getJSON(t, ready.Addr, "/v1/status", &st)
	if st.Limits.Enforced || st.Limits.Reason == "" {
		t.Fatalf("limits %+v; want not enforced, with a reason", st.Limits)
	}
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.stderr.String(), "without CPU limits") {
		t.Fatalf("no warning in the log:\n%s", p.stderr)
	}
}

func TestProxyRefusesAnInvalidModule(t *testing.T) {
	p := start(t, "proxy", "--module", testwasm.Path(t, "test/noexport"))
	err := p.cmd.Wait()
	if err == nil || !strings.Contains(p.stderr.String(), `no exported function "handle"`) {
		t.Fatalf("exit %v, stderr:\n%s", err, p.stderr)
	}
}

// A proxy whose supervisor died (its stdout and stderr are pipes nobody
// reads any more) keeps serving: a log line after that is dropped, and
// does not kill it with SIGPIPE.
func TestProxySurvivesItsOutputReader(t *testing.T) {
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(xfaasBin, "proxy", "--no-cgroups", "--grace", "1s", "--listen", "tcp://127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	var ready readyLine
	line, err := bufio.NewReader(outR).ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &ready) != nil {
		t.Fatalf("ready line %q, %v", line, err)
	}
	outR.Close()
	errR.Close()

	// Binding logs "bound" on stderr.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := proxy.Dial(ctx, ready.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := proxy.Binding{Function: "hello", Session: "s", Role: proxy.RolePrimary, Config: fnconfig.Default(), Module: testwasm.Bytes(t, "c/hello")}
	if err := c.Bind(ctx, b); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if _, err := c.Invoke(ctx, nil); err != nil {
		t.Fatalf("invoke after a log line to a closed pipe: %v", err)
	}
	var st proxy.Status
	getJSON(t, ready.Addr, "/v1/status", &st)
	select {
	case <-exited:
		t.Fatalf("the proxy exited: %v", waitErr)
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("exit after SIGTERM: %v", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30s after SIGTERM")
	}
}
