package driver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
	"golang.org/x/sys/unix"

	"github.com/xfaas/xfaas/internal/cgroup"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/proxy"
)

// A killed shim leaves its container serving, as RATIONALE.md says: the
// driver that started the shim reports no exit while the proxy runs, even
// after the proxy wrote a log line to the dead shim's pipe, and reports
// the exit as unknown once the proxy is gone.
func TestShimKilledWhileDriverIsParent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{MaxWorkers: 2}, true)
	handle, _ := e.start(h, task)
	st := state(t, handle)
	ch, err := h.WaitTask(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(st.ShimPID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the shim to exit", func() bool { return !alive(st.ShimPID, st.ShimStart) })
	// Binding logs "bound" on the proxy's stderr, a pipe nobody reads now.
	bind(t, st.Addr)

	select {
	case res := <-ch:
		t.Fatalf("WaitTask = %+v while the proxy runs (alive: %v)", res, alive(st.ProxyPID, st.ProxyStart))
	case <-time.After(2 * time.Second):
	}
	if !alive(st.ProxyPID, st.ProxyStart) {
		t.Fatal("the proxy died with its shim")
	}
	healthz(t, st.Addr)
	if status, err := h.InspectTask(task.ID); err != nil || status.State != drivers.TaskStateRunning {
		t.Fatalf("InspectTask = %+v, %v; want it running", status, err)
	}

	if err := unix.Kill(st.ProxyPID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res := result(t, ch, 5*time.Second)
	if res.ExitCode != -1 || res.Err == nil || !strings.Contains(res.Err.Error(), "shim was killed") {
		t.Fatalf("WaitTask = %+v; want an unknown exit", res)
	}
}

// bind binds the pool container at addr to a session of c/hello.
func bind(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := proxy.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := proxy.Binding{Function: "hello", Session: "s", Role: proxy.RolePrimary, Config: fnconfig.Default(), Module: testwasm.Bytes(t, "c/hello")}
	if err := c.Bind(ctx, b); err != nil {
		t.Fatalf("bind: %v", err)
	}
}

// The proxy holds no pipe but its stdout and stderr: not the write end of
// the shim's report pipe (the shim's fd 3), nor a pipe that whatever
// started the test leaked to it.
func TestProxyHoldsNoReportPipe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{}, false)
	handle, _ := e.start(h, task)
	st := state(t, handle)
	dir := filepath.Join("/proc", strconv.Itoa(st.ProxyPID), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		link, err := os.Readlink(filepath.Join(dir, ent.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if strings.HasPrefix(link, "pipe:") && ent.Name() != "1" && ent.Name() != "2" {
			t.Errorf("the proxy holds %s as fd %s", link, ent.Name())
		}
	}
}

// A DestroyTask whose clean-up fails still forgets the task (Nomad ignores
// the error and never retries): here a process of the container that the
// kill cannot end in time, because a v1 freezer group holds it frozen,
// keeps the container group from being removed. The same task can start
// again once the process is gone.
func TestDestroyTaskForgetsTaskWhenCleanupFails(t *testing.T) {
	t.Parallel()
	if v2() {
		t.Skip("needs cgroup v1: a frozen v2 process dies of SIGKILL")
	}
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{}, false)
	handle, _ := e.start(h, task)
	st := state(t, handle)
	stuck, thaw := frozenProcess(t)
	hier, err := cgroup.Open(cgroup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := hier.Group(st.Cgroup).AddProcess(stuck.Process.Pid); err != nil {
		t.Fatal(err)
	}

	err = h.DestroyTask(task.ID, true)
	if err == nil || !strings.Contains(err.Error(), cgroup.ErrBusy.Error()) {
		t.Fatalf("DestroyTask = %v; want the failed cgroup removal (%v)", err, cgroup.ErrBusy)
	}
	t.Logf("DestroyTask: %v", err)
	if _, err := h.InspectTask(task.ID); err == nil || !strings.Contains(err.Error(), drivers.ErrTaskNotFound.Error()) {
		t.Fatalf("InspectTask after DestroyTask = %v; want the task forgotten", err)
	}
	if alive(st.ProxyPID, st.ProxyStart) {
		t.Error("the proxy survived DestroyTask")
	}

	thaw()
	e.start(h, task)
}

// frozenProcess starts a process in a new, frozen v1 freezer group, where
// SIGKILL does not end it until thaw, which the test's clean-up also calls.
// thaw lets the process run (and die, if it was killed), ends it, and
// removes the freezer group.
func frozenProcess(t *testing.T) (cmd *exec.Cmd, thaw func()) {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup/freezer", fmt.Sprintf("xfaas-drivertest-frozen-%d-%d", os.Getpid(), parentSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("this test needs the v1 freezer controller: %v", err)
	}
	cmd = exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	thaw = sync.OnceFunc(func() {
		if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0o644); err != nil {
			t.Errorf("thaw %s: %v", dir, err)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	t.Cleanup(thaw)
	for _, w := range [][2]string{{"cgroup.procs", strconv.Itoa(cmd.Process.Pid)}, {"freezer.state", "FROZEN"}} {
		if err := os.WriteFile(filepath.Join(dir, w[0]), []byte(w[1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the freezer group to freeze", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
		return err == nil && strings.TrimSpace(string(b)) == "FROZEN"
	})
	return cmd, thaw
}
