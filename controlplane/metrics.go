package controlplane

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the control plane's Prometheus metrics, served at /metrics.
type Metrics struct {
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	coldSession prometheus.Histogram
	checkpoint  prometheus.Histogram
	copySession prometheus.Histogram
	claims      *prometheus.CounterVec
	sweeps      prometheus.Counter
	orphans     *prometheus.CounterVec
}

// NewMetrics registers the control plane's metrics in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xfaas_controlplane_invocations_total",
			Help: "Invocations by function and result kind (ok or an error kind)."}, []string{"function", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xfaas_controlplane_invocation_duration_seconds",
			Help: "Invocation latency through the control plane.", Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18)}, []string{"function"}),
		coldSession: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xfaas_cold_session_seconds",
			Help: "Time to create a session namespace (ColdSession).", Buckets: prometheus.ExponentialBuckets(1e-3, 2, 14)}),
		checkpoint: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xfaas_checkpoint_seconds",
			Help: "Time to checkpoint a session (snapshot, node copy, durable tier).", Buckets: prometheus.ExponentialBuckets(1e-4, 2, 16)}),
		copySession: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xfaas_copy_session_seconds",
			Help: "Time to add a secondary container (CopySession).", Buckets: prometheus.ExponentialBuckets(1e-3, 2, 14)}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xfaas_container_claims_total",
			Help: "Containers claimed, from the warm pool (hit) or started (miss)."}, []string{"pool"}),
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{Name: "xfaas_orphan_sweeps_total",
			Help: "Sweeps of the registry for sessions whose owner is gone."}),
		orphans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xfaas_orphaned_sessions_total",
			Help: "Sessions whose owner was gone that a sweep took over: adopted (keep-alive retires them) or released (function deleted, primary unreachable)."},
			[]string{"outcome"}),
	}
	m.reg.MustRegister(m.invocations, m.latency, m.coldSession, m.checkpoint, m.copySession, m.claims, m.sweeps, m.orphans,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
