package cgroup

import (
	"runtime"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// benchContainer is a container group for a benchmark, below hostGroup's.
func benchContainer(b *testing.B) (*Hierarchy, *Group) {
	b.Helper()
	h, parent := hostGroup(b)
	c := parent.Child("c1")
	if err := c.Create(Resources(1000, 256<<20, 0)); err != nil {
		b.Fatal(err)
	}
	if h.Mode() == V2 {
		b.Fatal("on v2 the benchmark process would have to join the container group; these benchmarks are written for v1")
	}
	return h, c
}

// BenchmarkCreateWorker is what a container pays per worker slot: a worker
// group with a 100-millicore quota. Each is removed (untimed) before the
// next, so the container has as few children as in production.
func BenchmarkCreateWorker(b *testing.B) {
	_, c := benchContainer(b)
	res := &specs.LinuxResources{CPU: MilliCPU(100)}
	w := c.Thread("w0")
	for b.Loop() {
		if err := w.Create(res); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := w.Remove(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkAddThread moves a locked thread between two worker groups, as a
// slot does once when it starts.
func BenchmarkAddThread(b *testing.B) {
	h, c := benchContainer(b)
	ws := []*Group{c.Thread("w0"), c.Thread("w1")}
	for _, w := range ws {
		if err := w.Create(&specs.LinuxResources{CPU: MilliCPU(1000)}); err != nil {
			b.Fatal(err)
		}
	}
	self, err := h.Self()
	if err != nil {
		b.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	defer self.AddThread(tid)
	i := 0
	for b.Loop() {
		if err := ws[i%2].AddThread(tid); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRemoveWorker is the cost of removing an empty worker group.
func BenchmarkRemoveWorker(b *testing.B) {
	_, c := benchContainer(b)
	res := &specs.LinuxResources{CPU: MilliCPU(100)}
	w := c.Thread("w0")
	for b.Loop() {
		b.StopTimer()
		if err := w.Create(res); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := w.Remove(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStats reads a container group's accounting, as the Nomad
// driver's TaskStats does every collection interval.
func BenchmarkStats(b *testing.B) {
	_, c := benchContainer(b)
	for b.Loop() {
		if _, err := c.Stats(); err != nil {
			b.Fatal(err)
		}
	}
}
