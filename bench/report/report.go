// Package report writes the results of `xfaas bench`: results.json, a
// Markdown report (report.md) with the xfaas/baseline ratio of every
// figure, and PNG plots that mirror the paper's figures.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xfaas/xfaas/bench"
	"github.com/xfaas/xfaas/bench/workload"
)

// Files are the files Write creates in its directory, besides the plots
// of Plots.
const (
	ResultsFile = "results.json"
	ReportFile  = "report.md"
)

// Write writes results.json, report.md and the plots into dir.
func Write(dir string, res *bench.Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ResultsFile), append(data, '\n'), 0o644); err != nil {
		return err
	}
	plots, perr := Plots(dir, res)
	if perr != nil {
		perr = fmt.Errorf("plots: %w", perr)
	}
	f, err := os.Create(filepath.Join(dir, ReportFile))
	if err != nil {
		return errors.Join(perr, err)
	}
	markdown(f, res, plots)
	return errors.Join(perr, f.Close())
}

// markdown writes the report.
func markdown(w io.Writer, res *bench.Results, plots []string) {
	c := res.Config
	fmt.Fprintf(w, "# xfaas bench: %s run\n\n", c.Mode)
	fmt.Fprintf(w, "Started %s, took %.0f s on %d CPUs (%s, %s). Value size %d B; xfaas: up to %d workers per container, "+
		"%d containers (one session); baseline: %d one-worker containers with state in a local redis-server. "+
		"Every number below was measured in this run; ratios are xfaas/redis unless said otherwise.\n\n",
		res.Started.Format(time.RFC3339), res.DurationS, res.Machine.CPUs, res.Machine.OS, res.Machine.GoVersion,
		c.ValueSize, c.WorkersPerContainer, c.Containers, c.WorkersPerContainer*c.Containers)
	writeTargets(w, res)
	writePeak(w, res)
	writeAccess(w, res)
	writeClosed(w, res)
	writeOpen(w, res)
	writeCold(w, res)
	writeBurst(w, res)
	writeMemory(w, res)
	if len(res.Errors) > 0 {
		fmt.Fprintf(w, "## Errors\n\n")
		for _, e := range res.Errors {
			fmt.Fprintf(w, "- %s\n", e)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "## Plots\n\n")
	for _, p := range plots {
		fmt.Fprintf(w, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
	}
}

func writeTargets(w io.Writer, res *bench.Results) {
	fmt.Fprintf(w, "## Targets\n\n| target | want | measured | met |\n| --- | --- | --- | --- |\n")
	for _, t := range res.Targets {
		measured, met := num(t.Measured), yesNo(t.Met)
		if t.NotAvailable != "" {
			measured, met = "n/a: "+t.NotAvailable, "n/a"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Want, measured, met)
	}
	fmt.Fprintln(w)
}

func writePeak(w io.Writer, res *bench.Results) {
	fmt.Fprintf(w, "## Peak throughput (requests/s, best closed-loop point)\n\n| workload | xfaas | redis | xfaas/redis |\n| --- | --- | --- | --- |\n")
	for _, wl := range workload.All() {
		if p, ok := res.PeakThroughput[wl.Name]; ok {
			fmt.Fprintf(w, "| %s | %.0f | %.0f | %s |\n", wl.Title, p.Xfaas, p.Redis, ratio(p.Ratio))
		}
	}
	fmt.Fprintln(w)
}

func writeAccess(w io.Writer, res *bench.Results) {
	a := res.AccessLatency
	fmt.Fprintf(w, "## Access latency (one state read of %d B, ns)\n\n"+
		"Mean request time of the stateloop guest with L reads minus with none, over L (L = %d on xfaas, %d on redis).\n\n"+
		"0 means the reads' time was lost in the noise of the request time (queueing dominates at high concurrency): not resolvable.\n\n"+
		"| clients | xfaas | redis | xfaas/redis | xfaas is | request without reads, xfaas / redis (ms) |\n| --- | --- | --- | --- | --- | --- |\n",
		a.ValueSize, res.Config.AccessLoopsXfaas, res.Config.AccessLoopsRedis)
	for i, n := range a.Clients {
		lower := "n/a"
		if a.Ratio[i] > 0 {
			lower = num(a.Ratio[i]) + "x lower"
		}
		fmt.Fprintf(w, "| %d | %.0f | %.0f | %s | %s | %.3f / %.3f |\n", n, a.XfaasNS[i], a.RedisNS[i],
			ratio(div(a.XfaasNS[i], a.RedisNS[i])), lower, at(a.XfaasBaseMS, i), at(a.RedisBaseMS, i))
	}
	fmt.Fprintln(w)
}

func writeClosed(w io.Writer, res *bench.Results) {
	for _, wl := range workload.All() {
		cs, ok := res.ClosedLoop[wl.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "## Closed loop: %s\n\n| clients | xfaas req/s | redis req/s | xfaas/redis | xfaas p50 ms | redis p50 ms | xfaas/redis | xfaas p99 ms | redis p99 ms | errors x/r |\n"+
			"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n", wl.Title)
		for i, n := range cs.Clients {
			x, r := cs.Xfaas[i], cs.Redis[i]
			fmt.Fprintf(w, "| %d | %.0f | %.0f | %s | %.3f | %.3f | %s | %.3f | %.3f | %d/%d |\n", n, x.Throughput, r.Throughput,
				ratio(div(x.Throughput, r.Throughput)), x.P50MS, r.P50MS, ratio(div(x.P50MS, r.P50MS)), x.P99MS, r.P99MS, x.Errors, r.Errors)
		}
		fmt.Fprintln(w)
	}
}

func writeOpen(w io.Writer, res *bench.Results) {
	for _, wl := range workload.All() {
		ol, ok := res.OpenLoop[wl.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "## Open loop: %s (end-to-end latency, ms)\n\n| rate/s | xfaas mean | p50 | p99 | redis mean | p50 | p99 | xfaas/redis mean | p50 | p99 | errors+dropped x/r |\n"+
			"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n", wl.Title)
		for i, rate := range ol.Rates {
			x, r := ol.Xfaas[i], ol.Redis[i]
			fmt.Fprintf(w, "| %.0f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %s | %s | %d/%d |\n", rate, x.MeanMS, x.P50MS, x.P99MS,
				r.MeanMS, r.P50MS, r.P99MS, ratio(div(x.MeanMS, r.MeanMS)), ratio(div(x.P50MS, r.P50MS)), ratio(div(x.P99MS, r.P99MS)),
				x.Errors+x.Dropped, r.Errors+r.Dropped)
		}
		fmt.Fprintln(w)
	}
}

func writeCold(w io.Writer, res *bench.Results) {
	trad := res.ColdStartMS[bench.Traditional]
	fmt.Fprintf(w, "## Cold start (ms)\n\nThe ratio compares each kind with a traditional container's start (kind/traditional).\n\n"+
		"| kind | p50 | mean | p99 | n | kind/traditional | note |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, kind := range bench.ColdStartKinds {
		d, v := res.ColdStart[kind], res.ColdStartMS[kind]
		if v.NA != "" {
			fmt.Fprintf(w, "| %s | n/a | | | | | not available: %s |\n", kind, v.NA)
			continue
		}
		q := "n/a"
		if trad.NA == "" && trad.V > 0 {
			q = ratio(v.V / trad.V)
		}
		fmt.Fprintf(w, "| %s | %.3f | %.3f | %.3f | %d | %s | |\n", kind, d.P50MS, d.MeanMS, d.P99MS, d.N, q)
	}
	fmt.Fprintln(w)
}

func writeBurst(w io.Writer, res *bench.Results) {
	b := res.Burst
	var redis *bench.BurstSeries
	for i := range b.Series {
		if b.Series[i].Name == "redis" {
			redis = &b.Series[i]
		}
	}
	fmt.Fprintf(w, "## Burst response (ms)\n\n%s.\n\n| series | p50 | p99 | max | requests | errors+dropped | p99 vs redis |\n| --- | --- | --- | --- | --- | --- | --- |\n", b.Note)
	for _, s := range b.Series {
		q := "n/a"
		if redis != nil && redis.Point.P99MS > 0 {
			q = ratio(s.Point.P99MS / redis.Point.P99MS)
		}
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f | %d | %d | %s |\n", s.Name, s.Point.P50MS, s.Point.P99MS, s.CDFMS[99],
			s.Point.Requests, s.Point.Errors+s.Point.Dropped, q)
	}
	fmt.Fprintln(w)
}

func writeMemory(w io.Writer, res *bench.Results) {
	m := res.MemoryPerWorkerKiB
	fmt.Fprintf(w, "## Memory per worker (KiB)\n\n| xfaas | redis | xfaas/redis |\n| --- | --- | --- |\n| %.0f | %.0f | %s |\n\n", m.Xfaas, m.Redis, ratio(m.Ratio))
	for _, sys := range []string{"xfaas", "redis"} {
		if how := res.MemoryHow[sys]; how != "" {
			fmt.Fprintf(w, "- %s: %s\n", sys, how)
		}
	}
	fmt.Fprintln(w)
}

func at(v []float64, i int) float64 {
	if i < len(v) {
		return v[i]
	}
	return math.NaN()
}

func div(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func ratio(q float64) string {
	if math.IsNaN(q) || math.IsInf(q, 0) || q == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", q)
}

func num(v float64) string { return fmt.Sprintf("%.3g", v) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}
