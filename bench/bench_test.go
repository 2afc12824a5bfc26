package bench

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xfaas/xfaas/bench/workload"
)

func TestValueJSON(t *testing.T) {
	for _, v := range []Value{{V: 1.5}, {NA: "restore is not wired"}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var got Value
		if err := json.Unmarshal(b, &got); err != nil || got != v {
			t.Errorf("%s: round trip gave %+v, %v; want %+v", b, got, err, v)
		}
	}
	if b, _ := json.Marshal(Value{NA: "why"}); string(b) != `"not available: why"` {
		t.Errorf("not available marshals as %s", b)
	}
}

func TestQuantileAndMean(t *testing.T) {
	s := Sample{Latencies: []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, Elapsed: time.Second}
	if q := s.Quantile(0.5); q != 5 {
		t.Errorf("p50 = %v; want 5", q)
	}
	if q := s.Quantile(0.99); q != 10 {
		t.Errorf("p99 = %v; want 10", q)
	}
	if m := s.Mean(); m != 5 {
		t.Errorf("mean = %v; want 5", m)
	}
	if tp := s.Throughput(); tp != 10 {
		t.Errorf("throughput = %v; want 10", tp)
	}
	if (Sample{}).Quantile(0.5) != 0 || (Sample{}).Mean() != 0 {
		t.Error("an empty sample has non-zero statistics")
	}
}

// fakeInvoker takes d per request, fails every failEvery-th one, and counts
// the requests in flight at most.
type fakeInvoker struct {
	d         time.Duration
	failEvery int64
	n, cur    atomic.Int64
	peak      atomic.Int64
}

func (f *fakeInvoker) invoke(ctx context.Context, _ []byte) ([]byte, error) {
	cur := f.cur.Add(1)
	defer f.cur.Add(-1)
	for p := f.peak.Load(); cur > p && !f.peak.CompareAndSwap(p, cur); p = f.peak.Load() {
	}
	time.Sleep(f.d)
	if n := f.n.Add(1); f.failEvery > 0 && n%f.failEvery == 0 {
		return nil, errors.New("boom")
	}
	return []byte("ok"), nil
}

func TestClosedLoopKeepsClientsBusy(t *testing.T) {
	f := &fakeInvoker{d: time.Millisecond, failEvery: 10}
	s := ClosedLoop(context.Background(), f.invoke, nil, 4, 20*time.Millisecond, 200*time.Millisecond)
	if p := f.peak.Load(); p != 4 {
		t.Errorf("peak concurrency %d; want 4", p)
	}
	if len(s.Latencies) < 100 || s.Errors == 0 || s.FirstError != "boom" {
		t.Errorf("%d requests, %d errors (%q); want hundreds and some errors", len(s.Latencies), s.Errors, s.FirstError)
	}
	if q := s.Quantile(0.5); q < time.Millisecond {
		t.Errorf("p50 %v is below the invoker's 1ms", q)
	}
}

func TestOpenLoopKeepsItsRateAndBound(t *testing.T) {
	f := &fakeInvoker{d: 5 * time.Millisecond}
	phases := []Phase{{Rate: 100, For: 100 * time.Millisecond}, {Rate: 1000, For: 200 * time.Millisecond}}
	s := OpenLoop(context.Background(), f.invoke, nil, phases, 100*time.Millisecond, 1000)
	// 200 arrivals in the second phase, whatever the answers take.
	if n := len(s.Latencies) + s.Errors + s.Dropped; n < 190 || n > 210 {
		t.Errorf("%d recorded arrivals; want about 200", n)
	}
	bounded := OpenLoop(context.Background(), (&fakeInvoker{d: 50 * time.Millisecond}).invoke, nil,
		[]Phase{{Rate: 1000, For: 100 * time.Millisecond}}, 0, 5)
	if bounded.Dropped == 0 || len(bounded.Latencies) > 20 {
		t.Errorf("with 5 in flight: %d answered, %d dropped; want most dropped", len(bounded.Latencies), bounded.Dropped)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, quick := range []bool{true, false} {
		c := DefaultConfig(quick)
		if err := c.Validate(); err != nil {
			t.Errorf("default config (quick %v): %v", quick, err)
		}
	}
	c := DefaultConfig(true)
	c.ValueSize = 2 << 20
	if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("value size 2 MiB: %v; want ErrInvalidConfig", err)
	}
	c = DefaultConfig(true)
	c.Workloads = []string{"nope"}
	if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown workload: %v; want ErrInvalidConfig", err)
	}
}

func TestMeasureFork(t *testing.T) {
	samples, err := MeasureFork(context.Background(), workload.All()[0].Module, []byte("run"), 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 20 || samples[10] <= 0 || samples[10] > 50*time.Millisecond {
		t.Errorf("fork samples %v; want 20 between 0 and 50ms", samples)
	}
}

func TestTargets(t *testing.T) {
	res := &Results{PeakThroughput: map[string]Ratio{"ro": newRatio(300, 100)},
		ColdStartMS: map[string]Value{Fork: {V: 0.05}, ColdSession: {NA: "why"}}}
	got := map[string]Target{}
	for _, tg := range targets(res) {
		got[tg.Name] = tg
	}
	if tg := got["peak throughput RO, xfaas/redis"]; !tg.Met || tg.Measured != 3 {
		t.Errorf("RO target %+v; want met at 3", tg)
	}
	if tg := got["peak throughput RMW, xfaas/redis"]; tg.Met || tg.NotAvailable == "" {
		t.Errorf("RMW target %+v; want not available", tg)
	}
	if tg := got["ColdSession p50"]; tg.NotAvailable != "why" {
		t.Errorf("ColdSession target %+v; want not available: why", tg)
	}
	if tg := got["Fork p50"]; !tg.Met {
		t.Errorf("Fork target %+v; want met", tg)
	}
}

// Cold starts arrive unsorted; their p99 is never below their p50.
func TestDistOfUnsortedSample(t *testing.T) {
	d := distOf(Sample{Latencies: []time.Duration{5e6, 1e6, 9e6, 3e6, 7e6}})
	if d.P50MS != 5 || d.P99MS != 9 || d.MinMS != 1 || d.MaxMS != 9 {
		t.Fatalf("dist %+v; want p50 5, p99 9, min 1, max 9", d)
	}
}
