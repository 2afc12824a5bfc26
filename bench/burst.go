package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/xfaas/xfaas/bench/workload"
)

// cdfQuantiles are the quantiles a burst CDF is written at.
var cdfQuantiles = func() []float64 {
	q := make([]float64, 0, 104)
	for i := 1; i <= 100; i++ {
		q = append(q, float64(i)/100)
	}
	return append(q, 0.995, 0.999)
}()

// burst runs the burst experiment: a session served at a low rate gets a
// sudden high rate, and the response times of the burst's requests show
// how fast it scales, per vertical limit. Each request keeps its worker
// busy for BurstWorkMs (the spin guest). The baseline runs the same with
// WorkersPerContainer warm one-worker containers, so that it starts with
// as many workers as xfaas at the largest limit and pays no cold start.
func (r *runner) burst(ctx context.Context) error {
	r.res.Burst = Burst{Limits: r.cfg.BurstLimits, Note: fmt.Sprintf("%.0f req/s for %s, then %.0f req/s for %s; "+
		"each request busy %d ms; CDF of the burst phase's requests; redis = %d warm one-worker containers",
		r.cfg.BurstLowRate, r.cfg.BurstBefore, r.cfg.BurstHighRate, r.cfg.BurstAfter, r.cfg.BurstWorkMs, r.cfg.WorkersPerContainer)}
	var errs []error
	for _, limit := range r.cfg.BurstLimits {
		fn := Function{Name: "bench-burst-" + strconv.Itoa(limit), Module: workload.Spin(), MaxWorkers: limit, MaxContainers: r.cfg.Containers}
		if err := r.burstOne(ctx, r.xfaas, fn, "xfaas-limit-"+strconv.Itoa(limit)); err != nil {
			errs = append(errs, err)
		}
	}
	fn := Function{Name: "bench-burst-redis", Module: workload.Spin(), MaxWorkers: 1, MaxContainers: r.cfg.WorkersPerContainer}
	if err := r.burstOne(ctx, r.redis, fn, "redis"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *runner) burstOne(ctx context.Context, sys System, fn Function, name string) error {
	inv, err := sys.Deploy(ctx, fn)
	if err != nil {
		return fmt.Errorf("%s: deploy: %w", name, err)
	}
	defer sys.Undeploy(context.WithoutCancel(ctx), fn.Name)
	body := []byte(strconv.Itoa(r.cfg.BurstWorkMs))
	if err := mustAnswer(ctx, inv, body, ""); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	phases := []Phase{{Rate: r.cfg.BurstLowRate, For: r.cfg.BurstBefore}, {Rate: r.cfg.BurstHighRate, For: r.cfg.BurstAfter}}
	s := OpenLoop(ctx, inv, body, phases, r.cfg.BurstBefore, r.cfg.MaxInFlight)
	series := BurstSeries{Name: name, Limit: fn.MaxWorkers, Point: pointOf(s), CDFQ: cdfQuantiles}
	for _, q := range cdfQuantiles {
		series.CDFMS = append(series.CDFMS, ms(s.Quantile(q)))
	}
	r.res.Burst.Series = append(r.res.Burst.Series, series)
	r.progressf("burst %s: p50 %.1f ms, p99 %.1f ms, max %.1f ms%s", name, series.Point.P50MS, series.Point.P99MS,
		series.CDFMS[99], errNote(series.Point, Point{}))
	return nil
}

// targets compares the results with the targets.
func targets(res *Results) []Target {
	var ts []Target
	ratio := func(name, wl string, want float64) {
		t := Target{Name: name, Want: fmt.Sprintf(">= %gx", want)}
		if p, ok := res.PeakThroughput[wl]; ok {
			t.Measured, t.Met = p.Ratio, p.Ratio >= want
		} else {
			t.NotAvailable = "workload not run"
		}
		ts = append(ts, t)
	}
	ratio("peak throughput RO, xfaas/redis", "ro", 2)
	ratio("peak throughput RMW, xfaas/redis", "rmw", 3)
	ratio("peak throughput RMW-Linear, xfaas/redis", "rmw_linear", 5)
	t := Target{Name: "access latency at the lowest concurrency, redis/xfaas", Want: ">= 30x"}
	if a := res.AccessLatency; len(a.Ratio) > 0 {
		t.Measured, t.Met = a.Ratio[0], a.Ratio[0] >= 30
	} else {
		t.NotAvailable = "not measured"
	}
	ts = append(ts, t)
	cold := func(name, kind string, want float64) {
		t := Target{Name: name, Want: fmt.Sprintf("<= %g ms", want)}
		v, ok := res.ColdStartMS[kind]
		switch {
		case !ok:
			t.NotAvailable = "not measured"
		case v.NA != "":
			t.NotAvailable = v.NA
		default:
			t.Measured, t.Met = v.V, v.V <= want
		}
		ts = append(ts, t)
	}
	cold("Fork p50", Fork, 0.1)
	cold("ColdSession p50", ColdSession, 25)
	return ts
}
