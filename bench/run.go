package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"time"

	"github.com/xfaas/xfaas/bench/workload"
)

// runner is one Run in progress.
type runner struct {
	cfg          Config
	xfaas, redis System
	res          *Results
	start        time.Time
}

// Run measures every figure on both systems and returns the results.
// Failures of single experiments are recorded in Results.Errors and the
// run goes on; an invalid config or a cancelled ctx ends it.
func Run(ctx context.Context, cfg Config, xfaas, redis System) (*Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	r := &runner{cfg: cfg, xfaas: xfaas, redis: redis, start: time.Now()}
	r.res = &Results{Started: r.start, Config: cfg,
		Machine:        Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH},
		PeakThroughput: map[string]Ratio{}, ColdStartMS: map[string]Value{}, ColdStart: map[string]Dist{},
		ClosedLoop: map[string]ClosedSweep{}, OpenLoop: map[string]OpenSweep{}, MemoryHow: map[string]string{}}
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"cold starts", r.coldStarts},
		{"memory per worker", r.memory},
		{"access latency", r.accessLatency},
		{"workloads", r.workloads},
		{"burst", r.burst},
	}
	for _, s := range steps {
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				return r.res, ctx.Err()
			}
			r.fail(fmt.Errorf("%s: %w", s.name, err))
		}
	}
	r.res.Targets = targets(r.res)
	r.res.DurationS = time.Since(r.start).Seconds()
	r.progressf("done in %.0fs", r.res.DurationS)
	return r.res, nil
}

func (r *runner) progressf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "bench: [%5.1fs] %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

func (r *runner) fail(err error) {
	r.res.Errors = append(r.res.Errors, err.Error())
	r.progressf("error: %v", err)
}

// deployBoth deploys fn on both systems (the baseline as one-worker
// containers, as many as xfaas's workers) and removes it when undo is
// called.
func (r *runner) deployBoth(ctx context.Context, fn Function) (x, b Invoker, undo func(), err error) {
	if x, err = r.xfaas.Deploy(ctx, fn); err != nil {
		return nil, nil, nil, fmt.Errorf("deploy %s on xfaas: %w", fn.Name, err)
	}
	if b, err = r.redis.Deploy(ctx, fn); err != nil {
		r.xfaas.Undeploy(ctx, fn.Name)
		return nil, nil, nil, fmt.Errorf("deploy %s on the baseline: %w", fn.Name, err)
	}
	undo = func() {
		// Undeploy even when ctx is cancelled: processes must not stay.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := r.xfaas.Undeploy(uctx, fn.Name); err != nil {
			r.fail(fmt.Errorf("undeploy %s on xfaas: %w", fn.Name, err))
		}
		if err := r.redis.Undeploy(uctx, fn.Name); err != nil {
			r.fail(fmt.Errorf("undeploy %s on the baseline: %w", fn.Name, err))
		}
	}
	return x, b, undo, nil
}

// mustAnswer invokes inv once and checks the answer.
func mustAnswer(ctx context.Context, inv Invoker, body []byte, want string) error {
	out, err := inv(ctx, body)
	if err != nil {
		return fmt.Errorf("invoke %q: %w", body, err)
	}
	if want != "" && string(bytes.TrimSpace(out)) != want {
		return fmt.Errorf("invoke %q: answered %q, want %q", body, out, want)
	}
	return nil
}

func (r *runner) workloads(ctx context.Context) error {
	var errs []error
	for _, name := range r.cfg.Workloads {
		w, _ := workload.ByName(name)
		if err := r.workload(ctx, w); err != nil {
			if ctx.Err() != nil {
				return err
			}
			errs = append(errs, fmt.Errorf("%s: %w", w.Title, err))
		}
	}
	return errors.Join(errs...)
}

// workload runs the closed-loop sweep and the open-loop rates of w.
func (r *runner) workload(ctx context.Context, w workload.Workload) error {
	fn := Function{Name: "bench-" + w.Name, Module: w.Module, MaxWorkers: r.cfg.WorkersPerContainer, MaxContainers: r.cfg.Containers}
	r.progressf("%s: deploying on xfaas and on %d baseline containers", w.Title, fn.Workers())
	x, b, undo, err := r.deployBoth(ctx, fn)
	if err != nil {
		return err
	}
	defer undo()
	for _, inv := range []Invoker{x, b} {
		if err := mustAnswer(ctx, inv, workload.Init(r.cfg.ValueSize), "ok"); err != nil {
			return err
		}
	}
	cs := ClosedSweep{Clients: r.cfg.Clients}
	for _, n := range r.cfg.Clients {
		px := pointOf(ClosedLoop(ctx, x, workload.Request, n, r.cfg.Warmup, r.cfg.Duration))
		pr := pointOf(ClosedLoop(ctx, b, workload.Request, n, r.cfg.Warmup, r.cfg.Duration))
		cs.Xfaas, cs.Redis = append(cs.Xfaas, px), append(cs.Redis, pr)
		r.progressf("%s closed loop, %d clients: xfaas %.0f req/s p50 %.2fms, redis %.0f req/s p50 %.2fms%s",
			w.Title, n, px.Throughput, px.P50MS, pr.Throughput, pr.P50MS, errNote(px, pr))
	}
	r.res.ClosedLoop[w.Name] = cs
	r.res.PeakThroughput[w.Name] = newRatio(peak(cs.Xfaas), peak(cs.Redis))
	ol := OpenSweep{Rates: r.cfg.Rates}
	for _, rate := range r.cfg.Rates {
		phases := []Phase{{Rate: rate, For: r.cfg.Warmup + r.cfg.Duration}}
		px := pointOf(OpenLoop(ctx, x, workload.Request, phases, r.cfg.Warmup, r.cfg.MaxInFlight))
		pr := pointOf(OpenLoop(ctx, b, workload.Request, phases, r.cfg.Warmup, r.cfg.MaxInFlight))
		ol.Xfaas, ol.Redis = append(ol.Xfaas, px), append(ol.Redis, pr)
		r.progressf("%s open loop, %.0f req/s: xfaas mean %.2fms p99 %.2fms, redis mean %.2fms p99 %.2fms%s",
			w.Title, rate, px.MeanMS, px.P99MS, pr.MeanMS, pr.P99MS, errNote(px, pr))
	}
	r.res.OpenLoop[w.Name] = ol
	return nil
}

func errNote(x, r Point) string {
	if x.Errors+x.Dropped+r.Errors+r.Dropped == 0 {
		return ""
	}
	return fmt.Sprintf(" (errors xfaas %d+%d dropped, redis %d+%d dropped; %s%s)", x.Errors, x.Dropped, r.Errors, r.Dropped, x.FirstError, r.FirstError)
}

func peak(ps []Point) float64 {
	best := 0.0
	for _, p := range ps {
		best = max(best, p.Throughput)
	}
	return best
}

// accessLatency times one state read with the stateloop guest on both
// systems: per client count, the mean request time with L reads minus the
// mean with none, over L.
func (r *runner) accessLatency(ctx context.Context) error {
	fn := Function{Name: "bench-access", Module: workload.StateLoop(), MaxWorkers: r.cfg.WorkersPerContainer, MaxContainers: r.cfg.Containers}
	r.progressf("access latency: deploying stateloop")
	x, b, undo, err := r.deployBoth(ctx, fn)
	if err != nil {
		return err
	}
	defer undo()
	put := []byte("w k " + strconv.Itoa(r.cfg.ValueSize) + " 1")
	for _, inv := range []Invoker{x, b} {
		if err := mustAnswer(ctx, inv, put, "1"); err != nil {
			return err
		}
	}
	as := AccessSweep{Clients: r.cfg.AccessClients, ValueSize: r.cfg.ValueSize}
	for _, n := range r.cfg.AccessClients {
		nx, bx, err := r.perAccess(ctx, x, n, r.cfg.AccessLoopsXfaas)
		if err != nil {
			return fmt.Errorf("xfaas: %w", err)
		}
		nr, br, err := r.perAccess(ctx, b, n, r.cfg.AccessLoopsRedis)
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		q := 0.0
		if nx > 0 && nr > 0 {
			q = nr / nx
		}
		as.XfaasNS, as.RedisNS, as.Ratio = append(as.XfaasNS, nx), append(as.RedisNS, nr), append(as.Ratio, q)
		as.XfaasBaseMS, as.RedisBaseMS = append(as.XfaasBaseMS, bx), append(as.RedisBaseMS, br)
		r.progressf("access latency, %d clients: xfaas %.0f ns, redis %.0f ns (%.0fx lower; requests without reads %.2f and %.2f ms)",
			n, nx, nr, q, bx, br)
	}
	r.res.AccessLatency = as
	return nil
}

// perAccess returns the time of one read in ns and the mean request time
// without reads in ms. When the reads' time is lost in the noise of the
// request time (it happens at high concurrency, where queueing dominates),
// the time is 0: not resolvable.
func (r *runner) perAccess(ctx context.Context, inv Invoker, clients, loops int) (ns, baseMS float64, err error) {
	with := ClosedLoop(ctx, inv, []byte("r k "+strconv.Itoa(loops)), clients, r.cfg.Warmup, r.cfg.Duration)
	without := ClosedLoop(ctx, inv, []byte("r k 0"), clients, r.cfg.Warmup, r.cfg.Duration)
	if len(with.Latencies) == 0 || len(without.Latencies) == 0 || with.Errors+without.Errors > 0 {
		return 0, 0, fmt.Errorf("%d clients: %d and %d requests failed (%s%s)", clients, with.Errors, without.Errors, with.FirstError, without.FirstError)
	}
	return max(float64(with.Mean()-without.Mean())/float64(loops), 0), ms(without.Mean()), nil
}

// coldStarts fills the cold-start table: each kind from the system that
// has it.
func (r *runner) coldStarts(ctx context.Context) error {
	var errs []error
	for _, kind := range ColdStartKinds {
		n := r.cfg.ColdSamples
		if kind == Fork {
			n *= 10
		}
		samples, err := r.xfaas.ColdStart(ctx, kind, n)
		if errors.Is(err, ErrNotMine) {
			samples, err = r.redis.ColdStart(ctx, kind, n)
		}
		var na *NotAvailableError
		switch {
		case errors.As(err, &na):
			r.res.ColdStartMS[kind] = Value{NA: na.Reason}
			r.res.ColdStart[kind] = Dist{NotAvailable: na.Reason}
			r.progressf("cold start %s: not available: %s", kind, na.Reason)
		case err != nil:
			r.res.ColdStartMS[kind] = Value{NA: "failed: " + err.Error()}
			errs = append(errs, fmt.Errorf("%s: %w", kind, err))
		default:
			s := Sample{Latencies: samples}
			d := distOf(s)
			r.res.ColdStart[kind], r.res.ColdStartMS[kind] = d, Value{V: d.P50MS}
			r.progressf("cold start %s: p50 %.3f ms (n=%d)", kind, d.P50MS, d.N)
		}
	}
	return errors.Join(errs...)
}

// memory measures resident memory per worker on both systems.
func (r *runner) memory(ctx context.Context) error {
	var vals [2]float64
	for i, sys := range []System{r.xfaas, r.redis} {
		b, how, err := sys.MemoryPerWorker(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", sys.Name(), err)
		}
		vals[i] = b / 1024
		r.res.MemoryHow[sys.Name()] = how
		r.progressf("memory per worker, %s: %.0f KiB", sys.Name(), vals[i])
	}
	r.res.MemoryPerWorkerKiB = newRatio(vals[0], vals[1])
	return nil
}
