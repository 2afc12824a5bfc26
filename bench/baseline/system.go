package baseline

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/xfaas/xfaas/bench"
	"github.com/xfaas/xfaas/bench/workload"
)

// SystemOptions configure a System.
type SystemOptions struct {
	// Dir holds the Redis server's and the containers' files. Required.
	Dir string
	// Binary and WorkerArgs run a worker, as in ClusterOptions.
	Binary     string
	WorkerArgs []string
	// Stderr receives the workers' and Redis's complaints.
	Stderr io.Writer
}

// System is the baseline as a bench.System: a local redis-server and,
// per deployed function, a Cluster of one-worker containers.
type System struct {
	opts     SystemOptions
	redis    *Redis
	mu       sync.Mutex
	clusters map[string]*Cluster
}

var _ bench.System = (*System)(nil)

// NewSystem starts the Redis server. Close stops it and every container.
func NewSystem(ctx context.Context, opts SystemOptions) (*System, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("baseline: a directory is required")
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "redis"), 0o755); err != nil {
		return nil, err
	}
	r, err := StartRedis(ctx, filepath.Join(opts.Dir, "redis"))
	if err != nil {
		return nil, err
	}
	return &System{opts: opts, redis: r, clusters: map[string]*Cluster{}}, nil
}

// Name is "redis".
func (s *System) Name() string { return "redis" }

// RedisPid is the Redis server's process id.
func (s *System) RedisPid() int { return s.redis.Pid() }

// Deploy starts fn.MaxWorkers × fn.MaxContainers one-worker containers.
func (s *System) Deploy(ctx context.Context, fn bench.Function) (bench.Invoker, error) {
	c, err := s.cluster(fn.Name, fn.Module, fn.Workers())
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.clusters[fn.Name]; old != nil {
		old.Close()
	}
	s.clusters[fn.Name] = c
	return c.Invoke, nil
}

func (s *System) cluster(name string, module []byte, n int) (*Cluster, error) {
	return NewCluster(ClusterOptions{Binary: s.opts.Binary, WorkerArgs: s.opts.WorkerArgs, Module: module,
		Function: name, Redis: s.redis.Addr, Containers: n, Dir: s.opts.Dir, Stderr: s.opts.Stderr})
}

// Undeploy stops fn's containers.
func (s *System) Undeploy(_ context.Context, name string) error {
	s.mu.Lock()
	c := s.clusters[name]
	delete(s.clusters, name)
	s.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

// ColdStart measures Traditional: a new container process answering its
// first request (the module compiled once before, from the shared cache).
func (s *System) ColdStart(ctx context.Context, kind string, samples int) ([]time.Duration, error) {
	if kind != bench.Traditional {
		return nil, bench.ErrNotMine
	}
	c, err := s.cluster("bench-traditional", workload.All()[0].Module, 1)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := make([]time.Duration, 0, samples)
	for i := range samples + 1 { // the first fills the compilation cache
		d, err := c.ColdStart(ctx, workload.Request)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

// MemoryPerWorker is the resident memory of a traditional container, which
// is one worker: the mean VmRSS of two RO containers after serving.
func (s *System) MemoryPerWorker(ctx context.Context) (float64, string, error) {
	c, err := s.cluster("bench-memory", workload.All()[0].Module, 2)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		return 0, "", err
	}
	if _, err := c.Invoke(ctx, workload.Init(1024)); err != nil {
		return 0, "", err
	}
	for range 20 {
		if _, err := c.Invoke(ctx, workload.Request); err != nil {
			return 0, "", err
		}
	}
	var sum int64
	pids := c.Pids()
	for _, pid := range pids {
		rss, err := bench.RSS(pid)
		if err != nil {
			return 0, "", err
		}
		sum += rss
	}
	return float64(sum) / float64(len(pids)), "VmRSS of a traditional container process (one wasm worker, its Go runtime, " +
		"HTTP server and Redis connections) after serving 20 RO requests, mean of 2; the Redis server is not counted", nil
}

// Close stops every container and the Redis server.
func (s *System) Close() error {
	s.mu.Lock()
	cs := s.clusters
	s.clusters = map[string]*Cluster{}
	s.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	return s.redis.Close()
}
