package driver

import (
	"context"
	"time"

	"github.com/hashicorp/nomad/client/lib/cpustats"
	"github.com/hashicorp/nomad/plugins/drivers"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/xfaas/xfaas/internal/cgroup"
)

// containerResources are a container's cgroup limits: max_workers times a
// worker's CPU and memory, plus the proxy's own overhead.
func containerResources(tc *TaskConfig) *specs.LinuxResources {
	return cgroup.Container(tc.MaxWorkers, tc.WorkerCPUMillicores, tc.WorkerMemoryMB)
}

var (
	measuredCPU    = []string{"System Mode", "User Mode", "Percent", "Total Ticks", "Throttled Periods", "Throttled Time"}
	measuredMemory = []string{"RSS", "Cache", "Usage", "Max Usage"}
)

// TaskStats streams the container cgroup's CPU and memory use every
// interval until ctx ends or the container exits.
func (d *Driver) TaskStats(ctx context.Context, taskID string, interval time.Duration) (<-chan *drivers.TaskResourceUsage, error) {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	if h.group == nil {
		return nil, drivers.DriverStatsNotImplemented
	}
	_, compute := d.snapshot()
	ch := make(chan *drivers.TaskResourceUsage)
	go func() {
		defer close(ch)
		// The first sample averages over the container's life so far.
		s := sampler{compute: compute, prevAt: h.state.StartedAt}
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.ctx.Done():
				return
			case <-h.done:
				return
			case <-t.C:
				t.Reset(interval)
			}
			st, err := h.group.Stats()
			if err != nil {
				d.logger.Debug("failed to read container stats", "task_id", taskID, "error", err)
				continue
			}
			select {
			case ch <- s.usage(st, time.Now()):
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// sampler turns cumulative cgroup CPU times into the percentages Nomad
// reports.
type sampler struct {
	compute             cpustats.Compute
	prevAt              time.Time
	prevTotal, prevUser time.Duration
	prevSystem          time.Duration
}

func (s *sampler) usage(st cgroup.Stats, now time.Time) *drivers.TaskResourceUsage {
	wall := now.Sub(s.prevAt)
	pct := func(cur, prev time.Duration) float64 {
		if wall <= 0 || cur <= prev {
			return 0
		}
		return float64(cur-prev) / float64(wall) * 100
	}
	total := pct(st.CPUTotal, s.prevTotal)
	cpu := &drivers.CpuStats{
		SystemMode:       pct(st.CPUSystem, s.prevSystem),
		UserMode:         pct(st.CPUUser, s.prevUser),
		Percent:          total,
		ThrottledPeriods: st.Throttled,
		ThrottledTime:    uint64(st.ThrottledTime),
		Measured:         measuredCPU,
	}
	if s.compute.NumCores > 0 {
		cpu.TotalTicks = total / 100 * float64(s.compute.TotalCompute) / float64(s.compute.NumCores)
	}
	s.prevAt, s.prevTotal, s.prevUser, s.prevSystem = now, st.CPUTotal, st.CPUUser, st.CPUSystem
	mem := &drivers.MemoryStats{RSS: st.MemoryRSS, Cache: st.MemoryCache, Usage: st.MemoryUsage,
		MaxUsage: st.MemoryMaxUsage, Measured: measuredMemory}
	return &drivers.TaskResourceUsage{
		ResourceUsage: &drivers.ResourceUsage{CpuStats: cpu, MemoryStats: mem},
		Timestamp:     now.UnixNano(),
	}
}
