// Package nomadtest runs a real Nomad agent (server and client in one
// process, state on disk) with the xfaas task driver for tests, on random
// free ports, and stops it, its jobs and their cgroups when the test ends.
//
// The nomad binary is the one `make tools` builds into .cache/bin/nomad at
// the repository root, else the first nomad on PATH. A missing binary fails
// the test: integration tests here do not skip silently.
package nomadtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/xfaas/xfaas/internal/cgroup"
	"github.com/xfaas/xfaas/internal/containerid"
	"github.com/xfaas/xfaas/internal/testbin"
)

// startTimeout bounds how long Start waits for a leader and a ready node
// with a healthy xfaas driver.
const startTimeout = 60 * time.Second

// Options configure an agent.
type Options struct {
	// ConsulAddr is the Consul agent's HTTP address. Required.
	ConsulAddr string
	// ProxyPath is the xfaas binary the driver runs as `xfaas proxy`.
	// Required.
	ProxyPath string
	// NATS is the URL proxies get as --nats; "" for none.
	NATS string
	// ConfigFiles are more agent config files, given before the generated
	// one (which sets ports, directories and the plugin block), such as
	// jobspecs/agent.hcl.
	ConfigFiles []string
	// Dir holds the agent's data, plugin and config directories. The
	// default is a new temporary directory, removed at the end.
	Dir string
}

// Agent is a running nomad agent.
type Agent struct {
	// Addr is the HTTP API's URL.
	Addr string
	// Client talks to Addr.
	Client *nomadapi.Client
	// Dir holds the agent's data, plugins and config.
	Dir string
	// CgroupParent is the xfaas driver's cgroup parent, unique to the agent.
	CgroupParent string

	bin  string
	args []string
	t    testing.TB

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *testbin.Log
	done chan struct{}
	// allocs are the allocation ids the agent listed before it stopped,
	// whose task cgroups cleanup removes.
	allocs map[string]bool
	// pgids are the process groups of every start of the agent, where the
	// plugins it started (logmon, executors) stay after it stops.
	pgids []int
}

// Start launches an agent and returns it once it leads and its node is ready
// with a healthy xfaas driver. At the end of t, every job is stopped and
// purged, the agent stopped, and what is left in the driver's cgroups
// killed and removed; the agent's log is printed if t failed.
func Start(t testing.TB, opts Options) *Agent {
	t.Helper()
	if opts.ConsulAddr == "" || opts.ProxyPath == "" {
		t.Fatal("nomadtest: ConsulAddr and ProxyPath are required")
	}
	if os.Geteuid() != 0 {
		t.Fatal("nomadtest: must run as root: the xfaas driver places containers in cgroups")
	}
	bin := Binary(t)
	plugin := testbin.Driver(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	a := &Agent{Dir: opts.Dir, bin: bin, t: t, out: &testbin.Log{}, allocs: map[string]bool{},
		CgroupParent: fmt.Sprintf("xfaas-nomadtest-%d-%d", os.Getpid(), seq.Add(1))}
	pluginDir := filepath.Join(opts.Dir, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(plugin, filepath.Join(pluginDir, "xfaas")); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	ports, err := testbin.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(opts.Dir, "local.hcl")
	if err := os.WriteFile(local, []byte(a.localConfig(opts, pluginDir, ports)), 0o644); err != nil {
		t.Fatal(err)
	}
	a.Addr = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	a.args = []string{"agent"}
	for _, f := range append(opts.ConfigFiles, local) {
		a.args = append(a.args, "-config", f)
	}
	cfg := nomadapi.DefaultConfig()
	cfg.Address = a.Addr
	if a.Client, err = nomadapi.NewClient(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.cleanup)
	if err := a.start(); err != nil {
		t.Fatalf("nomadtest: %v\nagent log:\n%s", err, a.out)
	}
	return a
}

// seq tells apart the agents of one test binary.
var seq atomic.Int64

func (a *Agent) localConfig(opts Options, pluginDir string, ports []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir = %q\nplugin_dir = %q\n", filepath.Join(opts.Dir, "data"), pluginDir)
	fmt.Fprintf(&b, "bind_addr = \"127.0.0.1\"\nports {\n  http = %d\n  rpc = %d\n  serf = %d\n}\n", ports[0], ports[1], ports[2])
	fmt.Fprintf(&b, "advertise {\n  http = \"127.0.0.1\"\n  rpc = \"127.0.0.1\"\n  serf = \"127.0.0.1\"\n}\n")
	fmt.Fprintf(&b, "server {\n  enabled = true\n  bootstrap_expect = 1\n}\n")
	// No client.cgroup_parent: Nomad 1.10 does not apply it (see
	// removeTaskCgroups).
	fmt.Fprintf(&b, "client {\n  enabled = true\n  network_interface = \"lo\"\n  options {\n    \"fingerprint.denylist\" = \"env_aws,env_gce,env_azure,env_digitalocean\"\n  }\n}\n")
	fmt.Fprintf(&b, "consul {\n  address = %q\n}\n", opts.ConsulAddr)
	fmt.Fprintf(&b, "plugin \"xfaas\" {\n  config {\n    proxy_path = %q\n    cgroup_parent = %q\n    cache_dir = %q\n",
		opts.ProxyPath, a.CgroupParent, filepath.Join(opts.Dir, "cache"))
	if opts.NATS != "" {
		fmt.Fprintf(&b, "    nats = %q\n", opts.NATS)
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

func (a *Agent) start() error {
	a.mu.Lock()
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = a.out, a.out
	// Its own process group: a test's interrupt does not stop it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		a.mu.Unlock()
		return fmt.Errorf("start %s: %w", a.bin, err)
	}
	done := make(chan struct{})
	a.cmd, a.done = cmd, done
	a.pgids = append(a.pgids, cmd.Process.Pid)
	a.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return a.waitReady(done)
}

// waitReady polls until the agent leads and its node runs the xfaas driver.
func (a *Agent) waitReady(done chan struct{}) error {
	return testbin.WaitReady("nomad agent", done, startTimeout, a.ready)
}

func (a *Agent) ready() error {
	leader, err := a.Client.Status().Leader()
	if err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	nodes, _, err := a.Client.Nodes().List(nil)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if d := n.Drivers["xfaas"]; n.Status == "ready" && d != nil && d.Healthy {
			return nil
		}
	}
	return errors.New("no ready node with a healthy xfaas driver yet")
}

// NodeName is the name of the agent's client node.
func (a *Agent) NodeName(t testing.TB) string {
	t.Helper()
	nodes, _, err := a.Client.Nodes().List(nil)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nomadtest: nodes = %v, %v", nodes, err)
	}
	return nodes[0].Name
}

// Stop interrupts the agent and waits for it to exit. Its tasks keep
// running: the agent is not in dev mode.
func (a *Agent) Stop(t testing.TB) {
	t.Helper()
	if err := a.stop(30 * time.Second); err != nil {
		t.Fatalf("nomadtest: %v", err)
	}
}

// Restart starts a stopped agent again on the same data directory and
// waits until it is ready.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	if err := a.start(); err != nil {
		t.Fatalf("nomadtest: restart: %v\nagent log:\n%s", err, a.out)
	}
}

func (a *Agent) stop(grace time.Duration) error {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return nil
	}
	a.noteAllocs()
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("nomad agent did not stop within %s; killed", grace)
}

// noteAllocs records the ids of the allocations the agent lists.
func (a *Agent) noteAllocs() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	allocs, _, err := a.Client.Allocations().List((&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, al := range allocs {
		a.allocs[al.ID] = true
	}
}

// cleanup stops every job and waits for their allocations to end, so that
// the driver stops the containers and removes their cgroups; then it stops
// the agent and removes what is left.
func (a *Agent) cleanup() {
	a.mu.Lock()
	running := a.cmd != nil && !isClosed(a.done)
	a.mu.Unlock()
	if running {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		a.stopJobs(ctx)
		cancel()
	}
	_ = a.stop(15 * time.Second)
	if a.t.Failed() {
		a.t.Logf("nomad agent log:\n%s", a.out)
	}
	a.killPlugins()
	a.removeCgroups()
	a.unmount()
}

// unmount detaches what Nomad mounted below the agent's directory (each
// task's secrets directory is a tmpfs), so that it can be removed.
func (a *Agent) unmount() {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	dir, err := filepath.EvalSymlinks(a.Dir)
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	// Deepest first.
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

func (a *Agent) stopJobs(ctx context.Context) {
	q := (&nomadapi.WriteOptions{}).WithContext(ctx)
	jobs, _, err := a.Client.Jobs().List((&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return
	}
	for _, j := range jobs {
		_, _, _ = a.Client.Jobs().Deregister(j.ID, false, q)
	}
	for ctx.Err() == nil {
		allocs, _, err := a.Client.Allocations().List((&nomadapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return
		}
		live := 0
		for _, al := range allocs {
			if al.ClientStatus == "running" || al.ClientStatus == "pending" {
				live++
			}
		}
		if live == 0 {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// killPlugins kills the nomad processes left in the agent's process groups:
// the plugins of tasks that ran when the agent stopped (logmon, executors),
// which wait for an agent to reattach them.
func (a *Agent) killPlugins() {
	a.mu.Lock()
	pgids := slices.Clone(a.pgids)
	a.mu.Unlock()
	bin, err := filepath.EvalSymlinks(a.bin)
	if err != nil {
		return
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, stat := range stats {
		raw, err := os.ReadFile(stat)
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		_, rest, ok := strings.Cut(string(raw), ") ")
		f := strings.Fields(rest)
		if err != nil || !ok || len(f) < 3 {
			continue
		}
		pgid, _ := strconv.Atoi(f[2])
		exe, _ := os.Readlink(filepath.Join(filepath.Dir(stat), "exe"))
		if !slices.Contains(pgids, pgid) || exe != bin {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(stat))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeCgroups kills whatever is left in the driver's cgroups and in
// Nomad's own cgroups of this agent's tasks, and removes them.
func (a *Agent) removeCgroups() {
	if h, err := cgroup.Open(cgroup.Options{}); err == nil {
		g := h.Group(a.CgroupParent)
		_ = g.Kill()
		_ = g.Remove()
	}
	a.removeTaskCgroups()
}

// removeTaskCgroups removes Nomad's own cgroups of the agent's allocations.
// Nomad 1.10 makes them under a fixed parent, whatever client.cgroup_parent
// says (cgroupslib.NomadCgroupParent is only ever its default), and removes
// them in the background once a task has stopped: never, for a task still
// running when its agent stopped, and not always before an agent stops right
// after its jobs. The allocations are those the agent listed before it
// stopped and those its data directory holds, so no other agent's groups
// are touched. A process left in one (a raw_exec task of this agent) is
// killed.
func (a *Agent) removeTaskCgroups() {
	a.mu.Lock()
	ids := maps.Clone(a.allocs)
	a.mu.Unlock()
	dirs, _ := os.ReadDir(filepath.Join(a.Dir, "data", "alloc"))
	for _, d := range dirs {
		ids[d.Name()] = true
	}
	for id := range ids {
		for _, dir := range TaskCgroups(id) {
			killProcs(dir)
			removeTree(dir)
		}
	}
}

// TaskCgroups returns the directories of Nomad's own cgroups of the tasks
// of allocation alloc that exist: /nomad/<alloc>.<task> in each cgroup v1
// controller (cpuset's under a partition), or
// nomad.slice/<partition>/<alloc>.<task>.scope on cgroup v2.
func TaskCgroups(alloc string) []string {
	if len(alloc) != 36 || strings.ContainsAny(alloc, "/*?[") {
		return nil // not an allocation id
	}
	var out []string
	for _, pattern := range []string{"*/nomad/" + alloc + ".*", "*/nomad/*/" + alloc + ".*", "nomad.slice/*/" + alloc + ".*.scope"} {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", pattern))
		out = append(out, dirs...)
	}
	return out
}

// killProcs kills the processes of the cgroup directory dir and waits a
// little for them to leave it.
func killProcs(dir string) {
	for range 50 {
		raw, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		pids := strings.Fields(string(raw))
		if err != nil || len(pids) == 0 {
			return
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeTree removes the empty cgroup directory dir and those below it,
// deepest first.
func removeTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = syscall.Rmdir(dir)
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Log returns the agent's output so far.
func (a *Agent) Log() string { return a.out.String() }

// Binary returns the path of the nomad binary or fails t.
func Binary(t testing.TB) string { return testbin.Tool(t, "nomad") }

// RunJob submits the jobspec file as is, with HCL variables, through the
// nomad CLI (`nomad job run -detach -var k=v FILE`), as an operator would.
func (a *Agent) RunJob(t testing.TB, file string, vars map[string]string) {
	t.Helper()
	args := []string{"job", "run", "-detach"}
	for k, v := range vars {
		args = append(args, "-var", k+"="+v)
	}
	cmd := exec.Command(a.bin, append(args, file)...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+a.Addr)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nomadtest: nomad %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
}

// Command returns a nomad CLI command against the agent.
func (a *Agent) Command(args ...string) *exec.Cmd {
	cmd := exec.Command(a.bin, args...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+a.Addr)
	return cmd
}

// ProxyPID returns the pid of the `xfaas proxy` process of container, or 0.
func ProxyPID(container string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 2 || args[1] != "proxy" {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--id" && args[i+1] == container {
				pid, _ := strconv.Atoi(filepath.Base(d))
				return pid
			}
		}
	}
	return 0
}

// AllocOf returns the allocation whose task runs container, or nil. The
// servers know an allocation's task names only once its client reported,
// so the pool's task name, "proxy", is tried first.
func (a *Agent) AllocOf(t testing.TB, container string) *nomadapi.AllocationListStub {
	t.Helper()
	allocs, _, err := a.Client.Allocations().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, al := range allocs {
		if containerid.Nomad(al.ID, "proxy") == container {
			return al
		}
		for task := range al.TaskStates {
			if containerid.Nomad(al.ID, task) == container {
				return al
			}
		}
	}
	return nil
}
