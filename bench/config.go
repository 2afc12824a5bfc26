package bench

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrInvalidConfig wraps every configuration error.
var ErrInvalidConfig = errors.New("invalid bench config")

// Config says what Run measures and for how long. DefaultConfig fills it
// for the quick or the full mode; validate checks it.
type Config struct {
	// Mode is "quick" or "full", for the record.
	Mode string `json:"mode"`
	// Workloads are the state workloads to run: ro, rmw, rmw_linear.
	Workloads []string `json:"workloads"`
	// ValueSize is the size of the workloads' value in bytes (up to 1 MiB).
	// The default is 1024.
	ValueSize int `json:"value_size"`
	// WorkersPerContainer is xfaas's vertical limit (max_workers). The
	// default is 10.
	WorkersPerContainer int `json:"workers_per_container"`
	// Containers is xfaas's max_containers. The baseline runs
	// WorkersPerContainer × Containers one-worker containers. The default
	// is 8.
	Containers int `json:"containers"`
	// Clients are the closed-loop client counts of the latency and
	// throughput sweeps.
	Clients []int `json:"clients"`
	// AccessClients are the client counts of the access-latency sweep.
	AccessClients []int `json:"access_clients"`
	// Rates are the open-loop request rates, per second.
	Rates []float64 `json:"rates"`
	// Duration is how long each measured point runs, after Warmup.
	Duration time.Duration `json:"duration_ns"`
	Warmup   time.Duration `json:"warmup_ns"`
	// ColdSamples is how many samples each cold-start kind takes (Fork
	// takes ten times as many: it is cheap).
	ColdSamples int `json:"cold_samples"`
	// AccessLoops is how many reads one access-latency request does, per
	// system (reads are ~1000x cheaper in xfaas).
	AccessLoopsXfaas int `json:"access_loops_xfaas"`
	AccessLoopsRedis int `json:"access_loops_redis"`
	// Burst: BurstBefore at BurstLowRate, then BurstAfter at BurstHighRate,
	// each request busy for BurstWorkMs, for each vertical limit.
	BurstLimits   []int         `json:"burst_limits"`
	BurstLowRate  float64       `json:"burst_low_rate"`
	BurstHighRate float64       `json:"burst_high_rate"`
	BurstBefore   time.Duration `json:"burst_before_ns"`
	BurstAfter    time.Duration `json:"burst_after_ns"`
	BurstWorkMs   int           `json:"burst_work_ms"`
	// MaxInFlight bounds the open-loop requests outstanding; arrivals past
	// it are counted as dropped.
	MaxInFlight int `json:"max_in_flight"`
	// Progress receives one line per step; nil discards them.
	Progress io.Writer `json:"-"`
}

// DefaultConfig returns the quick (under 5 minutes on 2 cores) or the full
// configuration.
func DefaultConfig(quick bool) Config {
	c := Config{
		Mode: "full", Workloads: []string{"ro", "rmw", "rmw_linear"}, ValueSize: 1024,
		WorkersPerContainer: 10, Containers: 8,
		Clients:       []int{1, 2, 4, 8, 16, 32, 48, 64, 80},
		AccessClients: []int{1, 2, 4, 8, 16, 32, 80},
		Rates:         []float64{50, 100, 200, 400, 800, 1600},
		Duration:      5 * time.Second, Warmup: time.Second, ColdSamples: 20,
		AccessLoopsXfaas: 5000, AccessLoopsRedis: 50,
		BurstLimits: []int{1, 2, 5, 10}, BurstLowRate: 1, BurstHighRate: 100,
		BurstBefore: 5 * time.Second, BurstAfter: 10 * time.Second, BurstWorkMs: 10,
		MaxInFlight: 2000,
	}
	if quick {
		c.Mode = "quick"
		c.Clients = []int{1, 8, 32, 80}
		c.AccessClients = []int{1, 8, 80}
		c.Rates = []float64{100, 400}
		c.Duration, c.Warmup, c.ColdSamples = 2*time.Second, 300*time.Millisecond, 5
		c.AccessLoopsXfaas, c.AccessLoopsRedis = 2000, 20
		c.BurstAfter = 3 * time.Second
	}
	return c
}

// Validate reports what is wrong with c, as an ErrInvalidConfig; Run
// refuses such a config before it starts anything.
func (c *Config) Validate() error {
	switch {
	case c.ValueSize < 8 || c.ValueSize > 1<<20:
		return fmt.Errorf("%w: value size must be 8 B to 1 MiB", ErrInvalidConfig)
	case c.WorkersPerContainer < 1 || c.Containers < 1:
		return fmt.Errorf("%w: workers per container and containers must be >= 1", ErrInvalidConfig)
	case len(c.Clients) == 0 || len(c.AccessClients) == 0 || len(c.Rates) == 0 || len(c.BurstLimits) == 0:
		return fmt.Errorf("%w: clients, access clients, rates and burst limits must not be empty", ErrInvalidConfig)
	case c.Duration <= 0 || c.ColdSamples < 1 || c.AccessLoopsXfaas < 1 || c.AccessLoopsRedis < 1 || c.MaxInFlight < 1:
		return fmt.Errorf("%w: duration, cold samples, access loops and max in flight must be positive", ErrInvalidConfig)
	case c.BurstLowRate <= 0 || c.BurstHighRate <= 0 || c.BurstWorkMs < 0:
		return fmt.Errorf("%w: burst rates must be positive", ErrInvalidConfig)
	}
	for _, r := range c.Rates {
		if r <= 0 {
			return fmt.Errorf("%w: rates must be positive", ErrInvalidConfig)
		}
	}
	for _, n := range append(append([]int{}, c.Clients...), c.AccessClients...) {
		if n < 1 {
			return fmt.Errorf("%w: client counts must be >= 1", ErrInvalidConfig)
		}
	}
	for _, w := range c.Workloads {
		if w != "ro" && w != "rmw" && w != "rmw_linear" {
			return fmt.Errorf("%w: unknown workload %q", ErrInvalidConfig, w)
		}
	}
	return nil
}
