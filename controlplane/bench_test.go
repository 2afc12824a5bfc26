package controlplane_test

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/cptest"
)

// These benchmarks drive the control plane's HTTP API from the same
// process as the control plane; `xfaas bench` measures from another one.

func p50(samples []time.Duration) time.Duration {
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchClient keeps enough idle connections for parallel load.
var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func post(b *testing.B, e *cptest.Env, fn, label, body string) *http.Response {
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/v1/functions/"+fn+"/invoke", strings.NewReader(body))
	if label != "" {
		token, err := e.Keys[fn].Seal(fn, label)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("X-Xfaas-Session", token)
	}
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	// Read to the end: an unread body keeps the connection from being reused.
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("invoke %s: %s", fn, resp.Status)
	}
	return resp
}

// BenchmarkWarmInvoke is one client invoking a trivial C function through
// the HTTP API, one request at a time. Metric p50-µs.
//
// The worker's CPU quota covers its thread, which also reads and answers
// the requests it serves, so a client that sends each request as soon as
// the last is answered drives one worker to its quota: at the default 100
// millicores it is throttled again and again, and that, not the request
// path, sets the p50 (RATIONALE.md, "What a worker's quota
// covers"). worker=1000m gives the worker room to show the path's latency.
func BenchmarkWarmInvoke(b *testing.B) {
	for _, c := range []struct{ name, config string }{
		{"worker=100m", ""},
		{"worker=1000m", `{"worker_cpu_millicores": 1000}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := cptest.Start(b, cptest.Options{})
			e.Deploy("hello", "c/hello", c.config)
			post(b, e, "hello", "", "")
			var samples []time.Duration
			for b.Loop() {
				start := time.Now()
				post(b, e, "hello", "", "")
				samples = append(samples, time.Since(start))
			}
			b.ReportMetric(float64(p50(samples).Microseconds()), "p50-µs")
		})
	}
}

// BenchmarkInvokeThroughput is 32 concurrent clients invoking a trivial C
// function through the HTTP API. Metric req/s.
func BenchmarkInvokeThroughput(b *testing.B) {
	e := cptest.Start(b, cptest.Options{})
	e.Deploy("hello", "c/hello", "")
	post(b, e, "hello", "", "")
	b.SetParallelism(16)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			post(b, e, "hello", "", "")
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkColdSession times the first request of a new session: a pool
// container claimed, bound as primary (module from the compilation cache),
// and the request served. The pool refills between iterations, untimed.
// Metric p50-ms.
func BenchmarkColdSession(b *testing.B) {
	e := cptest.Start(b, cptest.Options{Nodes: 2, Pool: 2})
	e.Deploy("hello", "c/hello", "")
	post(b, e, "hello", "warm-up", "")
	var samples []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		waitPools(b, e, 2)
		i++
		b.StartTimer()
		start := time.Now()
		post(b, e, "hello", "user-"+strconv.Itoa(i), "")
		samples = append(samples, time.Since(start))
		b.StopTimer()
		evict(b, e, "hello", "user-"+strconv.Itoa(i))
		b.StartTimer()
	}
	b.ReportMetric(float64(p50(samples).Microseconds())/1000, "p50-ms")
}

// BenchmarkCopySession times a request that needs a new secondary: the
// session's only worker is busy, so the request claims a pool container,
// binds it as a secondary and is served there. Metric p50-ms.
func BenchmarkCopySession(b *testing.B) {
	e := cptest.Start(b, cptest.Options{Nodes: 1, Pool: 2})
	e.Deploy("spin", "test/spin", `{"max_workers": 1, "max_containers": 2}`)
	var samples []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		label := "user-" + strconv.Itoa(i)
		post(b, e, "spin", label, "0") // the primary exists
		waitPools(b, e, 2)
		var busy atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			busy.Store(true)
			post(b, e, "spin", label, "300")
		}()
		waitBusy(b, e, "spin")
		b.StartTimer()
		start := time.Now()
		resp := post(b, e, "spin", label, "0")
		samples = append(samples, time.Since(start))
		b.StopTimer()
		if role := resp.Header.Get(controlplane.HeaderRole); role != "secondary" {
			b.Fatalf("served by %s; want a new secondary", role)
		}
		<-done
		evict(b, e, "spin", label)
		b.StartTimer()
	}
	b.ReportMetric(float64(p50(samples).Microseconds())/1000, "p50-ms")
}

func waitPools(b *testing.B, e *cptest.Env, size int) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		nodes, _ := e.Backend.Nodes(b.Context())
		full := true
		for _, n := range nodes {
			full = full && n.Pool >= size
		}
		if full {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("pools did not refill within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitBusy waits until some session of fn has a request in flight.
func waitBusy(b *testing.B, e *cptest.Env, fn string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var sessions []controlplane.SessionInfo
		e.GetJSON("/v1/functions/"+fn+"/sessions", &sessions)
		for _, s := range sessions {
			if s.InFlight > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no request in flight within 30s")
		}
		time.Sleep(time.Millisecond)
	}
}

func evict(b *testing.B, e *cptest.Env, fn, label string) {
	req, _ := http.NewRequest(http.MethodDelete, e.URL+"/v1/functions/"+fn+"/sessions/"+e.SessionID(fn, label), nil)
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("evict: %s", resp.Status)
	}
}

func p99(samples []time.Duration) time.Duration {
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// BenchmarkColdSessionRestore times ColdSessions of empty sessions and of
// sessions evicted with 1 MiB of state (one value) in the same run, taking
// them in alternating order so that neither always follows the other's
// container churn; the timed request is the same small write in both.
// Metrics: p50 of each and what the restore adds.
func BenchmarkColdSessionRestore(b *testing.B) {
	e := cptest.Start(b, cptest.Options{Nodes: 1, Pool: 2})
	e.Deploy("store", "test/stateloop", "")
	post(b, e, "store", "warm-up", "w warm 1 1")
	var empty, restored []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		full, fresh := "full-"+strconv.Itoa(i), "fresh-"+strconv.Itoa(i)
		post(b, e, "store", full, "w big 1048576 1")
		evict(b, e, "store", full)
		timeFirst := func(label string, into *[]time.Duration) {
			waitPools(b, e, 2)
			b.StartTimer()
			start := time.Now()
			post(b, e, "store", label, "w small 16 1")
			*into = append(*into, time.Since(start))
			b.StopTimer()
		}
		if i%2 == 0 {
			timeFirst(full, &restored)
			timeFirst(fresh, &empty)
		} else {
			timeFirst(fresh, &empty)
			timeFirst(full, &restored)
		}
		post(b, e, "store", full, "r big 1") // the 1 MiB came back
		evict(b, e, "store", full)
		evict(b, e, "store", fresh)
		b.StartTimer()
	}
	pe, pr := p50(empty), p50(restored)
	// The paired difference is steadier than the difference of the p50s.
	diffs := make([]time.Duration, len(empty))
	for i := range diffs {
		diffs[i] = restored[i] - empty[i]
	}
	b.ReportMetric(float64(pe.Microseconds())/1000, "p50-empty-ms")
	b.ReportMetric(float64(pr.Microseconds())/1000, "p50-1MiB-ms")
	b.ReportMetric(float64(p50(diffs).Microseconds())/1000, "restore-adds-ms")
}

// BenchmarkDurability compares the write path of durability "checkpoint"
// and "log" in the same run. Each iteration: one client's 1,000 writes one
// at a time (latency p50, p99), then 16 concurrent clients' 4,000 writes to
// the same session (throughput, with group commit for "log"). Every request
// is one mode-0 write. Run with -benchtime 1x or a few x.
func BenchmarkDurability(b *testing.B) {
	for _, durability := range []string{"checkpoint", "log"} {
		b.Run(durability, func(b *testing.B) {
			e := cptest.Start(b, cptest.Options{Nodes: 1, Pool: 1})
			e.Deploy("kv", "c/kv", `{"durability": "`+durability+`"}`)
			post(b, e, "kv", "s", "set warm 1")
			var samples []time.Duration
			var rate float64
			for b.Loop() {
				samples = samples[:0]
				for i := range 1000 {
					start := time.Now()
					post(b, e, "kv", "s", "set k"+strconv.Itoa(i%100)+" value")
					samples = append(samples, time.Since(start))
				}
				const clients, each = 16, 250
				var wg sync.WaitGroup
				start := time.Now()
				for c := range clients {
					wg.Go(func() {
						for i := range each {
							post(b, e, "kv", "s", "set c"+strconv.Itoa(c)+"-"+strconv.Itoa(i%50)+" value")
						}
					})
				}
				wg.Wait()
				rate = clients * each / time.Since(start).Seconds()
			}
			b.ReportMetric(float64(p50(samples).Microseconds()), "p50-µs")
			b.ReportMetric(float64(p99(samples).Microseconds()), "p99-µs")
			b.ReportMetric(rate, "req/s")
		})
	}
}
