package placement

import "testing"

func TestSizeHolds(t *testing.T) {
	pool := Size{Workers: 10, WorkerCPUMillicores: 100, WorkerMemoryMB: 128} // 2000 millicores, 1376 MiB
	for _, tc := range []struct {
		need Size
		want bool
	}{
		{Size{}, true}, // the defaults are the pool job's
		{pool, true},
		{Size{Workers: 20, WorkerCPUMillicores: 50, WorkerMemoryMB: 64}, true},
		// On cgroup v1 a worker's quota above the container's cannot be set.
		{Size{Workers: 1, WorkerCPUMillicores: 2001, WorkerMemoryMB: 128}, false},
		{Size{Workers: 10, WorkerCPUMillicores: 101, WorkerMemoryMB: 128}, false},
		{Size{Workers: 10, WorkerCPUMillicores: 100, WorkerMemoryMB: 512}, false},
	} {
		if got := pool.Holds(tc.need); got != tc.want {
			t.Errorf("%s holds %s = %v; want %v", pool, tc.need, got, tc.want)
		}
	}
}

func TestSizeMeta(t *testing.T) {
	s := Size{Workers: 3, WorkerCPUMillicores: 250, WorkerMemoryMB: 64}
	if got := sizeOf(s.meta()); got != s {
		t.Fatalf("sizeOf(meta of %s) = %s", s, got)
	}
	for _, meta := range []map[string]string{
		nil,
		{"max_workers": "3", "worker_cpu_millicores": "250"},
		{"max_workers": "3", "worker_cpu_millicores": "x", "worker_memory_mb": "64"},
		{"max_workers": "0", "worker_cpu_millicores": "250", "worker_memory_mb": "64"},
	} {
		if got := sizeOf(meta); got != (Size{}) {
			t.Errorf("sizeOf(%v) = %+v; want no size", meta, got)
		}
	}
}
