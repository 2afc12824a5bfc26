package driver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/nomad/structs"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"golang.org/x/sys/unix"

	"github.com/xfaas/xfaas/internal/cgroup"
	"github.com/xfaas/xfaas/internal/testbin"
)

func TestFingerprint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name  string
		proxy string
		want  drivers.HealthState
	}{
		{"healthy", e.config.ProxyPath, drivers.HealthStateHealthy},
		{"missing proxy", "/nonexistent/xfaas", drivers.HealthStateUnhealthy},
		{"proxy not executable", filepath.Join(t.TempDir()), drivers.HealthStateUnhealthy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.config.ProxyPath = tc.proxy
			_, h := e.driver()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := h.Fingerprint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var fp *drivers.Fingerprint
			select {
			case fp = <-ch:
			case <-time.After(10 * time.Second):
				t.Fatal("no fingerprint")
			}
			if fp.Health != tc.want {
				t.Fatalf("health = %s (%s); want %s", fp.Health, fp.HealthDescription, tc.want)
			}
			if mode, ok := fp.Attributes["driver.xfaas.cgroup_mode"].GetString(); !ok || (mode != "v1" && mode != "v2") {
				t.Errorf("driver.xfaas.cgroup_mode = %v", fp.Attributes["driver.xfaas.cgroup_mode"])
			}
			if v, ok := fp.Attributes["driver.xfaas.version"].GetString(); !ok || v == "" {
				t.Errorf("driver.xfaas.version = %v", fp.Attributes["driver.xfaas.version"])
			}
			if tc.want == drivers.HealthStateUnhealthy && !strings.Contains(fp.HealthDescription, tc.proxy) {
				t.Errorf("description %q does not name %s", fp.HealthDescription, tc.proxy)
			}
		})
	}
}

func TestSetConfigEmpty(t *testing.T) {
	t.Parallel()
	d := New(context.Background(), nil, Options{})
	for _, cfg := range []*base.Config{nil, {}} {
		if err := d.SetConfig(cfg); err != nil {
			t.Errorf("SetConfig(%v) = %v", cfg, err)
		}
	}
	if c, _ := d.snapshot(); c.CgroupParent != "xfaas" || c.ListenHost != "127.0.0.1" || c.CacheDir == "" {
		t.Errorf("defaults not filled: %+v", c)
	}
}

// A pool container starts in its cgroup, serves, logs through the FIFOs,
// and its stats are real.
func TestStartPoolContainer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{MaxWorkers: 2, WorkerCPUMillicores: 200, WorkerMemoryMB: 64}, true)
	handle, net := e.start(h, task)
	st := state(t, handle)
	if net == nil || net.IP != "127.0.0.1" || net.PortMap[Name] == 0 || !strings.HasSuffix(st.Addr, ":"+itoa(net.PortMap[Name])) {
		t.Fatalf("DriverNetwork = %+v for addr %q", net, st.Addr)
	}
	healthz(t, st.Addr)

	status, err := h.InspectTask(task.ID)
	if err != nil || status.State != drivers.TaskStateRunning || status.DriverAttributes["addr"] != st.Addr {
		t.Fatalf("InspectTask = %+v, %v", status, err)
	}
	// The proxy is in the container group, limited; the shim is not in it.
	cg, err := os.ReadFile("/proc/" + itoa(st.ProxyPID) + "/cgroup")
	if err != nil || !strings.Contains(string(cg), st.Cgroup) {
		t.Errorf("proxy cgroups %q, %v; want %s", cg, err, st.Cgroup)
	}
	if cg, _ := os.ReadFile("/proc/" + itoa(st.ShimPID) + "/cgroup"); strings.Contains(string(cg), st.Cgroup) {
		t.Errorf("the shim is in the container group: %s", cg)
	}
	// 2 x 200 millicores for the workers, 1000 for the proxy itself.
	cpuFile, cpuWant, memFile := "cpu.cfs_quota_us", "140000", "memory.limit_in_bytes"
	if v2() {
		cpuFile, cpuWant, memFile = "cpu.max", "140000 100000", "memory.max"
	}
	if q := readCgroupFile(t, "cpu", st.Cgroup, cpuFile); q != cpuWant {
		t.Errorf("cpu quota = %s; want %s (2 x 200 + 1000 millicores)", q, cpuWant)
	}
	if m := readCgroupFile(t, "memory", st.Cgroup, memFile); m != itoa((2*64+cgroup.ContainerOverheadMB)<<20) {
		t.Errorf("memory limit = %s", m)
	}
	// The ready line went to the stdout log too.
	logFile := filepath.Join(task.TaskDir().LogDir, "proxy.stdout.0")
	eventually(t, 10*time.Second, "the ready line in "+logFile, func() bool {
		data, _ := os.ReadFile(logFile)
		return strings.Contains(string(data), `"event":"ready"`)
	})
}

func TestTaskStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{}, false)
	handle, _ := e.start(h, task)
	addr := state(t, handle).Addr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := h.TaskStats(ctx, task.ID, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	stop := load(addr)
	defer stop()
	deadline := time.After(15 * time.Second)
	for n := 0; ; n++ {
		select {
		case u, ok := <-ch:
			if !ok {
				t.Fatal("stats channel closed")
			}
			cpu, mem := u.ResourceUsage.CpuStats, u.ResourceUsage.MemoryStats
			if n >= 2 && cpu.Percent > 0 && mem.Usage > 0 && mem.RSS > 0 {
				t.Logf("sample %d: cpu %.2f%%, memory usage %d, rss %d", n, cpu.Percent, mem.Usage, mem.RSS)
				return
			}
		case <-deadline:
			t.Fatal("no stats sample with CPU and memory use")
		}
	}
}

// load keeps addr busy with requests until stopped.
func load(addr string) func() {
	u, _ := url.Parse(addr)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if resp, err := http.Get("http://" + u.Host + "/metrics"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func TestSignalTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{}, false)
	e.start(h, task)
	if err := h.SignalTask(task.ID, "SIGBOGUS"); err == nil {
		t.Error("SignalTask(SIGBOGUS) = nil")
	}
	ch, err := h.WaitTask(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SignalTask(task.ID, "SIGINT"); err != nil {
		t.Fatal(err)
	}
	res := result(t, ch, 20*time.Second)
	if !res.Successful() {
		t.Fatalf("after SIGINT: %+v; want a graceful exit", res)
	}
}

func TestStopTaskGraceful(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{ExtraArgs: []string{"--grace", "1s"}}, false)
	e.start(h, task)
	ch, err := h.WaitTask(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := h.StopTask(task.ID, 20*time.Second, ""); err != nil {
		t.Fatal(err)
	}
	res := result(t, ch, 5*time.Second)
	if !res.Successful() || res.Signal != 0 {
		t.Fatalf("after StopTask: %+v; want exit 0", res)
	}
	if took := time.Since(began); took > 15*time.Second {
		t.Errorf("graceful stop took %v", took)
	}
	status, err := h.InspectTask(task.ID)
	if err != nil || status.State != drivers.TaskStateExited {
		t.Errorf("InspectTask = %+v, %v", status, err)
	}
}

// A container that does not stop on the stop signal is killed after the
// timeout. SIGWINCH stands for a signal the proxy ignores.
func TestStopTaskTimeoutKills(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{}, false)
	e.start(h, task)
	ch, err := h.WaitTask(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.StopTask(task.ID, 300*time.Millisecond, "SIGWINCH"); err != nil {
		t.Fatal(err)
	}
	res := result(t, ch, 5*time.Second)
	if res.Signal != int(unix.SIGKILL) || res.ExitCode != 128+int(unix.SIGKILL) {
		t.Fatalf("after StopTask timeout: %+v; want SIGKILL", res)
	}
}

func TestDestroyTaskRemovesCgroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{}, false)
	handle, _ := e.start(h, task)
	st := state(t, handle)
	dir := cgroupDir("cpu", st.Cgroup)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("container group: %v", err)
	}
	if err := h.DestroyTask(task.ID, false); err == nil {
		t.Fatal("DestroyTask(running, force=false) = nil")
	}
	if err := h.DestroyTask(task.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container group left behind: %v", err)
	}
	if alive(st.ProxyPID, st.ProxyStart) {
		t.Error("proxy still running")
	}
	if _, err := h.InspectTask(task.ID); err == nil {
		t.Error("InspectTask after DestroyTask found the task")
	}
}

// WaitTask gives the exit code of a container that exits by itself.
// A fake proxy (a script) stands in here only because the real one never
// chooses its exit code: WaitTask must deliver any code the container ends
// with, and again to a second caller.
func TestWaitTaskExitCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gate := filepath.Join(t.TempDir(), "exit-now")
	e.config.ProxyPath = fakeProxy(t, `echo '{"event":"ready","container":"c-fake","addr":"tcp://127.0.0.1:1"}'
while [ ! -e "`+gate+`" ]; do sleep 0.01; done
exit 3
`)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{}, false)
	e.start(h, task)
	ch, err := h.WaitTask(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := result(t, ch, 10*time.Second); res.ExitCode != 3 || res.Signal != 0 || res.Err != nil {
		t.Fatalf("WaitTask = %+v; want exit code 3", res)
	}
	// A second WaitTask on the exited task gets the same result.
	ch, err = h.WaitTask(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res := result(t, ch, time.Second); res.ExitCode != 3 {
		t.Fatalf("second WaitTask = %+v", res)
	}
}

// A container that exits before it is ready fails StartTask with its exit
// and stderr, and leaves no cgroup.
func TestStartTaskExitBeforeReady(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The real proxy, told to serve a module that is not there, exits
	// before it is ready.
	_, h := e.driver()
	task := e.task(h, &TaskConfig{ExtraArgs: []string{"--module", "/nonexistent/module.wasm"}}, false)
	_, _, err := h.StartTask(task)
	if err == nil || !strings.Contains(err.Error(), "exit code 1") || !strings.Contains(err.Error(), "/nonexistent/module.wasm") {
		t.Fatalf("StartTask = %v; want the exit code and the proxy's stderr", err)
	}
	e.noContainerGroup(task)
}

func TestBadTaskConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	for _, tc := range []struct {
		cfg  TaskConfig
		want string
	}{
		{TaskConfig{Role: "primary"}, `role must be "pool" or "session"`},
		{TaskConfig{MaxWorkers: -1}, "max_workers must be >= 1"},
		{TaskConfig{WorkerMemoryMB: -5}, "worker_memory_mb must be >= 1"},
		{TaskConfig{Role: RoleSession, Function: "counter"}, "needs function, session and module"},
		{TaskConfig{Function: "counter"}, "a pool container is bound later"},
		{TaskConfig{ExtraArgs: []string{"--no-cgroups"}}, "extra_args must not set --no-cgroups"},
	} {
		task := e.task(h, &tc.cfg, false)
		_, _, err := h.StartTask(task)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StartTask(%+v) = %v; want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}

// A task user is refused: the proxy runs as the driver's user (it creates
// and writes its workers' cgroups), and silently ignoring the jobspec's
// user would run a container as root that was meant to run as nobody.
func TestStartTaskRefusesUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h := e.driver()
	task := e.task(h, &TaskConfig{}, false)
	task.User = "nobody"
	if _, _, err := h.StartTask(task); err == nil || !strings.Contains(err.Error(), `user "nobody"`) {
		t.Fatalf("StartTask with user nobody = %v; want it refused", err)
	}
	e.noContainerGroup(task)
}

// A job that reserves less memory than the container's cgroup allows is
// reported: Nomad would overpack the node.
func TestMemoryShortfall(t *testing.T) {
	t.Parallel()
	tc := &TaskConfig{MaxWorkers: 10, WorkerCPUMillicores: 100, WorkerMemoryMB: 128}
	for _, c := range []struct {
		res   *drivers.Resources
		short bool
	}{
		{nil, false},
		{&drivers.Resources{}, false},
		{reserve(256), true},
		{reserve(1375), true},
		{reserve(1376), false}, // 10 x 128 + 96
		{reserve(2048), false},
	} {
		task := &drivers.TaskConfig{Resources: c.res}
		if reserved, limit, short := memoryShortfall(task, tc); short != c.short || (c.res != nil && c.res.NomadResources != nil && limit != 1376) {
			t.Errorf("memoryShortfall(%d MB reserved) = %d, %d, %v; want short %v of 1376", reserved, reserved, limit, short, c.short)
		}
	}
}

// The pool jobspec reserves what the driver gives its containers, for the
// default size and a smaller one.
func TestPoolJobspecReservesContainerMemory(t *testing.T) {
	t.Parallel()
	nomad := testbin.Tool(t, "nomad")
	spec := filepath.Join(testbin.Root(), "jobspecs", "xfaas-pool.nomad.hcl")
	for _, workers := range []int{10, 2} {
		out, err := exec.Command(nomad, "job", "run", "-output", "-var", "max_workers="+itoa(workers), spec).Output()
		if err != nil {
			t.Fatalf("nomad job run -output: %v", err)
		}
		var job struct {
			Job struct {
				TaskGroups []struct {
					Tasks []struct{ Resources struct{ MemoryMB int64 } }
				}
			}
		}
		if err := json.Unmarshal(out, &job); err != nil {
			t.Fatal(err)
		}
		got := job.Job.TaskGroups[0].Tasks[0].Resources.MemoryMB
		tc := &TaskConfig{MaxWorkers: workers}
		tc.fill()
		if want := *containerResources(tc).Memory.Limit >> 20; got != want {
			t.Errorf("max_workers=%d: the jobspec reserves %d MB; the container's limit is %d MiB", workers, got, want)
		}
	}
}

func reserve(mb int64) *drivers.Resources {
	return &drivers.Resources{NomadResources: &structs.AllocatedTaskResources{Memory: structs.AllocatedMemoryResources{MemoryMB: mb}}}
}

// A new driver instance (a restarted plugin) recovers a running container
// from the saved handle, and can stop it and wait for it.
func TestRecoverTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h1 := e.driver()
	task := e.task(h1, &TaskConfig{}, true)
	handle, _ := e.start(h1, task)
	st := state(t, handle)

	_, h2 := e.driver()
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroy(t, h2, task.ID) })
	healthz(t, st.Addr)
	status, err := h2.InspectTask(task.ID)
	if err != nil || status.State != drivers.TaskStateRunning {
		t.Fatalf("InspectTask after recovery = %+v, %v", status, err)
	}
	ch, err := h2.WaitTask(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.StopTask(task.ID, 20*time.Second, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	if res := result(t, ch, 5*time.Second); !res.Successful() {
		t.Fatalf("WaitTask after recovery = %+v; want exit 0", res)
	}
	if err := h2.DestroyTask(task.ID, false); err != nil {
		t.Fatal(err)
	}
}

// A container that exits while no driver runs still reports its exit to
// the driver that recovers it.
func TestRecoverTaskExitedMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, h1, stop1 := e.stoppableDriver()
	task := e.task(h1, &TaskConfig{}, false)
	handle, _, err := h1.StartTask(task)
	if err != nil {
		t.Fatal(err)
	}
	st := state(t, handle)
	stop1() // the plugin goes away; its container does not

	healthz(t, st.Addr)
	if err := unix.Kill(st.ProxyPID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the shim to exit", func() bool { return !alive(st.ShimPID, st.ShimStart) })

	_, h2 := e.driver()
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroy(t, h2, task.ID) })
	ch, err := h2.WaitTask(context.Background(), task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res := result(t, ch, 5*time.Second); res.Signal != int(unix.SIGKILL) || res.ExitCode != 137 {
		t.Fatalf("WaitTask = %+v; want SIGKILL", res)
	}
}

// v2 reports whether this host uses the unified hierarchy.
func v2() bool {
	h, err := cgroup.Open(cgroup.Options{})
	return err == nil && h.Mode() == cgroup.V2
}

// cgroupDir is group's directory for controller (the one directory on v2).
func cgroupDir(controller, group string) string {
	if v2() {
		return filepath.Join("/sys/fs/cgroup", group)
	}
	return filepath.Join("/sys/fs/cgroup", controller, group)
}

func readCgroupFile(t *testing.T, controller, group, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(cgroupDir(controller, group), file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func itoa(n int) string { return strconv.Itoa(n) }
