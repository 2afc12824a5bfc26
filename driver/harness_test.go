package driver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/nomad/helper/testlog"
	"github.com/hashicorp/nomad/helper/uuid"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/testutils"

	"github.com/xfaas/xfaas/driver/shim"
	"github.com/xfaas/xfaas/internal/cgroup"
	"github.com/xfaas/xfaas/internal/testbin"
)

// The test binary is also the shim, as the driver binary is in production.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == shim.Command {
		os.Exit(shim.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// env is one test's driver set-up: a cgroup parent of its own, removed at
// the end with everything in it.
type env struct {
	t      *testing.T
	config Config
}

var parentSeq atomic.Int64

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the driver tests need root: they create cgroups")
	}
	h, err := cgroup.Open(cgroup.Options{})
	if err == nil {
		err = h.Writable()
	}
	if err != nil {
		t.Fatalf("the driver tests need writable cgroups: %v", err)
	}
	parent := fmt.Sprintf("xfaas-drivertest-%d-%d", os.Getpid(), parentSeq.Add(1))
	t.Cleanup(func() {
		g := h.Group(parent)
		if err := g.Kill(); err != nil {
			t.Errorf("kill %s: %v", parent, err)
		}
		if err := g.Remove(); err != nil {
			t.Errorf("remove %s: %v", parent, err)
		}
	})
	return &env{t: t, config: Config{ProxyPath: testbin.Xfaas(t), CgroupParent: parent, CacheDir: t.TempDir()}}
}

// driver starts a driver (a new instance each call, as after a restart)
// behind Nomad's go-plugin harness, configured with e.config.
//
// The harness's connection is closed by MkAllocDir's cleanup, not by
// h.Kill: Kill stops the gRPC server twice at once (its own Stop and the
// client's Shutdown RPC), a data race inside go-plugin.
func (e *env) driver() (*Driver, *testutils.DriverHarness) {
	e.t.Helper()
	d, h, _ := e.stoppableDriver()
	return d, h
}

// stoppableDriver is driver with the function that stops the driver's
// background work, as its process exiting would.
func (e *env) stoppableDriver() (*Driver, *testutils.DriverHarness, func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := New(ctx, testlog.HCLogger(e.t), Options{StartTimeout: 20 * time.Second})
	h := testutils.NewDriverHarness(e.t, d)
	e.t.Cleanup(cancel)
	var data []byte
	if err := base.MsgPackEncode(&data, &e.config); err != nil {
		e.t.Fatal(err)
	}
	if err := h.SetConfig(&base.Config{PluginConfig: data}); err != nil {
		e.t.Fatal(err)
	}
	return d, h, cancel
}

// task makes a task with tc as its config and an alloc dir (with logmon
// reading its FIFOs when logs).
func (e *env) task(h *testutils.DriverHarness, tc *TaskConfig, logs bool) *drivers.TaskConfig {
	e.t.Helper()
	task := &drivers.TaskConfig{AllocID: uuid.Generate(), ID: uuid.Generate(), Name: "proxy", Env: map[string]string{}}
	if err := task.EncodeConcreteDriverConfig(tc); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(h.MkAllocDir(task, logs))
	return task
}

// start starts task and registers its forced destruction.
func (e *env) start(h *testutils.DriverHarness, task *drivers.TaskConfig) (*drivers.TaskHandle, *drivers.DriverNetwork) {
	e.t.Helper()
	handle, net, err := h.StartTask(task)
	if err != nil {
		e.t.Fatalf("StartTask: %v", err)
	}
	e.t.Cleanup(func() { destroy(e.t, h, task.ID) })
	return handle, net
}

// noContainerGroup fails the test when task's container group exists.
func (e *env) noContainerGroup(task *drivers.TaskConfig) {
	e.t.Helper()
	dir := cgroupDir("cpu", e.config.CgroupParent+"/"+task.AllocID+".proxy")
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		e.t.Errorf("container group left behind: %v", err)
	}
}

func destroy(t *testing.T, h drivers.DriverPlugin, id string) {
	if err := h.DestroyTask(id, true); err != nil && !strings.Contains(err.Error(), drivers.ErrTaskNotFound.Error()) {
		t.Errorf("DestroyTask: %v", err)
	}
}

// state decodes the handle's driver state.
func state(t *testing.T, handle *drivers.TaskHandle) TaskState {
	t.Helper()
	var st TaskState
	if err := handle.GetDriverState(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// healthz gets addr's /healthz, retrying until deadline.
func healthz(t *testing.T, addr string) {
	t.Helper()
	u, err := url.Parse(addr)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("http://" + u.Host + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/healthz: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result waits for a WaitTask result.
func result(t *testing.T, ch <-chan *drivers.ExitResult, within time.Duration) *drivers.ExitResult {
	t.Helper()
	select {
	case res, ok := <-ch:
		if !ok {
			t.Fatal("WaitTask channel closed without a result")
		}
		return res
	case <-time.After(within):
		t.Fatalf("no WaitTask result within %v", within)
	}
	return nil
}

// eventually polls cond every 20 ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeProxy writes a shell script to use as proxy_path.
func fakeProxy(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xfaas")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
