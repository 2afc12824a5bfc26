package report

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/xfaas/xfaas/bench"
	"github.com/xfaas/xfaas/bench/workload"
)

// Plots draws the figures into dir and returns their file names.
func Plots(dir string, res *bench.Results) ([]string, error) {
	var names []string
	save := func(name string, p *plot.Plot) (err error) {
		defer func() { // a plot must never cost the results
			if v := recover(); v != nil {
				err = fmt.Errorf("%s: %v", name, v)
			}
		}()
		linearIfEmpty(&p.X)
		linearIfEmpty(&p.Y)
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		names = append(names, name)
		return nil
	}
	type figure struct {
		name string
		make func(*bench.Results) (*plot.Plot, error)
	}
	figures := []figure{{"access_latency.png", accessPlot}}
	for _, wl := range workload.All() {
		if _, ok := res.ClosedLoop[wl.Name]; ok {
			figures = append(figures,
				figure{"throughput_" + wl.Name + ".png", func(r *bench.Results) (*plot.Plot, error) { return throughputPlot(r, wl) }},
				figure{"closed_latency_" + wl.Name + ".png", func(r *bench.Results) (*plot.Plot, error) { return closedLatencyPlot(r, wl) }},
				figure{"open_loop_" + wl.Name + ".png", func(r *bench.Results) (*plot.Plot, error) { return openPlot(r, wl) }})
		}
	}
	figures = append(figures, figure{"cold_start.png", coldPlot}, figure{"burst_cdf.png", burstPlot}, figure{"memory_per_worker.png", memoryPlot})
	for _, f := range figures {
		p, err := f.make(res)
		if err != nil {
			return names, fmt.Errorf("%s: %w", f.name, err)
		}
		if err := save(f.name, p); err != nil {
			return names, err
		}
	}
	return names, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// logY puts the y axis on a log scale; every value must be positive.
func logY(p *plot.Plot) {
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
}

// linearIfEmpty puts a log axis without positive data back on a linear
// scale, and widens a log axis over a single value: gonum panics on a log
// axis that reaches 0 (no points, only values that were not measured, or
// one value, which it pads by ±1).
func linearIfEmpty(a *plot.Axis) {
	_, isLog := a.Scale.(plot.LogScale)
	if isLog && a.Min > 0 && a.Min == a.Max {
		a.Min, a.Max = a.Min/2, a.Max*2
	}
	if isLog && !(a.Min > 0) {
		a.Scale, a.Tick.Marker = plot.LinearScale{}, plot.DefaultTicks{}
		if a.Max <= a.Min {
			a.Min, a.Max = 0, 1
		}
	}
}

func xy(xs []float64, ys []float64) plotter.XYs {
	pts := make(plotter.XYs, 0, len(xs))
	for i := range xs {
		if i < len(ys) {
			pts = append(pts, plotter.XY{X: xs[i], Y: ys[i]})
		}
	}
	return pts
}

// positive keeps the points a log axis can draw.
func positive(pts plotter.XYs) plotter.XYs {
	out := pts[:0:0]
	for _, p := range pts {
		if p.Y > 0 {
			out = append(out, p)
		}
	}
	return out
}

func ints(v []int) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func field(ps []bench.Point, f func(bench.Point) float64) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = f(p)
	}
	return out
}

func accessPlot(res *bench.Results) (*plot.Plot, error) {
	a := res.AccessLatency
	p := newPlot(fmt.Sprintf("State access latency (%d B read)", a.ValueSize), "closed-loop clients", "latency per read (ns)")
	logY(p)
	x := ints(a.Clients)
	return p, plotutil.AddLinePoints(p, "xfaas (in-session)", positive(xy(x, a.XfaasNS)), "redis", positive(xy(x, a.RedisNS)))
}

func throughputPlot(res *bench.Results, wl workload.Workload) (*plot.Plot, error) {
	cs := res.ClosedLoop[wl.Name]
	p := newPlot("Throughput: "+wl.Title, "closed-loop clients", "requests/s")
	x := ints(cs.Clients)
	tp := func(q bench.Point) float64 { return q.Throughput }
	return p, plotutil.AddLinePoints(p, "xfaas", xy(x, field(cs.Xfaas, tp)), "redis", xy(x, field(cs.Redis, tp)))
}

func closedLatencyPlot(res *bench.Results, wl workload.Workload) (*plot.Plot, error) {
	cs := res.ClosedLoop[wl.Name]
	p := newPlot("Closed-loop latency: "+wl.Title, "closed-loop clients", "p50 latency (ms)")
	logY(p)
	x := ints(cs.Clients)
	p50 := func(q bench.Point) float64 { return q.P50MS }
	return p, plotutil.AddLinePoints(p, "xfaas", positive(xy(x, field(cs.Xfaas, p50))), "redis", positive(xy(x, field(cs.Redis, p50))))
}

func openPlot(res *bench.Results, wl workload.Workload) (*plot.Plot, error) {
	ol := res.OpenLoop[wl.Name]
	p := newPlot("Open-loop end-to-end latency: "+wl.Title, "requests/s", "latency (ms)")
	logY(p)
	p50 := func(q bench.Point) float64 { return q.P50MS }
	p99 := func(q bench.Point) float64 { return q.P99MS }
	mean := func(q bench.Point) float64 { return q.MeanMS }
	return p, plotutil.AddLinePoints(p,
		"xfaas mean", positive(xy(ol.Rates, field(ol.Xfaas, mean))), "xfaas p50", positive(xy(ol.Rates, field(ol.Xfaas, p50))),
		"xfaas p99", positive(xy(ol.Rates, field(ol.Xfaas, p99))), "redis mean", positive(xy(ol.Rates, field(ol.Redis, mean))),
		"redis p50", positive(xy(ol.Rates, field(ol.Redis, p50))), "redis p99", positive(xy(ol.Rates, field(ol.Redis, p99))))
}

func coldPlot(res *bench.Results) (*plot.Plot, error) {
	p := newPlot("Cold start (p50)", "", "ms")
	logY(p)
	var names []string
	var pts plotter.XYs
	for i, kind := range bench.ColdStartKinds {
		names = append(names, kind)
		if v := res.ColdStartMS[kind]; v.NA == "" && v.V > 0 {
			pts = append(pts, plotter.XY{X: float64(i), Y: v.V})
		}
	}
	p.NominalX(names...)
	if len(pts) == 0 {
		return p, nil
	}
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return nil, err
	}
	s.GlyphStyle.Radius = vg.Points(4)
	p.Add(s)
	labels, err := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: valueLabels(pts)})
	if err != nil {
		return nil, err
	}
	p.Add(labels)
	return p, nil
}

func valueLabels(pts plotter.XYs) []string {
	out := make([]string, len(pts))
	for i, p := range pts {
		out[i] = fmt.Sprintf("  %.3g ms", p.Y)
	}
	return out
}

func burstPlot(res *bench.Results) (*plot.Plot, error) {
	b := res.Burst
	p := newPlot("Burst response CDF (1 -> 100 req/s)", "response time (ms)", "fraction of requests")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	var vs []any
	for _, s := range b.Series {
		var pts plotter.XYs
		for i, v := range s.CDFMS {
			if v > 0 {
				pts = append(pts, plotter.XY{X: v, Y: s.CDFQ[i]})
			}
		}
		if len(pts) > 0 {
			vs = append(vs, s.Name, pts)
		}
	}
	return p, plotutil.AddLines(p, vs...)
}

func memoryPlot(res *bench.Results) (*plot.Plot, error) {
	m := res.MemoryPerWorkerKiB
	p := newPlot("Memory per worker", "", "KiB")
	bars, err := plotter.NewBarChart(plotter.Values{m.Xfaas, m.Redis}, vg.Points(40))
	if err != nil {
		return nil, err
	}
	bars.Color = color.RGBA{R: 60, G: 110, B: 180, A: 255}
	p.Add(bars)
	p.NominalX("xfaas", "redis")
	return p, nil
}
