package proxy

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/proxy/state"
)

// Status is a container's state, served as JSON at /v1/status and over the
// wire protocol.
type Status struct {
	Container string      `json:"container"`
	Node      string      `json:"node,omitempty"`
	Role      Role        `json:"role"`
	Function  string      `json:"function,omitempty"`
	Session   string      `json:"session,omitempty"`
	Digest    string      `json:"digest,omitempty"`
	Primary   string      `json:"primary,omitempty"`
	Uptime    float64     `json:"uptime_s"`
	Workers   PoolStatus  `json:"workers"`
	State     *StateStats `json:"state,omitempty"`
	Limits    LimitStatus `json:"limits"`
	// Prepared says that a pool container has readied its bind (Prepare).
	Prepared bool `json:"prepared,omitempty"`
}

// StateStats is the primary's state size.
type StateStats = state.Stats

// PoolStatus is a snapshot of a worker pool.
type PoolStatus struct {
	Max       int    `json:"max"`
	Live      int    `json:"live"`
	Idle      int    `json:"idle"`
	InFlight  int64  `json:"in_flight"`
	Queued    int    `json:"queued"`
	Requests  uint64 `json:"requests"`
	Forks     uint64 `json:"forks"`
	Discards  uint64 `json:"discards"`
	Trims     uint64 `json:"trims"`
	Overloads uint64 `json:"overloads"`
	// SlotConns is how many invocation connections worker slots serve
	// themselves (RATIONALE.md, "Workers and cgroups").
	SlotConns int `json:"slot_connections"`
}

// Status reports the pool's counters.
func (p *Pool) Status() PoolStatus {
	p.mu.Lock()
	s := PoolStatus{Max: p.opts.MaxWorkers, Live: p.live, Idle: len(p.idle), Queued: p.queued}
	for _, sl := range p.slots {
		if sl.owned {
			s.SlotConns++
		}
	}
	p.mu.Unlock()
	s.InFlight = p.stats.inflight.Load()
	s.Requests, s.Forks = p.stats.requests.Load(), p.stats.forks.Load()
	s.Discards, s.Trims, s.Overloads = p.stats.discards.Load(), p.stats.trims.Load(), p.stats.overloads.Load()
	return s
}

// Status reports the container's state.
func (c *Container) Status() Status {
	s := Status{Container: c.opts.ID, Node: c.opts.Node, Role: RolePool, Uptime: time.Since(c.started).Seconds()}
	b := c.bound()
	if b == nil {
		if c.opts.Limits != nil {
			s.Limits = c.opts.Limits.Status()
		}
		s.Prepared = c.prepared()
		return s
	}
	s.Role, s.Function, s.Session, s.Primary = b.Role, b.Function, b.Session, b.Primary
	s.Digest, s.Limits, s.Workers = b.module.Digest, b.limits, b.pool.Status()
	if b.store != nil {
		st := b.store.Stats()
		s.State = &st
	}
	return s
}

// HTTPHandler serves /healthz, /metrics and /v1/status.
func (c *Container) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "container": c.opts.ID})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.metrics, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func encodeJSON(v any) ([]byte, error) { return json.Marshal(v) }

// invokeMetrics are the hot-path metrics of a bound container; the rest are
// read from the pool and store when scraped.
type invokeMetrics struct {
	total    *prometheus.CounterVec
	duration prometheus.Histogram
}

func (m *invokeMetrics) observe(start time.Time, err error) {
	kind := "ok"
	if err != nil {
		kind = string(apierror.KindOf(err))
	}
	m.total.WithLabelValues(kind).Inc()
	m.duration.Observe(time.Since(start).Seconds())
}

func registerMetrics(reg *prometheus.Registry, id string, b *bound) *invokeMetrics {
	labels := prometheus.Labels{"container": id, "function": b.Function, "session": b.Session, "role": string(b.Role)}
	m := &invokeMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xfaas_invocations_total",
			Help: "Invocations by result kind (ok or an error kind).", ConstLabels: labels}, []string{"kind"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xfaas_invocation_duration_seconds",
			Help: "Invocation latency inside the container, queueing included.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(20e-6, 2, 18)}),
	}
	pool := func(f func(PoolStatus) float64) func() float64 { return func() float64 { return f(b.pool.Status()) } }
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	cs := []prometheus.Collector{m.total, m.duration,
		gauge("xfaas_workers", "Live wasm workers.", pool(func(s PoolStatus) float64 { return float64(s.Live) })),
		gauge("xfaas_workers_idle", "Idle warm workers.", pool(func(s PoolStatus) float64 { return float64(s.Idle) })),
		gauge("xfaas_in_flight", "Requests running on a worker.", pool(func(s PoolStatus) float64 { return float64(s.InFlight) })),
		gauge("xfaas_queued", "Requests waiting for a worker.", pool(func(s PoolStatus) float64 { return float64(s.Queued) })),
		counter("xfaas_forks_total", "Workers instantiated.", pool(func(s PoolStatus) float64 { return float64(s.Forks) })),
		counter("xfaas_worker_discards_total", "Workers discarded after a trap or timeout.", pool(func(s PoolStatus) float64 { return float64(s.Discards) })),
		counter("xfaas_overloads_total", "Requests refused with a full queue.", pool(func(s PoolStatus) float64 { return float64(s.Overloads) })),
		gauge("xfaas_limits_enforced", "1 when workers run in CPU-limited cgroups.", func() float64 {
			if b.limits.Enforced {
				return 1
			}
			return 0
		}),
	}
	if b.store != nil {
		cs = append(cs,
			gauge("xfaas_state_keys", "Keys in the session state.", func() float64 { return float64(b.store.Stats().Keys) }),
			gauge("xfaas_state_bytes", "Bytes of keys and values in the session state.", func() float64 { return float64(b.store.Stats().Bytes) }))
	}
	for _, c := range cs {
		reg.MustRegister(c)
	}
	return m
}
