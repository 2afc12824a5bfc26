package placement_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/proxy"
)

// A function the pool's containers cannot hold gets a one-off job sized for
// it, in its task config, its resources and so its container's cgroup, and
// binds; a function they hold is claimed from the pool.
func TestNomadClaimSized(t *testing.T) {
	c := startNomadCluster(t)
	b := c.backend(t)
	c.waitPool(t, b, poolSize)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// 1300 millicores and 608 MiB: more memory than the pool's 352 MiB.
	cfg := fnconfig.Default()
	cfg.MaxWorkers, cfg.WorkerCPUMillicores, cfg.WorkerMemoryMB = 2, 150, 256
	big := placement.SizeOf(cfg)
	if ct, hit, err := b.Claim(ctx, c.node, big); err != nil || hit {
		t.Fatalf("claim of %s: %+v hit=%v %v; want a one-off", big, ct, hit, err)
	} else {
		checkOneOffJob(t, c, ct, big)
		checkBinds(ctx, t, ct, cfg, 1300, 608)
	}

	if ct, hit, err := b.Claim(ctx, c.node, small); err != nil || !hit {
		t.Fatalf("claim of %s: %+v hit=%v %v; want a pool container", small, ct, hit, err)
	}
}

// checkOneOffJob checks that ct's job asks the driver for size, and Nomad
// for the container's memory limit and, for its CPU quota, as much as the
// pool job reserves for a millicore of its containers'.
func checkOneOffJob(t *testing.T, c *nomadCluster, ct placement.Container, size placement.Size) {
	t.Helper()
	a := c.nomad.AllocOf(t, ct.ID)
	if a == nil || !strings.HasPrefix(a.JobID, placement.DefaultJobPrefix) {
		t.Fatalf("allocation of %s: %+v; want a one-off job's", ct.ID, a)
	}
	job, _, err := c.nomad.Client.Jobs().Info(a.JobID, nil)
	if err != nil {
		t.Fatal(err)
	}
	task := job.TaskGroups[0].Tasks[0]
	for k, want := range map[string]int{"max_workers": size.Workers,
		"worker_cpu_millicores": size.WorkerCPUMillicores, "worker_memory_mb": size.WorkerMemoryMB} {
		if got, ok := task.Config[k].(float64); !ok || int(got) != want {
			t.Errorf("task config %s = %v; want %d", k, task.Config[k], want)
		}
	}
	// The pool job's containers: 1200 millicores (startNomadCluster).
	pool, _, err := c.nomad.Client.Jobs().Info(placement.DefaultPoolJob, nil)
	if err != nil {
		t.Fatal(err)
	}
	poolMHz := int64(*pool.TaskGroups[0].Tasks[0].Resources.CPU)
	millicores, memoryMB := size.Limits()
	if wantCPU := (millicores*poolMHz + 1199) / 1200; int64(*task.Resources.CPU) != wantCPU {
		t.Errorf("resources cpu = %d MHz; want %d (%d millicores, as the pool reserves %d MHz for 1200)",
			*task.Resources.CPU, wantCPU, millicores, poolMHz)
	}
	if int64(*task.Resources.MemoryMB) != memoryMB {
		t.Errorf("resources memory = %d MB; want %d", *task.Resources.MemoryMB, memoryMB)
	}
}

// checkBinds binds ct with cfg and serves a request, and checks that its
// cgroup has the CPU quota and memory limit the driver sizes it with.
func checkBinds(ctx context.Context, t *testing.T, ct placement.Container, cfg fnconfig.Config, millicores, memoryMB int64) {
	t.Helper()
	cl, err := proxy.Dial(ctx, ct.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	wasm := testwasm.Bytes(t, "c/counter")
	if err := cl.Bind(ctx, proxy.Binding{Function: "counter", Session: "s", Role: proxy.RolePrimary, Config: cfg, Module: wasm}); err != nil {
		t.Fatalf("bind %s: %v", ct.ID, err)
	}
	if out, err := cl.Invoke(ctx, []byte("incr")); err != nil || string(out) != "1" {
		t.Fatalf("invoke: %q %v", out, err)
	}
	st, err := cl.Status(ctx)
	if err != nil || !st.Limits.Enforced {
		t.Fatalf("status %+v %v; want limits enforced", st, err)
	}
	gotCPU, gotMem := cgroupLimits(t, st.Limits.Cgroup)
	if gotCPU != millicores || gotMem != memoryMB {
		t.Errorf("cgroup %s: %d millicores, %d MiB; want %d and %d", st.Limits.Cgroup, gotCPU, gotMem, millicores, memoryMB)
	}
}

// cgroupLimits reads a group's CPU quota in millicores and memory limit in
// MiB, on cgroup v1 or v2.
func cgroupLimits(t *testing.T, group string) (millicores, memoryMB int64) {
	t.Helper()
	read := func(parts ...string) []string {
		raw, err := os.ReadFile(filepath.Join(append([]string{"/sys/fs/cgroup"}, parts...)...))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(raw))
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("cgroup %s: %v", group, err)
		}
		return n
	}
	var quota, period, mem int64
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		f := read(group, "cpu.max")
		quota, period, mem = num(f[0]), num(f[1]), num(read(group, "memory.max")[0])
	} else {
		quota, period = num(read("cpu", group, "cpu.cfs_quota_us")[0]), num(read("cpu", group, "cpu.cfs_period_us")[0])
		mem = num(read("memory", group, "memory.limit_in_bytes")[0])
	}
	return quota * 1000 / period, mem >> 20
}

// Nodes says what a node can still start as Nomad's scheduler sees it: a
// one-off of exactly its free CPU is placed, one a millicore larger is not,
// and the job that could not be placed leaves nothing behind. A function
// larger than the whole node is too big for any node.
func TestNomadNodeRoom(t *testing.T) {
	c := startNomadCluster(t)
	b := c.backend(t)
	n := c.waitPool(t, b, poolSize)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	if n.Free == nil || n.Allocatable == nil {
		t.Fatalf("node %+v; want its room", n)
	}
	if want := c.nomadRoom(t); *n.Free != want {
		t.Fatalf("free %+v; want %+v, from the node's resources and allocations", *n.Free, want)
	}
	t.Logf("node %s: free %+v of %+v", n.Name, *n.Free, *n.Allocatable)
	if want := (placement.Size{Workers: 2, WorkerCPUMillicores: 100, WorkerMemoryMB: 128}); !slices.Equal(n.PoolSizes, []placement.Size{want}) {
		t.Errorf("pool sizes %v; want the pool job's, %s", n.PoolSizes, want)
	}

	// One worker takes all the CPU a container may have beyond the
	// proxy's own 1000 millicores.
	exact := placement.Size{Workers: 1, WorkerCPUMillicores: int(n.Free.Millicores) - 1000, WorkerMemoryMB: 128}
	over := exact
	over.WorkerCPUMillicores++
	if !n.Fits(exact) || n.Fits(over) {
		t.Fatalf("node %+v fits %s: %v, %s: %v; want only the first", n, exact, n.Fits(exact), over, n.Fits(over))
	}
	if ct, _, err := b.Claim(ctx, c.node, over); !errors.Is(err, placement.ErrNodeFull) || apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("claim of %s: %+v, %v; want the node full", over, ct, err)
	}
	c.checkOneOffs(t, 0)
	if _, hit, err := b.Claim(ctx, c.node, exact); err != nil || hit {
		t.Fatalf("claim of %s: hit=%v %v; want a one-off", exact, hit, err)
	}
	c.checkOneOffs(t, 1)
	n = c.waitPool(t, b, poolSize)
	if n.Free.Millicores >= 1000 || !n.Fits(small) {
		t.Errorf("after the one-off: %+v; want no CPU free for a new container, the pool's for small", n)
	}

	huge := placement.Size{Workers: 10, WorkerCPUMillicores: int(n.Allocatable.Millicores) / 10, WorkerMemoryMB: 128}
	nodes, err := b.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = placement.Spread(nodes, huge)
	if apierror.KindOf(err) != apierror.Unavailable || !strings.HasPrefix(err.Error(), "function too big for any node") {
		t.Fatalf("spread of %s over %+v: %v; want it too big for any node", huge, nodes, err)
	}
}

// nomadRoom is the largest container a one-off could have on the node now,
// read from Nomad: the node's CPU and memory less what it reserves for
// itself and what its live allocations reserve, the CPU at the MHz the
// pool job reserves per millicore of its containers' quota (1200).
func (c *nomadCluster) nomadRoom(t *testing.T) placement.Resources {
	t.Helper()
	stubs, _, err := c.nomad.Client.Nodes().List(nil)
	if err != nil || len(stubs) != 1 {
		t.Fatalf("nodes %v, %v", stubs, err)
	}
	node, _, err := c.nomad.Client.Nodes().Info(stubs[0].ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	allocs, _, err := c.nomad.Client.Nodes().Allocations(node.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	mhz := node.NodeResources.Cpu.CpuShares - int64(node.ReservedResources.Cpu.CpuShares)
	mem := node.NodeResources.Memory.MemoryMB - int64(node.ReservedResources.Memory.MemoryMB)
	for _, a := range allocs {
		if a.ServerTerminalStatus() || a.ClientTerminalStatus() {
			continue
		}
		for _, r := range a.AllocatedResources.Tasks {
			mhz -= r.Cpu.CpuShares
			mem -= r.Memory.MemoryMB
		}
	}
	pool, _, err := c.nomad.Client.Jobs().Info(placement.DefaultPoolJob, nil)
	if err != nil {
		t.Fatal(err)
	}
	return placement.Resources{Millicores: mhz * 1200 / int64(*pool.TaskGroups[0].Tasks[0].Resources.CPU), MemoryMB: mem}
}

// checkOneOffs checks that Nomad has want one-off jobs, and Consul want
// claims and want one-off services: theirs, and nothing of a one-off that
// did not start.
func (c *nomadCluster) checkOneOffs(t *testing.T, want int) {
	t.Helper()
	jobs, _, err := c.nomad.Client.Jobs().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	var oneOffs []string
	for _, j := range jobs {
		if strings.HasPrefix(j.ID, placement.DefaultJobPrefix) {
			oneOffs = append(oneOffs, j.ID+" "+j.Status)
		}
	}
	claims, _, err := c.consul.Client.KV().List(placement.DefaultClaimPrefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	svcs, _, err := c.consul.Client.Catalog().Service(placement.DefaultService, "one-off", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(oneOffs) != want || len(claims) != want || len(svcs) != want {
		t.Errorf("one-off jobs %v, %d claims, %d one-off services; want %d of each", oneOffs, len(claims), len(svcs), want)
	}
}
