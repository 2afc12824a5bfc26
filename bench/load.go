package bench

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sample is the outcome of one load run.
type Sample struct {
	// Latencies of the successful requests, sorted.
	Latencies []time.Duration
	// Errors counts failed requests; Dropped counts open-loop arrivals not
	// sent because MaxInFlight requests were outstanding.
	Errors, Dropped int
	// Elapsed is the measured span.
	Elapsed time.Duration
	// FirstError is one error message, for the record.
	FirstError string
}

// Throughput is successful requests per second.
func (s Sample) Throughput() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(len(s.Latencies)) / s.Elapsed.Seconds()
}

// Quantile is the q-quantile of the latencies (nearest rank), 0 if none.
// The latencies must be sorted.
func (s Sample) Quantile(q float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(s.Latencies))+0.5) - 1
	return s.Latencies[min(max(i, 0), len(s.Latencies)-1)]
}

// Mean is the mean latency, 0 if none.
func (s Sample) Mean() time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	var sum time.Duration
	for _, l := range s.Latencies {
		sum += l
	}
	return sum / time.Duration(len(s.Latencies))
}

// recorder collects latencies from many goroutines.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     int
	firstErr string
}

func (r *recorder) add(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs++
		if r.firstErr == "" {
			r.firstErr = err.Error()
		}
		return
	}
	r.lat = append(r.lat, d)
}

func (r *recorder) sample(elapsed time.Duration, dropped int) Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := slices.Clone(r.lat)
	slices.Sort(lat)
	return Sample{Latencies: lat, Errors: r.errs, Dropped: dropped, Elapsed: elapsed, FirstError: r.firstErr}
}

// reqTimeout bounds one benchmark request.
const reqTimeout = 30 * time.Second

// ClosedLoop runs clients that each send body, wait for the answer and
// send again, for warmup (not recorded) and then d.
func ClosedLoop(ctx context.Context, inv Invoker, body []byte, clients int, warmup, d time.Duration) Sample {
	var rec recorder
	start := time.Now()
	measureFrom, end := start.Add(warmup), start.Add(warmup+d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				t0 := time.Now()
				if t0.After(end) || ctx.Err() != nil {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, reqTimeout)
				_, err := inv(rctx, body)
				cancel()
				t1 := time.Now()
				if t0.After(measureFrom) && t1.Before(end) {
					rec.add(t1.Sub(t0), err)
				}
			}
		})
	}
	wg.Wait()
	return rec.sample(d, 0)
}

// Phase is a span of an open-loop schedule at one rate.
type Phase struct {
	Rate float64
	For  time.Duration
}

// OpenLoop sends body on a fixed schedule (the phases one after another,
// arrivals evenly spaced) whatever the answers take, and records each
// latency from its scheduled send time, so that a slow system cannot slow
// the load down (no coordinated omission). Arrivals before skip are sent
// but not recorded. At most maxInFlight requests are outstanding.
func OpenLoop(ctx context.Context, inv Invoker, body []byte, phases []Phase, skip time.Duration, maxInFlight int) Sample {
	var rec recorder
	var inflight atomic.Int64
	dropped := 0
	var wg sync.WaitGroup
	start := time.Now()
	at := time.Duration(0)
	for _, ph := range phases {
		gap := time.Duration(float64(time.Second) / ph.Rate)
		for end := at + ph.For; at < end; at += gap {
			sched := start.Add(at)
			if wait := time.Until(sched); wait > 0 {
				select {
				case <-ctx.Done():
					wg.Wait()
					return rec.sample(time.Since(start), dropped)
				case <-time.After(wait):
				}
			}
			record := at >= skip
			if inflight.Load() >= int64(maxInFlight) {
				if record {
					dropped++
				}
				continue
			}
			inflight.Add(1)
			wg.Go(func() {
				defer inflight.Add(-1)
				rctx, cancel := context.WithTimeout(ctx, reqTimeout)
				_, err := inv(rctx, body)
				cancel()
				if record {
					rec.add(time.Since(sched), err)
				}
			})
		}
	}
	wg.Wait()
	return rec.sample(at-skip, dropped)
}
