package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stats is a group's resource accounting, cumulative since it was created
// (memory: at the time of reading). Memory fields are zero for worker
// groups, whose memory is accounted to their container group. CPUTotal is
// exact; the kernel splits it into CPUUser and CPUSystem by sampling at
// scheduler ticks, so their sum is close to it, not equal.
type Stats struct {
	CPUTotal  time.Duration // CPU time used by the group's tasks
	CPUUser   time.Duration
	CPUSystem time.Duration
	// Periods counts CFS periods in which the group could run; Throttled
	// those in which it hit its quota, for ThrottledTime in all.
	Periods, Throttled uint64
	ThrottledTime      time.Duration

	MemoryUsage    uint64 // bytes charged now, page cache included
	MemoryMaxUsage uint64 // high-water mark (v2: Linux 5.19+, else 0)
	MemoryRSS      uint64 // anonymous memory
	MemoryCache    uint64 // page cache
}

// Stats reads the group's accounting.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	var err error
	if g.h.mode == V2 {
		err = g.statsV2(&s)
	} else {
		err = g.statsV1(&s)
	}
	if err != nil {
		return Stats{}, g.fail("stats", err)
	}
	return s, nil
}

func (g *Group) statsV1(s *Stats) error {
	acct, err := g.dirIn("cpuacct")
	if err != nil {
		return err
	}
	usage, err := readUint(acct, "cpuacct.usage")
	if err != nil {
		return err
	}
	s.CPUTotal = time.Duration(usage)
	user, uerr := readUint(acct, "cpuacct.usage_user") // Linux 4.11+
	sys, serr := readUint(acct, "cpuacct.usage_sys")
	if uerr == nil && serr == nil {
		s.CPUUser, s.CPUSystem = time.Duration(user), time.Duration(sys)
	} else if kv, err := readKV(acct, "cpuacct.stat"); err == nil {
		// In USER_HZ ticks, which are 100 per second on every Linux ABI.
		s.CPUUser = time.Duration(kv["user"]) * 10 * time.Millisecond
		s.CPUSystem = time.Duration(kv["system"]) * 10 * time.Millisecond
	}
	kv, err := readKV(g.dirOf("cpu"), "cpu.stat")
	if err != nil {
		return err
	}
	s.Periods, s.Throttled = kv["nr_periods"], kv["nr_throttled"]
	s.ThrottledTime = time.Duration(kv["throttled_time"])
	if g.worker {
		return nil
	}
	mem, err := g.dirIn("memory")
	if err != nil {
		return err
	}
	if s.MemoryUsage, err = readUint(mem, "memory.usage_in_bytes"); err != nil {
		return err
	}
	if s.MemoryMaxUsage, err = readUint(mem, "memory.max_usage_in_bytes"); err != nil {
		return err
	}
	if kv, err = readKV(mem, "memory.stat"); err != nil {
		return err
	}
	// The total_ values include the groups below; rss and cache do not.
	s.MemoryRSS, s.MemoryCache = kv["total_rss"], kv["total_cache"]
	return nil
}

func (g *Group) statsV2(s *Stats) error {
	dir := g.dirOf("")
	kv, err := readKV(dir, "cpu.stat")
	if err != nil {
		return err
	}
	s.CPUTotal = time.Duration(kv["usage_usec"]) * time.Microsecond
	s.CPUUser = time.Duration(kv["user_usec"]) * time.Microsecond
	s.CPUSystem = time.Duration(kv["system_usec"]) * time.Microsecond
	// The nr_ and throttled_ keys appear only with the cpu controller on.
	s.Periods, s.Throttled = kv["nr_periods"], kv["nr_throttled"]
	s.ThrottledTime = time.Duration(kv["throttled_usec"]) * time.Microsecond
	if g.worker {
		return nil
	}
	if s.MemoryUsage, err = readUint(dir, "memory.current"); err != nil {
		return err
	}
	if s.MemoryMaxUsage, err = readUint(dir, "memory.peak"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if kv, err = readKV(dir, "memory.stat"); err != nil {
		return err
	}
	s.MemoryRSS, s.MemoryCache = kv["anon"], kv["file"]
	return nil
}

// readUint reads a control file holding one number.
func readUint(dir, file string) (uint64, error) {
	name := filepath.Join(dir, file)
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", name, err)
	}
	return n, nil
}

// readKV reads a flat-keyed control file of "key value" lines, such as
// cpu.stat and memory.stat.
func readKV(dir, file string) (map[string]uint64, error) {
	name := filepath.Join(dir, file)
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return parseKV(string(data)), nil
}

// parseKV skips lines it cannot parse, so that a key a newer kernel adds
// in another format does not break the ones it knows.
func parseKV(data string) map[string]uint64 {
	kv := map[string]uint64{}
	for line := range strings.Lines(data) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			kv[k] = n
		}
	}
	return kv
}
