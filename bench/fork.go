package bench

import (
	"context"
	"runtime"
	"slices"
	"time"

	"github.com/xfaas/xfaas/proxy"
	"github.com/xfaas/xfaas/proxy/state"
)

// MeasureFork times Fork, a new worker in a warm container, with the
// session runtime of package proxy in this process: a fresh worker pool
// over a module already compiled answers its first request (which forks a
// worker from the cached compiled module), then a second one on the warm
// worker. A sample is the first request's time minus the second's. The
// proxy does not expose its fork timer (forkNanos); see the report.
func MeasureFork(ctx context.Context, module []byte, body []byte, samples int) ([]time.Duration, error) {
	e, err := proxy.NewEngine(ctx, proxy.EngineOptions{})
	if err != nil {
		return nil, err
	}
	defer e.Close(ctx)
	m, err := e.Compile(ctx, module)
	if err != nil {
		return nil, err
	}
	st := state.New(state.Options{})
	out := make([]time.Duration, 0, samples)
	for range samples + 1 { // the first sample warms the engine's code paths
		p, err := proxy.NewPool(e, m, proxy.PoolOptions{MaxWorkers: 1, NewAccessor: func() proxy.Accessor { return st.NewTxn() }})
		if err != nil {
			return nil, err
		}
		runtime.GC() // so that no collection lands in the sample
		t0 := time.Now()
		_, err1 := p.Invoke(ctx, body)
		t1 := time.Now()
		_, err2 := p.Invoke(ctx, body)
		t2 := time.Now()
		p.Close(ctx)
		if err1 != nil || err2 != nil {
			return nil, firstErr(err1, err2)
		}
		out = append(out, max(t1.Sub(t0)-t2.Sub(t1), 0))
	}
	out = out[1:]
	slices.Sort(out)
	return out, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
