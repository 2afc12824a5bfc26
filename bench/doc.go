// Package bench reproduces the evaluation of the paper behind xfaas
// (section 4) against a Redis-backed baseline: access latency, closed- and
// open-loop latency and peak throughput of the RO, RMW and RMW-Linear
// workloads, the cold-start table, the burst response CDF under vertical
// limits, and memory per worker. It is what `xfaas bench` runs.
//
// Both systems are Systems: xfaas (the real control plane, started
// in-process by cmd/xfaas) and the baseline of package bench/baseline. Run
// drives them with the same load generator, from the same process, on
// loopback only, bounded in count and time, and returns Results that
// package bench/report renders. Every figure is measured in the run;
// what a system cannot do is recorded as not available, with the reason.
package bench
