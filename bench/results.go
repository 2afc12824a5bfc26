package bench

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Results is everything one run measured: results.json.
type Results struct {
	Started   time.Time `json:"started"`
	DurationS float64   `json:"duration_s"`
	Machine   Machine   `json:"machine"`
	Config    Config    `json:"config"`

	// PeakThroughput is, per workload, the highest closed-loop throughput
	// (requests/s) of each system and xfaas/redis.
	PeakThroughput map[string]Ratio `json:"peak_throughput"`
	// ColdStartMS is the p50 of each cold-start kind in milliseconds, or
	// why it is not available.
	ColdStartMS map[string]Value `json:"cold_start_ms"`
	// ColdStart has every cold-start kind's distribution.
	ColdStart map[string]Dist `json:"cold_start"`
	// AccessLatency is one state read's latency against closed-loop
	// clients.
	AccessLatency AccessSweep `json:"access_latency"`
	// ClosedLoop is, per workload, latency and throughput against clients.
	ClosedLoop map[string]ClosedSweep `json:"closed_loop"`
	// OpenLoop is, per workload, end-to-end latency at fixed rates.
	OpenLoop map[string]OpenSweep `json:"open_loop"`
	// Burst is the response-time CDF of a burst per vertical limit.
	Burst Burst `json:"burst"`
	// MemoryPerWorkerKiB is the resident memory one more worker costs.
	MemoryPerWorkerKiB Ratio `json:"memory_per_worker_kib"`
	// MemoryHow says how each system's memory was measured.
	MemoryHow map[string]string `json:"memory_how"`
	// Targets compares the figures with the targets.
	Targets []Target `json:"targets"`
	// Errors lists the failures of the run that did not stop it.
	Errors []string `json:"errors,omitempty"`
}

// Machine describes where the run ran.
type Machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Redis     string `json:"redis,omitempty"`
}

// Ratio is one figure of both systems and xfaas/redis.
type Ratio struct {
	Xfaas float64 `json:"xfaas"`
	Redis float64 `json:"redis"`
	Ratio float64 `json:"ratio"`
}

func newRatio(x, r float64) Ratio {
	q := 0.0
	if r > 0 {
		q = x / r
	}
	return Ratio{Xfaas: x, Redis: r, Ratio: q}
}

// Value is a measured number, or why there is none: it is written as a
// JSON number, or as the string "not available: <reason>".
type Value struct {
	V  float64
	NA string
}

// MarshalJSON writes the number or the reason.
func (v Value) MarshalJSON() ([]byte, error) {
	if v.NA != "" {
		return json.Marshal("not available: " + v.NA)
	}
	return json.Marshal(v.V)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (v *Value) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v.NA = strings.TrimPrefix(s, "not available: ")
		if v.NA == "" {
			return fmt.Errorf("value %s: neither a number nor a reason", b)
		}
		return nil
	}
	return json.Unmarshal(b, &v.V)
}

// String formats the value with unit, or "n/a".
func (v Value) String() string {
	if v.NA != "" {
		return "n/a"
	}
	return fmt.Sprintf("%.3g", v.V)
}

// Dist summarizes samples in milliseconds.
type Dist struct {
	N      int     `json:"n"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	MinMS  float64 `json:"min_ms"`
	MaxMS  float64 `json:"max_ms"`
	// NotAvailable is why there are no samples.
	NotAvailable string `json:"not_available,omitempty"`
}

// distOf summarizes a sample whose latencies may be in any order (cold
// starts come in the order they were taken).
func distOf(s Sample) Dist {
	if len(s.Latencies) == 0 {
		return Dist{}
	}
	s.Latencies = slices.Sorted(slices.Values(s.Latencies))
	return Dist{N: len(s.Latencies), MeanMS: ms(s.Mean()), P50MS: ms(s.Quantile(0.5)), P99MS: ms(s.Quantile(0.99)),
		MinMS: ms(s.Latencies[0]), MaxMS: ms(s.Latencies[len(s.Latencies)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Point is one load run of one system.
type Point struct {
	Throughput float64 `json:"throughput"`
	MeanMS     float64 `json:"mean_ms"`
	P50MS      float64 `json:"p50_ms"`
	P99MS      float64 `json:"p99_ms"`
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Dropped    int     `json:"dropped,omitempty"`
	FirstError string  `json:"first_error,omitempty"`
}

func pointOf(s Sample) Point {
	return Point{Throughput: s.Throughput(), MeanMS: ms(s.Mean()), P50MS: ms(s.Quantile(0.5)), P99MS: ms(s.Quantile(0.99)),
		Requests: len(s.Latencies), Errors: s.Errors, Dropped: s.Dropped, FirstError: s.FirstError}
}

// ClosedSweep is a workload's closed-loop runs against client counts.
type ClosedSweep struct {
	Clients []int   `json:"clients"`
	Xfaas   []Point `json:"xfaas"`
	Redis   []Point `json:"redis"`
}

// OpenSweep is a workload's open-loop runs against rates.
type OpenSweep struct {
	Rates []float64 `json:"rates"`
	Xfaas []Point   `json:"xfaas"`
	Redis []Point   `json:"redis"`
}

// AccessSweep is the latency of one state read (ns) against clients:
// (request time with L reads - request time with none) / L, the same
// stateloop module on both systems. Ratio is redis/xfaas (how many times
// lower xfaas's is). A 0 is a point where the reads' time was lost in the
// noise of the request time (BaseMS, the mean without reads): not
// resolvable, rather than a made-up number.
type AccessSweep struct {
	Clients     []int     `json:"clients"`
	ValueSize   int       `json:"value_size"`
	XfaasNS     []float64 `json:"xfaas_ns"`
	RedisNS     []float64 `json:"redis_ns"`
	Ratio       []float64 `json:"ratio"`
	XfaasBaseMS []float64 `json:"xfaas_base_ms"`
	RedisBaseMS []float64 `json:"redis_base_ms"`
}

// Burst is the burst experiment: per vertical limit (and the baseline),
// the sorted response times of the requests of the burst phase.
type Burst struct {
	Limits []int          `json:"limits"`
	Series []BurstSeries  `json:"series"`
	Note   string         `json:"note"`
	Extra  map[string]any `json:"extra,omitempty"`
}

// BurstSeries is one CDF.
type BurstSeries struct {
	// Name is "xfaas-limit-N" or "redis".
	Name  string `json:"name"`
	Limit int    `json:"limit"`
	Point Point  `json:"point"`
	// CDFMS are latency quantiles in ms at CDFQ.
	CDFMS []float64 `json:"cdf_ms"`
	CDFQ  []float64 `json:"cdf_q"`
}

// Target is one of the targets and whether this run met it.
type Target struct {
	Name     string  `json:"name"`
	Want     string  `json:"want"`
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
	// NotAvailable is why it could not be measured.
	NotAvailable string `json:"not_available,omitempty"`
}
