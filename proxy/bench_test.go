package proxy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy/state"
)

// p50 is the median of samples.
func p50(samples []time.Duration) time.Duration {
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkStateAccess measures one read_state / write_state from a C guest
// in the primary: the guest repeats the call in a loop and the request's
// time is divided by the count. Metric p50-ns/op is the median of those
// per-call times over all requests.
func BenchmarkStateAccess(b *testing.B) {
	sizes := []struct {
		name  string
		size  int
		loops int
	}{{"16B", 16, 2000}, {"1KiB", 1 << 10, 2000}, {"1MiB", 1 << 20, 20}}
	for _, op := range []string{"read", "write"} {
		for _, sz := range sizes {
			b.Run(op+"/"+sz.name, func(b *testing.B) {
				f := newFixture(b, "test/stateloop", fixtureOptions{maxWorkers: 1})
				f.put("k", bytes.Repeat([]byte{'v'}, sz.size))
				in := fmt.Sprintf("r k %d", sz.loops)
				if op == "write" {
					in = fmt.Sprintf("w k %d %d", sz.size, sz.loops)
				}
				f.mustInvoke(in) // warm the worker
				var samples []time.Duration
				for b.Loop() {
					start := time.Now()
					if out := f.mustInvoke(in); out != strconv.Itoa(sz.loops) {
						b.Fatalf("stateloop: %q", out)
					}
					samples = append(samples, time.Since(start)/time.Duration(sz.loops))
				}
				b.ReportMetric(float64(p50(samples).Nanoseconds()), "p50-ns/op")
			})
		}
	}
}

// BenchmarkFork measures Fork: a new worker instantiated from the compiled
// module in a warm container, up to its first request. Metric p50-µs/fork.
func BenchmarkFork(b *testing.B) {
	for _, guest := range []string{"c/hello", "go/hello"} {
		b.Run(strings.TrimSuffix(guest, "/hello"), func(b *testing.B) {
			f := newFixture(b, guest, fixtureOptions{maxWorkers: 1})
			ctx := context.Background()
			var samples []time.Duration
			for b.Loop() {
				start := time.Now()
				w, err := f.pool.newWorker(ctx, nil, false)
				if err != nil {
					b.Fatal(err)
				}
				samples = append(samples, time.Since(start))
				w.close(false)
			}
			b.ReportMetric(float64(p50(samples).Microseconds()), "p50-µs/fork")
		})
	}
}

// BenchmarkWorkerMemory measures what each added worker costs beyond its
// guest's linear memory, over 50 workers: the growth of the live Go heap
// (wazero keeps linear memory there) minus the linear memories, per worker.
// Resident memory is reported too, after returning freed pages to the OS.
func BenchmarkWorkerMemory(b *testing.B) {
	const n = 50
	for _, guest := range []string{"c/hello", "go/hello"} {
		b.Run(strings.TrimSuffix(guest, "/hello"), func(b *testing.B) {
			f := newFixture(b, guest, fixtureOptions{maxWorkers: 1})
			ctx := context.Background()
			for b.Loop() {
				heap0, rss0 := memNow()
				var linear int64
				workers := make([]*worker, 0, n)
				for range n {
					w, err := f.pool.newWorker(ctx, nil, false)
					if err != nil {
						b.Fatal(err)
					}
					linear += int64(w.inst.Memory().Size())
					workers = append(workers, w)
				}
				heap1, rss1 := memNow()
				b.ReportMetric(float64(heap1-heap0-linear)/n/1024, "overhead-KiB/worker")
				b.ReportMetric(float64(linear)/n/1024, "linear-KiB/worker")
				b.ReportMetric(float64(rss1-rss0)/n/1024, "rss-KiB/worker")
				for _, w := range workers {
					w.close(false)
				}
			}
		})
	}
}

// memNow returns the live Go heap and the resident set, after a collection
// that returns freed memory to the OS.
func memNow() (heap, rss int64) {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return int64(ms.HeapAlloc), 0
	}
	fields := strings.Fields(string(statm))
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return int64(ms.HeapAlloc), pages * int64(os.Getpagesize())
}

// BenchmarkRMWLinear runs the paper's RMW-Linear workload (a linearizable
// read-modify-write of one 8-byte key) from 10 concurrent clients on one
// container of 10 workers. Metric req/s.
func BenchmarkRMWLinear(b *testing.B) {
	for _, scheme := range []state.Scheme{state.Pessimistic, state.Optimistic} {
		b.Run(scheme.String(), func(b *testing.B) {
			f := newFixture(b, "c/rmw_linear", fixtureOptions{maxWorkers: 10, scheme: scheme})
			f.mustInvoke("init 8")
			b.SetParallelism(max(1, 10/runtime.GOMAXPROCS(0)))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := f.invoke(""); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}

// BenchmarkSecondaryStateRead measures one 16-byte read_state (mode 0) from
// a worker of a secondary container, which goes to the primary over the
// wire protocol, on a Unix socket and on TCP. Metric p50-µs/op.
func BenchmarkSecondaryStateRead(b *testing.B) {
	for _, network := range []string{"unix", "tcp"} {
		b.Run(network, func(b *testing.B) {
			primary := benchContainer(b, network)
			secondary := benchContainer(b, network)
			wasm := testwasm.Bytes(b, "test/stateloop")
			cfg := fnconfig.Default()
			ctx := context.Background()
			bind := func(cl *Client, role Role, primaryAddr string) {
				if err := cl.Bind(ctx, Binding{Function: "f", Session: "s", Role: role, Config: cfg, Module: wasm, Primary: primaryAddr}); err != nil {
					b.Fatal(err)
				}
			}
			bind(primary, RolePrimary, "")
			bind(secondary, RoleSecondary, primary.Addr())
			if _, err := secondary.Invoke(ctx, []byte("w k 16 1")); err != nil {
				b.Fatal(err)
			}
			const loops = 200
			in := []byte(fmt.Sprintf("r k %d", loops))
			var samples []time.Duration
			for b.Loop() {
				start := time.Now()
				if _, err := secondary.Invoke(ctx, in); err != nil {
					b.Fatal(err)
				}
				samples = append(samples, time.Since(start)/loops)
			}
			b.ReportMetric(float64(p50(samples).Nanoseconds())/1000, "p50-µs/op")
		})
	}
}

// benchContainer serves a container on a Unix socket or on TCP loopback.
func benchContainer(b *testing.B, network string) *Client {
	b.Helper()
	addr := "tcp://127.0.0.1:0"
	if network == "unix" {
		addr = "unix://" + filepath.Join(b.TempDir(), "c.sock")
	}
	ln, err := wire.Listen(addr)
	if err != nil {
		b.Fatal(err)
	}
	c := New(Options{CacheDir: compileCache})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln, time.Second) }()
	cl, err := Dial(context.Background(), wire.AddrOf(ln.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close(); cancel(); <-done })
	return cl
}

// BenchmarkInvokeHandoff is the cost of running workers on their slots'
// locked threads in CPU-limited cgroups (slots) against running them on
// the calling goroutine (inline, no limits), with 32 concurrent requests of
// a trivial C guest on 10 workers. See RATIONALE.md, "Workers and cgroups".
func BenchmarkInvokeHandoff(b *testing.B) {
	for _, mode := range []string{"inline", "slots"} {
		b.Run(mode, func(b *testing.B) {
			o := fixtureOptions{maxWorkers: 10, maxQueue: 1024, timeout: time.Minute}
			if mode == "slots" {
				placer, err := testLimits(b).Workers(10, 1000, 128)
				if err != nil {
					b.Fatal(err)
				}
				o.placer = placer
			}
			f := newFixture(b, "c/hello", o)
			f.mustInvoke("warm")
			b.SetParallelism(16)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := f.pool.Invoke(context.Background(), []byte("x")); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}
