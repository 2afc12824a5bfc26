package baseline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// ClusterOptions configure a Cluster.
type ClusterOptions struct {
	// Binary is the xfaas executable; the default is the running one.
	Binary string
	// WorkerArgs are the arguments that make Binary a worker. The default
	// is ["bench-worker"].
	WorkerArgs []string
	// Module is the function's wasm module. Required.
	Module []byte
	// Function names the function (its Redis key prefix). Required.
	Function string
	// Redis is the Redis server's address. Required.
	Redis string
	// Containers is how many traditional containers to start. The default
	// is 1.
	Containers int
	// Dir holds the module file and the shared compilation cache. Required.
	Dir string
	// Stderr receives the workers' stderr. The default discards it.
	Stderr io.Writer
}

// Cluster is N traditional containers of one function: separate worker
// processes, one wasm instance each, with their state in Redis. Invoke
// balances requests over them the way a FaaS front end does.
type Cluster struct {
	opts    ClusterOptions
	module  string
	client  *http.Client
	mu      sync.Mutex
	workers []*proc
	next    atomic.Uint64
	closed  atomic.Bool
}

// proc is one running worker process.
type proc struct {
	cmd      *exec.Cmd
	url      string
	pid      int
	inflight atomic.Int32
	done     chan struct{}
}

// NewCluster prepares a cluster; Start starts its containers.
func NewCluster(opts ClusterOptions) (*Cluster, error) {
	if len(opts.Module) == 0 || opts.Function == "" || opts.Redis == "" || opts.Dir == "" {
		return nil, errors.New("baseline cluster: module, function, redis and dir are required")
	}
	if opts.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		opts.Binary = exe
	}
	if opts.WorkerArgs == nil {
		opts.WorkerArgs = []string{"bench-worker"}
	}
	opts.Containers = max(opts.Containers, 1)
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	c := &Cluster{opts: opts, module: filepath.Join(opts.Dir, opts.Function+".wasm"), client: newClient()}
	if err := os.WriteFile(c.module, opts.Module, 0o644); err != nil {
		return nil, err
	}
	return c, nil
}

// newClient keeps enough idle connections for every closed-loop client.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}
}

// Start starts the cluster's containers, a few at a time.
func (c *Cluster) Start(ctx context.Context) error {
	procs := make([]*proc, c.opts.Containers)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := range procs {
		g.Go(func() (err error) {
			procs[i], err = c.spawn(gctx)
			return err
		})
	}
	err := g.Wait()
	c.mu.Lock()
	for _, p := range procs {
		if p != nil {
			c.workers = append(c.workers, p)
		}
	}
	c.mu.Unlock()
	return err
}

// spawn starts one worker process and waits for its ready line.
func (c *Cluster) spawn(ctx context.Context) (*proc, error) {
	args := append(append([]string{}, c.opts.WorkerArgs...), "--module", c.module, "--function", c.opts.Function,
		"--redis", c.opts.Redis, "--cache-dir", filepath.Join(c.opts.Dir, "cache"))
	cmd := exec.Command(c.opts.Binary, args...)
	cmd.Stderr = c.opts.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	lines := make(chan ReadyLine, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var rl ReadyLine
			if json.Unmarshal(sc.Bytes(), &rl) == nil && rl.Event == "ready" {
				lines <- rl
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	select {
	case rl := <-lines:
		p.url = "http://" + rl.Addr + "/invoke"
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("worker exited before it was ready: %v", cmd.ProcessState)
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, errors.New("worker not ready within 30s")
	}
}

// stop ends a worker (SIGTERM, SIGKILL after 5 s) and waits for it.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Invoke sends one request to a container: the next idle one in
// round-robin order, or the next one when all are busy (it queues there,
// since a traditional container runs one request at a time).
func (c *Cluster) Invoke(ctx context.Context, body []byte) ([]byte, error) {
	c.mu.Lock()
	ws := c.workers
	c.mu.Unlock()
	if len(ws) == 0 {
		return nil, errors.New("baseline cluster has no containers")
	}
	start := c.next.Add(1)
	p := ws[start%uint64(len(ws))]
	for i := range uint64(len(ws)) {
		if q := ws[(start+i)%uint64(len(ws))]; q.inflight.Load() == 0 {
			p = q
			break
		}
	}
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	return post(ctx, c.client, p.url, body)
}

func post(ctx context.Context, client *http.Client, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(out))
	}
	return out, nil
}

// ColdStart starts one more container, sends it body and stops it: the
// time from the process's exec to the first answer is a traditional
// container's cold start (the module comes from the shared compilation
// cache, as xfaas's containers' do).
func (c *Cluster) ColdStart(ctx context.Context, body []byte) (time.Duration, error) {
	start := time.Now()
	p, err := c.spawn(ctx)
	if err != nil {
		return 0, err
	}
	defer p.stop()
	if _, err := post(ctx, c.client, p.url, body); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Pids returns the containers' process ids.
func (c *Cluster) Pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := make([]int, len(c.workers))
	for i, p := range c.workers {
		pids[i] = p.pid
	}
	return pids
}

// Close stops every container and waits for them. It is idempotent.
func (c *Cluster) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.mu.Lock()
	ws := c.workers
	c.workers = nil
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ws {
		wg.Go(p.stop)
	}
	wg.Wait()
	c.client.CloseIdleConnections()
	return nil
}
