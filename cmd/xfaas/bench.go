package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/bench"
	"github.com/xfaas/xfaas/bench/baseline"
	"github.com/xfaas/xfaas/bench/report"
	"github.com/xfaas/xfaas/bench/workload"
	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/internal/hint"
)

func init() {
	commands["bench"] = command{summary: "reproduce the paper's evaluation against a Redis-backed baseline (writes results.json, report.md, plots)", run: runBench}
	commands["bench-worker"] = command{summary: "one traditional container of the bench baseline", run: runBenchWorker, hidden: true}
}

// benchFlags are the flags of `xfaas bench`: the mode's defaults, then
// overrides for short runs (tests) and experiments.
type benchFlags struct {
	quick              bool
	out, data          string
	workloads          string
	clients, access    string
	rates              string
	coldSamples        int
	duration, warmup   time.Duration
	burstBefore, after time.Duration
	burstLimits        string
	cgroups, verbose   bool
	cpuProfile         string
}

func runBench(ctx context.Context, env *cli, args []string) error {
	var f benchFlags
	cfg := bench.DefaultConfig(true)
	fs := newFlags(env, "bench", "[--quick] --out DIR [flags]")
	fs.BoolVar(&f.quick, "quick", false, "the quick run (under 5 minutes on 2 cores) instead of the full one")
	fs.StringVar(&f.out, "out", "bench-results", "directory for results.json, report.md and the plots")
	fs.StringVar(&f.data, "data", "", "working directory for the platform, Redis and the containers (default: a temporary one, removed)")
	fs.IntVar(&cfg.ValueSize, "value-size", 1024, "size of the workloads' value in bytes (8 B to 1 MiB)")
	fs.IntVar(&cfg.WorkersPerContainer, "workers", 10, "xfaas workers per container (max_workers)")
	fs.IntVar(&cfg.Containers, "containers", 8, "xfaas containers per session (max_containers); the baseline runs workers x containers")
	fs.StringVar(&f.workloads, "workloads", "ro,rmw,rmw_linear", "workloads to run")
	fs.StringVar(&f.clients, "clients", "", "closed-loop client counts, e.g. 1,8,32,80 (default: the mode's)")
	fs.StringVar(&f.access, "access-clients", "", "client counts of the access-latency sweep (default: the mode's)")
	fs.StringVar(&f.rates, "rates", "", "open-loop rates per second, e.g. 100,400 (default: the mode's)")
	fs.IntVar(&f.coldSamples, "cold-samples", 0, "samples per cold-start kind (default: the mode's)")
	fs.DurationVar(&f.duration, "duration", 0, "measured time of each load point (default: the mode's)")
	fs.DurationVar(&f.warmup, "warmup", -1, "unrecorded time before each load point (default: the mode's)")
	fs.DurationVar(&f.burstBefore, "burst-before", 0, "burst experiment: time at the low rate (default 5s)")
	fs.DurationVar(&f.after, "burst-after", 0, "burst experiment: time at the high rate (default: the mode's)")
	fs.StringVar(&f.burstLimits, "burst-limits", "", "burst experiment: vertical limits (default 1,2,5,10)")
	fs.BoolVar(&f.cgroups, "cgroups", false, "run xfaas workers under their cgroup CPU quota (the baseline has none; off keeps the comparison even)")
	fs.BoolVar(&f.verbose, "verbose", false, "show the platform's and the workers' logs")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (control plane and load generator) to FILE")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if err := f.apply(&cfg, fs); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err // before the platform and Redis start
	}
	cfg.Progress = env.stderr
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return benchAndReport(ctx, env, cfg, f)
}

// apply fills cfg from the mode and the overrides.
func (f *benchFlags) apply(cfg *bench.Config, fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	mode := bench.DefaultConfig(f.quick)
	mode.ValueSize, mode.WorkersPerContainer, mode.Containers = cfg.ValueSize, cfg.WorkersPerContainer, cfg.Containers
	*cfg = mode
	cfg.Workloads = strings.Split(f.workloads, ",")
	var err error
	if f.clients != "" {
		cfg.Clients, err = intList(f.clients)
	}
	if f.access != "" && err == nil {
		cfg.AccessClients, err = intList(f.access)
	}
	if f.burstLimits != "" && err == nil {
		cfg.BurstLimits, err = intList(f.burstLimits)
	}
	if f.rates != "" && err == nil {
		var rs []int
		rs, err = intList(f.rates)
		cfg.Rates = cfg.Rates[:0]
		for _, r := range rs {
			cfg.Rates = append(cfg.Rates, float64(r))
		}
	}
	if f.coldSamples > 0 {
		cfg.ColdSamples = f.coldSamples
	}
	if f.duration > 0 {
		cfg.Duration = f.duration
	}
	if set["warmup"] {
		cfg.Warmup = max(f.warmup, 0)
	}
	if f.burstBefore > 0 {
		cfg.BurstBefore = f.burstBefore
	}
	if f.after > 0 {
		cfg.BurstAfter = f.after
	}
	return err
}

func intList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", s, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchAndReport starts both systems, runs the benchmark, stops them and
// writes the report.
func benchAndReport(ctx context.Context, env *cli, cfg bench.Config, f benchFlags) error {
	data := f.data
	if data == "" {
		tmp, err := os.MkdirTemp("", "xfaas-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		data = tmp
	}
	logOut := io.Discard
	if f.verbose {
		logOut = env.stderr
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "xfaas", Level: hclog.Warn, Output: logOut})
	fmt.Fprintf(env.stderr, "bench: starting xfaas (control plane, NATS, containers) and the baseline (redis-server) in %s\n", data)
	xs, err := startXfaasSystem(ctx, filepath.Join(data, "xfaas"), !f.cgroups, log)
	if err != nil {
		return fmt.Errorf("start xfaas: %w", err)
	}
	defer xs.close()
	rs, err := baseline.NewSystem(ctx, baseline.SystemOptions{Dir: filepath.Join(data, "baseline"), Stderr: logOut})
	if err != nil {
		return fmt.Errorf("start the baseline: %w", err)
	}
	defer rs.Close()
	res, err := bench.Run(ctx, cfg, xs, rs)
	if res != nil {
		res.Machine.Redis = redisVersion()
		if werr := report.Write(f.out, res); werr != nil {
			return errors.Join(err, werr)
		}
		fmt.Fprintf(env.stderr, "bench: wrote %s and %s\n", filepath.Join(f.out, report.ResultsFile), filepath.Join(f.out, report.ReportFile))
	}
	return err
}

func redisVersion() string {
	out, err := exec.Command(baseline.RedisBinary, "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func runBenchWorker(ctx context.Context, env *cli, args []string) error {
	var o baseline.WorkerOptions
	fs := newFlags(env, "bench-worker", "--module FILE --redis ADDR [flags]")
	fs.StringVar(&o.Module, "module", "", "wasm module to serve")
	fs.StringVar(&o.Function, "function", "bench", "function name (its Redis key prefix)")
	fs.StringVar(&o.Redis, "redis", "", "Redis server address")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:0", "HTTP address")
	fs.StringVar(&o.CacheDir, "cache-dir", "", "compilation cache shared by the containers")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Second, "bound of one invocation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return baseline.ServeWorker(ctx, o, env.stdout)
}

// xfaasSystem is xfaas as a bench.System: the real control plane with
// NATS, the local placement backend and the memory registry, started
// in-process as `xfaas dev` does, driven through its HTTP API.
type xfaasSystem struct {
	p      *platform
	local  *placement.Local
	api    string
	client *http.Client
	stop   context.CancelFunc
	served chan struct{}

	mu   sync.Mutex
	keys map[string]hint.Keyset
}

var _ bench.System = (*xfaasSystem)(nil)

// benchLabel is the session label of every benchmark request: one session.
const benchLabel = "bench"

func startXfaasSystem(ctx context.Context, data string, noCgroups bool, log hclog.Logger) (*xfaasSystem, error) {
	cfg := defaultPlatformConfig()
	cfg.Listen, cfg.Data, cfg.Placement.NoCgroups = "127.0.0.1:0", data, noCgroups
	p, err := startPlatform(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	local, _ := p.backend.(*placement.Local)
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	x := &xfaasSystem{p: p, local: local, api: p.apiURL(), stop: stop, served: make(chan struct{}), keys: map[string]hint.Keyset{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}}}
	go func() {
		defer close(x.served)
		p.serve(sctx)
	}()
	return x, nil
}

func (x *xfaasSystem) close() {
	x.stop()
	<-x.served
	x.client.CloseIdleConnections()
	x.p.close()
}

func (x *xfaasSystem) Name() string { return "xfaas" }

func (x *xfaasSystem) Deploy(ctx context.Context, fn bench.Function) (bench.Invoker, error) {
	if err := x.deploy(ctx, fn.Name, fn.Module, fn.MaxWorkers, fn.MaxContainers); err != nil {
		return nil, err
	}
	token, err := x.token(fn.Name, benchLabel)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, body []byte) ([]byte, error) {
		out, _, err := x.invoke(ctx, fn.Name, token, body)
		return out, err
	}, nil
}

func (x *xfaasSystem) deploy(ctx context.Context, name string, module []byte, workers, containers int) error {
	ks := hint.Generate()
	vk, err := ks.VerifyKey().MarshalText()
	if err != nil {
		return err
	}
	cfg := fmt.Appendf(nil, `{"max_workers": %d, "max_containers": %d}`, workers, containers)
	if _, err := x.p.srv.Deploy(ctx, name, module, cfg, string(vk)); err != nil {
		return err
	}
	x.mu.Lock()
	x.keys[name] = ks
	x.mu.Unlock()
	return nil
}

func (x *xfaasSystem) token(fn, label string) (string, error) {
	x.mu.Lock()
	ks, ok := x.keys[fn]
	x.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("function %s is not deployed", fn)
	}
	return ks.Seal(fn, label)
}

// invoke calls fn in the session of token and returns the output and the
// role of the container that served it.
func (x *xfaasSystem) invoke(ctx context.Context, fn, token string, body []byte) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.api+"/v1/functions/"+fn+"/invoke", bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set(hint.Header, token)
	resp, err := x.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(out))
	}
	return out, resp.Header.Get(controlplane.HeaderRole), nil
}

// call sends a management request and checks its status.
func (x *xfaasSystem) call(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, x.api+path, nil)
	if err != nil {
		return err
	}
	resp, err := x.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if v != nil {
		return json.Unmarshal(data, v)
	}
	return nil
}

func (x *xfaasSystem) Undeploy(ctx context.Context, name string) error {
	x.mu.Lock()
	delete(x.keys, name)
	x.mu.Unlock()
	return x.call(ctx, http.MethodDelete, "/v1/functions/"+name, nil)
}

func (x *xfaasSystem) evict(ctx context.Context, fn, token string) error {
	return x.call(ctx, http.MethodDelete, "/v1/functions/"+fn+"/sessions/"+string(hint.SessionIDOf(token)), nil)
}

func (x *xfaasSystem) sessions(ctx context.Context, fn string) ([]controlplane.SessionInfo, error) {
	var ss []controlplane.SessionInfo
	return ss, x.call(ctx, http.MethodGet, "/v1/functions/"+fn+"/sessions", &ss)
}

// ColdStart measures Fork, ColdSession (empty, and restoring 1 MiB from a
// checkpoint) and CopySession.
func (x *xfaasSystem) ColdStart(ctx context.Context, kind string, samples int) ([]time.Duration, error) {
	switch kind {
	case bench.Fork:
		if err := x.waitPools(ctx); err != nil { // no container start competes for the CPU
			return nil, err
		}
		return bench.MeasureFork(ctx, workload.All()[0].Module, workload.Request, samples)
	case bench.ColdSession:
		return x.coldSessions(ctx, samples)
	case bench.CopySession:
		return x.copySessions(ctx, samples)
	case bench.ColdSessionRestore:
		return x.coldRestores(ctx, samples)
	}
	return nil, bench.ErrNotMine
}

// coldSessions times the first request of new sessions (RO, answered from
// an empty state): a pool container claimed, bound as primary, the request
// served. The pools refill between samples, untimed, as a warm platform's
// would; each session is evicted after.
func (x *xfaasSystem) coldSessions(ctx context.Context, samples int) ([]time.Duration, error) {
	const fn = "bench-cold-session"
	if err := x.deploy(ctx, fn, workload.All()[0].Module, 10, 1); err != nil {
		return nil, err
	}
	defer x.Undeploy(context.WithoutCancel(ctx), fn)
	var out []time.Duration
	for i := range samples + 1 { // the first compiles the module into the cache
		token, err := x.token(fn, "cold-"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		if err := x.waitPools(ctx); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if _, _, err := x.invoke(ctx, fn, token, workload.Request); err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, time.Since(t0))
		}
		if err := x.evict(ctx, fn, token); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// coldRestores times the first request of a session that was evicted with
// 1 MiB of state: a pool container claimed, bound as primary, the
// checkpoint read from the node (where the session left it) and restored,
// the request served. Each sample is a fresh session.
func (x *xfaasSystem) coldRestores(ctx context.Context, samples int) ([]time.Duration, error) {
	const fn = "bench-cold-restore"
	if err := x.deploy(ctx, fn, workload.StateLoop(), 10, 1); err != nil {
		return nil, err
	}
	defer x.Undeploy(context.WithoutCancel(ctx), fn)
	var out []time.Duration
	for i := range samples + 1 {
		token, err := x.token(fn, "restore-"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		if _, _, err := x.invoke(ctx, fn, token, []byte("w big 1048576 1")); err != nil {
			return nil, err
		}
		if err := x.evict(ctx, fn, token); err != nil {
			return nil, err
		}
		if err := x.waitPools(ctx); err != nil {
			return nil, err
		}
		t0 := time.Now()
		out1, _, err := x.invoke(ctx, fn, token, []byte("r big 1"))
		d := time.Since(t0)
		if err != nil {
			return nil, err
		}
		if string(out1) != "1" {
			return nil, fmt.Errorf("restored session answered %q", out1)
		}
		if i > 0 {
			out = append(out, d)
		}
		if err := x.evict(ctx, fn, token); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// copySessions times a request that needs a new secondary: the session's
// only worker is busy (spin), so the request claims a pool container, binds
// it as a secondary and is served there.
func (x *xfaasSystem) copySessions(ctx context.Context, samples int) ([]time.Duration, error) {
	const fn = "bench-copy-session"
	if err := x.deploy(ctx, fn, workload.Spin(), 1, 2); err != nil {
		return nil, err
	}
	defer x.Undeploy(context.WithoutCancel(ctx), fn)
	var out []time.Duration
	for i := range samples + 1 {
		d, err := x.copySession(ctx, fn, "copy-"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

func (x *xfaasSystem) copySession(ctx context.Context, fn, label string) (time.Duration, error) {
	token, err := x.token(fn, label)
	if err != nil {
		return 0, err
	}
	if _, _, err := x.invoke(ctx, fn, token, []byte("0")); err != nil { // the primary
		return 0, err
	}
	if err := x.waitPools(ctx); err != nil {
		return 0, err
	}
	busy := make(chan error, 1)
	go func() {
		_, _, err := x.invoke(ctx, fn, token, []byte("400"))
		busy <- err
	}()
	if err := x.waitInFlight(ctx, fn); err != nil {
		return 0, err
	}
	t0 := time.Now()
	_, role, err := x.invoke(ctx, fn, token, []byte("0"))
	d := time.Since(t0)
	err = errors.Join(err, <-busy)
	if err == nil && role != "secondary" {
		err = fmt.Errorf("served by the %s; want a new secondary", role)
	}
	return d, errors.Join(err, x.evict(ctx, fn, token))
}

// waitPools waits until every node's pool is full again.
func (x *xfaasSystem) waitPools(ctx context.Context) error {
	want := x.p.cfg.Placement.Pool
	return poll(ctx, 30*time.Second, "pools to refill", func() (bool, error) {
		nodes, err := x.p.backend.Nodes(ctx)
		if err != nil {
			return false, err
		}
		return !slices.ContainsFunc(nodes, func(n placement.Node) bool { return n.Pool < want }), nil
	})
}

// waitInFlight waits until a session of fn has a request in flight.
func (x *xfaasSystem) waitInFlight(ctx context.Context, fn string) error {
	return poll(ctx, 30*time.Second, "a request in flight", func() (bool, error) {
		ss, err := x.sessions(ctx, fn)
		return slices.ContainsFunc(ss, func(s controlplane.SessionInfo) bool { return s.InFlight > 0 }), err
	})
}

// poll calls done every millisecond until it reports true, fails, or the
// timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// MemoryPerWorker measures the primary container's resident memory with
// one live worker and with ten (ten concurrent spin requests), and divides
// the growth by the added workers.
func (x *xfaasSystem) MemoryPerWorker(ctx context.Context) (float64, string, error) {
	const fn, workers = "bench-memory", 10
	if x.local == nil {
		return 0, "", bench.NotAvailable("the placement backend is not local: container processes cannot be read")
	}
	if err := x.deploy(ctx, fn, workload.Spin(), workers, 1); err != nil {
		return 0, "", err
	}
	defer x.Undeploy(context.WithoutCancel(ctx), fn)
	token, err := x.token(fn, benchLabel)
	if err != nil {
		return 0, "", err
	}
	if _, _, err := x.invoke(ctx, fn, token, []byte("0")); err != nil {
		return 0, "", err
	}
	pid, err := x.primaryPid(ctx, fn)
	if err != nil {
		return 0, "", err
	}
	rss1, err := bench.RSS(pid)
	if err != nil {
		return 0, "", err
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		wg.Go(func() { _, _, errs[i] = x.invoke(ctx, fn, token, []byte("300")) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, "", err
	}
	ss, err := x.sessions(ctx, fn)
	if err != nil || len(ss) != 1 || ss[0].Primary == nil || ss[0].Primary.Workers < 2 {
		return 0, "", fmt.Errorf("after %d concurrent requests: sessions %+v (%v); want one primary with several workers", workers, ss, err)
	}
	live := ss[0].Primary.Workers
	rssN, err := bench.RSS(pid)
	if err != nil {
		return 0, "", err
	}
	how := fmt.Sprintf("growth of the primary container's VmRSS from 1 to %d live workers (C spin guest, %d concurrent requests), over %d", live, workers, live-1)
	return float64(rssN-rss1) / float64(live-1), how, nil
}

func (x *xfaasSystem) primaryPid(ctx context.Context, fn string) (int, error) {
	ss, err := x.sessions(ctx, fn)
	if err != nil {
		return 0, err
	}
	if len(ss) != 1 || ss[0].Primary == nil {
		return 0, fmt.Errorf("function %s: %d sessions, want one with a primary", fn, len(ss))
	}
	pid, ok := x.local.Pid(ss[0].Primary.Container)
	if !ok {
		return 0, fmt.Errorf("no process for container %s", ss[0].Primary.Container)
	}
	return pid, nil
}
