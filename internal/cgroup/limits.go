package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Period is the CFS period of quotas built by MilliCPU, in microseconds:
// 100 ms, the kernel's default.
const Period = 100_000

// minQuota is the smallest quota the kernel accepts, in microseconds.
const minQuota = 1000

// MilliCPU describes a CPU limit of millicores (1000 = one CPU): a quota
// per Period, at least the kernel's minimum of 1 ms (10 millicores), and
// shares in proportion (1024 per CPU, as Kubernetes does) so that busy
// groups also split contended CPUs in that ratio.
func MilliCPU(millicores int64) *specs.LinuxCPU {
	quota, period := max(millicores*Period/1000, minQuota), uint64(Period)
	shares := uint64(max(millicores*1024/1000, 2))
	return &specs.LinuxCPU{Quota: &quota, Period: &period, Shares: &shares}
}

// Memory describes a memory limit of bytes with no swap beyond it (the OCI
// swap value counts memory plus swap).
func Memory(bytes int64) *specs.LinuxMemory {
	limit, swap := bytes, bytes
	return &specs.LinuxMemory{Limit: &limit, Swap: &swap}
}

// Resources describes a container's limits: millicores of CPU, memory
// bytes and a number of pids, each 0 for none.
func Resources(millicores, memoryBytes, pids int64) *specs.LinuxResources {
	res := &specs.LinuxResources{}
	if millicores > 0 {
		res.CPU = MilliCPU(millicores)
	}
	if memoryBytes > 0 {
		res.Memory = Memory(memoryBytes)
	}
	if pids > 0 {
		res.Pids = &specs.LinuxPids{Limit: pids}
	}
	return res
}

// Set applies the limits of res (nil for none): CPU quota, period and
// shares (cpu.weight on v2), memory limit and swap, and pids. A nil field
// is left as it is; a value <= 0 removes the limit. As with runc, a v2
// period without a quota means no quota. Other LinuxResources fields, and
// memory or pids limits on a worker group, are an error rather than
// silently dropped.
func (g *Group) Set(res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	if err := g.supported(res); err != nil {
		return err
	}
	if err := g.setCPU(res.CPU); err != nil {
		return g.fail("set cpu of", err)
	}
	if err := g.setMemory(res.Memory); err != nil {
		return g.fail("set memory of", err)
	}
	if err := g.setPids(res.Pids); err != nil {
		return g.fail("set pids of", err)
	}
	return nil
}

func (g *Group) supported(res *specs.LinuxResources) error {
	var field string
	switch {
	case len(res.Devices) > 0:
		field = "devices"
	case res.BlockIO != nil, len(res.HugepageLimits) > 0, res.Network != nil, len(res.Rdma) > 0, len(res.Unified) > 0:
		field = "block I/O, hugepage, network, RDMA and unified"
	case res.CPU != nil && (res.CPU.Cpus != "" || res.CPU.Mems != "" || res.CPU.RealtimeRuntime != nil || res.CPU.RealtimePeriod != nil || res.CPU.Idle != nil || res.CPU.Burst != nil):
		field = "cpuset, realtime, idle and burst"
	case g.worker && (res.Memory != nil || res.Pids != nil):
		return fmt.Errorf("set %s: a worker group takes CPU limits only", g)
	default:
		return nil
	}
	return fmt.Errorf("set %s: %s limits are not supported", g, field)
}

func (g *Group) setCPU(c *specs.LinuxCPU) error {
	if c == nil {
		return nil
	}
	dir, err := g.dirIn("cpu")
	if err != nil {
		return err
	}
	if g.h.mode == V2 {
		return setCPUV2(dir, c)
	}
	if c.Shares != nil {
		if err := write(dir, "cpu.shares", strconv.FormatUint(*c.Shares, 10)); err != nil {
			return err
		}
	}
	// v1 refuses a child whose quota/period exceeds its parent's, so a new
	// period may be refused until the new quota is in: then retry it after.
	retry := false
	if c.Period != nil {
		err := write(dir, "cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10))
		if err != nil && (c.Quota == nil || !errors.Is(err, unix.EINVAL)) {
			return err
		}
		retry = err != nil
	}
	if c.Quota == nil {
		return nil
	}
	if err := write(dir, "cpu.cfs_quota_us", v1Max(*c.Quota)); err != nil {
		return err
	}
	if retry {
		return write(dir, "cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10))
	}
	return nil
}

func setCPUV2(dir string, c *specs.LinuxCPU) error {
	if c.Shares != nil && *c.Shares > 0 {
		if err := write(dir, "cpu.weight", strconv.FormatUint(weight(*c.Shares), 10)); err != nil {
			return err
		}
	}
	if c.Quota == nil && c.Period == nil {
		return nil
	}
	val := "max"
	if c.Quota != nil && *c.Quota > 0 {
		val = strconv.FormatInt(*c.Quota, 10)
	}
	if c.Period != nil && *c.Period > 0 {
		val += " " + strconv.FormatUint(*c.Period, 10)
	}
	return write(dir, "cpu.max", val)
}

// weight converts v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000]
// so that the defaults match (1024 → 100), as runc 1.3 does.
func weight(shares uint64) uint64 {
	if shares <= 2 {
		return 1
	}
	if shares >= 262144 {
		return 10000
	}
	l := math.Log2(float64(shares))
	return uint64(math.Ceil(math.Pow(10, (l*l+125*l)/612-7.0/34)))
}

func (g *Group) setMemory(m *specs.LinuxMemory) error {
	if m == nil || (m.Limit == nil && m.Swap == nil) {
		return nil
	}
	if m.Limit == nil {
		return errors.New("a swap limit needs a memory limit")
	}
	dir, err := g.dirIn("memory")
	if err != nil {
		return err
	}
	if g.h.mode == V2 {
		return setMemoryV2(dir, *m.Limit, m.Swap)
	}
	limit := v1Max(*m.Limit)
	err = write(dir, "memory.limit_in_bytes", limit)
	if m.Swap == nil {
		return err
	}
	// memsw must stay >= the memory limit: when raising both, the memory
	// write is refused until memsw is raised.
	if err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	swap := v1Max(*m.Swap)
	if serr := write(dir, "memory.memsw.limit_in_bytes", swap); serr != nil && !errors.Is(serr, fs.ErrNotExist) {
		return serr // no memsw file: swap accounting is off, nothing to limit
	}
	if err != nil {
		return write(dir, "memory.limit_in_bytes", limit)
	}
	return nil
}

func setMemoryV2(dir string, limit int64, swap *int64) error {
	if err := write(dir, "memory.max", v2Max(limit)); err != nil {
		return err
	}
	if swap == nil {
		return nil
	}
	// OCI swap counts memory plus swap; v2's memory.swap.max only swap.
	val := "max"
	if limit > 0 && *swap > 0 {
		if *swap < limit {
			return fmt.Errorf("memory+swap limit %d is below the memory limit %d", *swap, limit)
		}
		val = strconv.FormatInt(*swap-limit, 10)
	}
	if err := write(dir, "memory.swap.max", val); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err // no memory.swap.max: no swap accounting, nothing to limit
	}
	return nil
}

func (g *Group) setPids(p *specs.LinuxPids) error {
	if p == nil {
		return nil
	}
	dir, err := g.dirIn("pids")
	if err != nil {
		return err
	}
	return write(dir, "pids.max", v2Max(p.Limit))
}

// v1Max formats a v1 limit, -1 for none.
func v1Max(n int64) string {
	if n <= 0 {
		return "-1"
	}
	return strconv.FormatInt(n, 10)
}

// v2Max formats a limit the way v2 and pids.max want, "max" for none.
func v2Max(n int64) string {
	if n <= 0 {
		return "max"
	}
	return strconv.FormatInt(n, 10)
}

// What a session container needs beyond its workers. See RATIONALE.md,
// "Workers and cgroups".
const (
	// ContainerOverheadMB is the proxy's own memory: the Go runtime,
	// compiled code, buffers.
	ContainerOverheadMB = 96
	// ContainerOverheadMillicores is the proxy's own CPU: serving the wire
	// protocol and HTTP, the state RPC of secondaries, the garbage
	// collector. Without it the container's quota, shared with its
	// workers, throttles the serving of requests the workers could run.
	ContainerOverheadMillicores = 1000
)

// Container describes the limits of a session container with workers
// workers of cpuMillicores and memoryMB each (ContainerSize). Each worker's
// own group holds it to its share.
func Container(workers, cpuMillicores, memoryMB int) *specs.LinuxResources {
	cpu, mem := ContainerSize(workers, cpuMillicores, memoryMB)
	return Resources(cpu, mem<<20, 0)
}

// ContainerSize is the CPU, in millicores, and the memory, in MiB, of a
// session container with workers workers of cpuMillicores and memoryMB
// each: the workers' sum plus the proxy's overhead. It is the one formula
// for a container's size: the driver and the proxy limit container groups
// with it (Container), and the nomad placement backend sizes one-off jobs'
// resources and compares pool containers with a function's needs with it.
func ContainerSize(workers, cpuMillicores, memoryMB int) (millicores, mib int64) {
	return int64(workers)*int64(cpuMillicores) + ContainerOverheadMillicores,
		int64(workers)*int64(memoryMB) + ContainerOverheadMB
}
