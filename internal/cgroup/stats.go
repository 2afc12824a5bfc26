package cgroup

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Stats is a group's resource accounting. Memory fields are zero for worker
// groups (memory is not accounted per thread).
type Stats struct {
	CPUTotal  time.Duration // CPU time used by the group's tasks
	CPUUser   time.Duration
	CPUSystem time.Duration
	// Periods is the number of CFS periods with runnable tasks; Throttled
	// how many of them hit the quota, for ThrottledTime in all.
	Periods, Throttled uint64
	ThrottledTime      time.Duration

	MemoryUsage    uint64 // bytes charged now
	MemoryMaxUsage uint64 // high-water mark, when the kernel keeps one
	MemoryRSS      uint64 // anonymous memory
	MemoryCache    uint64 // page cache
}

// Stats reads the group's accounting.
func (g *Group) Stats() (Stats, error) {
	if g.h.mode == V2 {
		return g.statsV2()
	}
	return g.statsV1()
}

func (g *Group) statsV1() (Stats, error) {
	var s Stats
	acct := g.h.dir("cpuacct", g.rel)
	usage, err := readUint(acct, "cpuacct.usage")
	if err != nil {
		return s, err
	}
	s.CPUTotal = time.Duration(usage)
	if kv, err := readKV(acct, "cpuacct.stat"); err == nil {
		// In USER_HZ ticks, 100 per second on every Linux ABI we run on.
		s.CPUUser = time.Duration(kv["user"]) * 10 * time.Millisecond
		s.CPUSystem = time.Duration(kv["system"]) * 10 * time.Millisecond
	}
	if kv, err := readKV(g.h.dir("cpu", g.rel), "cpu.stat"); err == nil {
		s.Periods, s.Throttled = kv["nr_periods"], kv["nr_throttled"]
		s.ThrottledTime = time.Duration(kv["throttled_time"])
	}
	if g.thread {
		return s, nil
	}
	mem := g.h.dir("memory", g.rel)
	if s.MemoryUsage, err = readUint(mem, "memory.usage_in_bytes"); err != nil {
		return s, err
	}
	s.MemoryMaxUsage, _ = readUint(mem, "memory.max_usage_in_bytes")
	if kv, err := readKV(mem, "memory.stat"); err == nil {
		s.MemoryRSS, s.MemoryCache = firstOf(kv, "total_rss", "rss"), firstOf(kv, "total_cache", "cache")
	}
	return s, nil
}

func (g *Group) statsV2() (Stats, error) {
	var s Stats
	dir := g.h.dir("", g.rel)
	kv, err := readKV(dir, "cpu.stat")
	if err != nil {
		return s, err
	}
	s.CPUTotal = time.Duration(kv["usage_usec"]) * time.Microsecond
	s.CPUUser = time.Duration(kv["user_usec"]) * time.Microsecond
	s.CPUSystem = time.Duration(kv["system_usec"]) * time.Microsecond
	s.Periods, s.Throttled = kv["nr_periods"], kv["nr_throttled"]
	s.ThrottledTime = time.Duration(kv["throttled_usec"]) * time.Microsecond
	if g.thread {
		return s, nil
	}
	if s.MemoryUsage, err = readUint(dir, "memory.current"); err != nil {
		return s, err
	}
	s.MemoryMaxUsage, _ = readUint(dir, "memory.peak") // Linux 5.19+
	if kv, err := readKV(dir, "memory.stat"); err == nil {
		s.MemoryRSS, s.MemoryCache = kv["anon"], kv["file"]
	}
	return s, nil
}

func firstOf(kv map[string]uint64, keys ...string) uint64 {
	for _, k := range keys {
		if v, ok := kv[k]; ok {
			return v
		}
	}
	return 0
}

func readUint(dir, file string) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// readKV reads a flat-keyed file of "key value" lines.
func readKV(dir, file string) (map[string]uint64, error) {
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			kv[k] = n
		}
	}
	if len(kv) == 0 && sc.Err() == nil {
		return nil, errors.New("cgroup " + file + " is empty")
	}
	return kv, sc.Err()
}

// Period is the CFS period xfaas uses for quotas: 100 ms.
const Period = 100_000 // µs

// Resources describes limits as OCI resources: a CPU quota of millicores
// (0 for none), a memory limit in bytes (0 for none, swap equal to it so the
// group cannot swap past it), and a pids limit (0 for none).
func Resources(millicores, memoryBytes, pids int64) *specs.LinuxResources {
	res := &specs.LinuxResources{}
	if millicores > 0 {
		// The kernel refuses quotas under 1 ms.
		quota, period := max(millicores*Period/1000, 1000), uint64(Period)
		shares := uint64(max(millicores*1024/1000, 2))
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period, Shares: &shares}
	}
	if memoryBytes > 0 {
		limit, swap := memoryBytes, memoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
	}
	if pids > 0 {
		res.Pids = &specs.LinuxPids{Limit: pids}
	}
	return res
}
