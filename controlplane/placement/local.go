package placement

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/internal/cgroup"
	"github.com/xfaas/xfaas/proxy"
)

// LocalOptions configure a Local backend.
type LocalOptions struct {
	// Binary is the xfaas executable to run as `xfaas proxy`. The default
	// is the running executable.
	Binary string
	// Nodes is how many simulated nodes to run. The default is 2.
	Nodes int
	// PoolSize is how many warm containers each node keeps. The default is 2.
	PoolSize int
	// Capacity is how many containers each node may run. The default is 32.
	Capacity int
	// Dir holds the containers' Unix sockets. Required.
	Dir string
	// CacheDir is the compilation cache the containers share.
	CacheDir string
	// Network is "unix" (the default) or "tcp" (127.0.0.1) for container
	// addresses.
	Network string
	// Cgroups places each container in its own cgroup under a root group
	// named xfaas-dev-<pid>, removed at Close. Without it, or where cgroups
	// cannot be written, containers run without limits and say so.
	Cgroups bool
	// ProxyArgs are extra arguments for every `xfaas proxy`.
	ProxyArgs []string
	// StartTimeout bounds a container's start. The default is 30 s.
	StartTimeout time.Duration
	// StopGrace is how long a stopping container may finish its requests
	// before it is killed. The default is 10 s.
	StopGrace time.Duration
	Logger    hclog.Logger
}

func (o *LocalOptions) fill() error {
	if o.Dir == "" {
		return errors.New("local placement needs a directory for sockets")
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Binary = exe
	}
	if o.Nodes <= 0 {
		o.Nodes = 2
	}
	if o.PoolSize <= 0 {
		o.PoolSize = 2
	}
	if o.Capacity <= 0 {
		o.Capacity = 32
	}
	if o.Network == "" {
		o.Network = "unix"
	}
	if o.Network != "unix" && o.Network != "tcp" {
		return fmt.Errorf("network must be unix or tcp, not %q", o.Network)
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return nil
}

// Local runs containers as `xfaas proxy` processes on this machine, on
// simulated nodes, each keeping a pool of warm containers.
type Local struct {
	opts   LocalOptions
	log    hclog.Logger
	hier   *cgroup.Hierarchy
	cgroup *cgroup.Group // the root group, nil without cgroups

	mu      sync.Mutex
	nodes   []*localNode
	procs   map[string]*proc
	closing bool

	lost     chan Container
	kick     chan struct{}
	refilled chan struct{} // closed, and replaced, when a pool refill ends
	stop     chan struct{}
	filler   sync.WaitGroup
	procWG   sync.WaitGroup // one per running process
}

type localNode struct {
	name     string
	pool     []*proc // warm, oldest first
	claimed  int
	starting int // containers a claim starts for itself
	filling  int // containers the filler starts for the pool
}

// used is what counts against the node's capacity.
func (n *localNode) used() int { return n.claimed + len(n.pool) + n.starting + n.filling }

// proc is one container process. claimed and released are guarded by
// Local.mu.
type proc struct {
	c        Container
	node     *localNode
	cmd      *exec.Cmd
	cgroup   string // the container group's path, "" without cgroups
	claimed  bool
	released bool
	exited   chan struct{}
}

var _ Backend = (*Local)(nil)

// NewLocal starts the backend and fills every node's pool in the background.
func NewLocal(opts LocalOptions) (*Local, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	l := &Local{opts: opts, log: opts.Logger, procs: map[string]*proc{},
		lost: make(chan Container, 64), kick: make(chan struct{}, 1), stop: make(chan struct{}),
		refilled: make(chan struct{})}
	for i := range opts.Nodes {
		l.nodes = append(l.nodes, &localNode{name: "node-" + strconv.Itoa(i)})
	}
	if opts.Cgroups {
		l.cgroup = l.rootGroup()
	}
	l.filler.Add(1)
	go l.fillLoop()
	return l, nil
}

// rootGroup creates xfaas-dev-<pid> with a group per node, or returns nil
// and says why containers will run without limits.
func (l *Local) rootGroup() *cgroup.Group {
	h, err := cgroup.Open(cgroup.Options{})
	if err == nil {
		err = h.Writable()
	}
	if err != nil {
		l.log.Warn("containers run without cgroup limits", "reason", err)
		return nil
	}
	l.hier = h
	removeStaleRoots(h, l.log)
	root := h.Group(rootPrefix + strconv.Itoa(os.Getpid()))
	for _, n := range l.nodes {
		if err := h.Group(root.Path() + "/" + n.name).Create(nil); err != nil {
			l.log.Warn("containers run without cgroup limits", "reason", err)
			root.Remove()
			return nil
		}
	}
	return root
}

// rootPrefix names a local backend's root group; the suffix is its pid.
const rootPrefix = "xfaas-dev-"

// removeStaleRoots removes the groups of local backends whose process died
// without cleaning up (kill -9), with any container still in them.
func removeStaleRoots(h *cgroup.Hierarchy, log hclog.Logger) {
	names, err := h.Children("/")
	if err != nil {
		return
	}
	for _, name := range names {
		pid, err := strconv.Atoi(strings.TrimPrefix(name, rootPrefix))
		if !strings.HasPrefix(name, rootPrefix) || err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		g := h.Group(name)
		_ = g.Kill()
		if err := g.Remove(); err != nil {
			log.Warn("failed to remove a stale cgroup", "cgroup", name, "error", err)
			continue
		}
		log.Info("removed the cgroup of a dead control plane", "cgroup", name)
	}
}

// Nodes reports the simulated nodes.
func (l *Local) Nodes(context.Context) ([]Node, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Node, len(l.nodes))
	for i, n := range l.nodes {
		out[i] = Node{Name: n.name, Capacity: l.opts.Capacity, Claimed: n.claimed, Pool: len(n.pool)}
	}
	return out, nil
}

// Claim takes a warm container on node, or starts one on a pool miss. Any
// container holds any size: a local container creates its own cgroup and
// sizes it for the function when it is bound.
func (l *Local) Claim(ctx context.Context, node string, _ Size) (Container, bool, error) {
	l.mu.Lock()
	n := l.node(node)
	if n == nil {
		l.mu.Unlock()
		return Container{}, false, fmt.Errorf("unknown node %q", node)
	}
	for {
		if l.closing {
			l.mu.Unlock()
			return Container{}, false, ErrNoCapacity
		}
		for len(n.pool) > 0 {
			p := n.pool[0]
			n.pool = n.pool[1:]
			if isClosed(p.exited) {
				continue
			}
			p.claimed = true
			n.claimed++
			l.mu.Unlock()
			l.kickFiller()
			return p.c, true, nil
		}
		if n.used() < l.opts.Capacity {
			break
		}
		if n.filling == 0 {
			l.mu.Unlock()
			return Container{}, false, fmt.Errorf("%w: node %s runs %d containers, its capacity", ErrNodeFull, node, l.opts.Capacity)
		}
		// The node is full, but a place is a pool container on its way:
		// that container is this claim's, so wait for it.
		refilled := l.refilled
		l.mu.Unlock()
		select {
		case <-refilled:
		case <-ctx.Done():
			return Container{}, false, ctx.Err()
		}
		l.mu.Lock()
	}
	n.starting++
	l.mu.Unlock()
	p, err := l.spawn(ctx, n)
	l.mu.Lock()
	defer l.mu.Unlock()
	n.starting--
	if err != nil {
		return Container{}, false, err
	}
	p.claimed = true
	n.claimed++
	return p.c, false, nil
}

func (l *Local) node(name string) *localNode {
	for _, n := range l.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// Release stops a claimed container: SIGTERM, then SIGKILL after StopGrace.
func (l *Local) Release(ctx context.Context, id string) error {
	l.mu.Lock()
	p := l.procs[id]
	if p != nil {
		p.released = true
	}
	l.mu.Unlock()
	if p == nil {
		return nil // already gone
	}
	return l.stopProc(ctx, p)
}

func (l *Local) stopProc(ctx context.Context, p *proc) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(l.opts.StopGrace)
	defer timer.Stop()
	select {
	case <-p.exited:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return nil
}

// Pid returns the process id of a running container.
func (l *Local) Pid(id string) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.procs[id]; p != nil {
		return p.cmd.Process.Pid, true
	}
	return 0, false
}

// Lost delivers claimed containers that exited without Release.
func (l *Local) Lost() <-chan Container { return l.lost }

// Close stops every container, waits for them, and removes the cgroups.
func (l *Local) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return nil
	}
	l.closing = true
	procs := make([]*proc, 0, len(l.procs))
	for _, p := range l.procs {
		p.released = true
		procs = append(procs, p)
	}
	l.mu.Unlock()
	close(l.stop)
	l.filler.Wait()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { _ = l.stopProc(ctx, p) })
	}
	wg.Wait()
	l.procWG.Wait()
	if l.cgroup != nil {
		return l.cgroup.Remove()
	}
	return nil
}

func (l *Local) kickFiller() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// fillLoop keeps every node's pool at PoolSize, within its capacity.
func (l *Local) fillLoop() {
	defer l.filler.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		l.fill()
		select {
		case <-l.stop:
			return
		case <-l.kick:
		case <-tick.C:
		}
	}
}

// fill starts the containers the pools lack, concurrently.
func (l *Local) fill() {
	l.mu.Lock()
	var starts []*localNode
	for _, n := range l.nodes {
		for len(n.pool)+n.filling < l.opts.PoolSize && n.used() < l.opts.Capacity && !l.closing {
			n.filling++
			starts = append(starts, n)
		}
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range starts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), l.opts.StartTimeout)
			defer cancel()
			p, err := l.spawn(ctx, n)
			l.mu.Lock()
			defer l.mu.Unlock()
			n.filling--
			close(l.refilled) // wakes claims waiting for this place
			l.refilled = make(chan struct{})
			switch {
			case err != nil && l.closing:
				// Started while Close ran, and stopped again (spawn): no fault.
				l.log.Debug("pool container not kept: closing", "node", n.name)
				return
			case err != nil:
				l.log.Error("failed to start a pool container", "node", n.name, "error", err)
				return
			}
			n.pool = append(n.pool, p)
		})
	}
	wg.Wait()
}

// readyLine is the first line `xfaas proxy` prints on stdout.
type readyLine struct {
	Event     string `json:"event"`
	Container string `json:"container"`
	Addr      string `json:"addr"`
}

// spawn starts one `xfaas proxy` on node n and waits for its ready line.
func (l *Local) spawn(ctx context.Context, n *localNode) (*proc, error) {
	id := proxy.NewID()
	listen := "tcp://127.0.0.1:0"
	if l.opts.Network == "unix" {
		listen = "unix://" + filepath.Join(l.opts.Dir, id+".sock")
	}
	args := []string{"proxy", "--listen", listen, "--id", id, "--node", n.name,
		"--checkpoint-dir", filepath.Join(l.opts.Dir, "nodes", n.name, "checkpoints")}
	if l.opts.CacheDir != "" {
		args = append(args, "--cache-dir", l.opts.CacheDir)
	}
	// The id is set before wait starts; the address, under l.mu, once the
	// ready line gives it: wait may run as soon as the process exits.
	p := &proc{node: n, exited: make(chan struct{}), c: Container{ID: id, Node: n.name}}
	if l.cgroup != nil {
		p.cgroup = l.cgroup.Path() + "/" + n.name + "/" + id
		args = append(args, "--cgroup", p.cgroup)
	} else {
		args = append(args, "--no-cgroups")
	}
	p.cmd = exec.Command(l.opts.Binary, append(args, l.opts.ProxyArgs...)...)
	// The container dies with the control plane, whatever kills it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	p.cmd.Stderr = l.log.Named(id).StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true})
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start container: %w", err)
	}
	l.procWG.Add(1)
	go l.wait(p)
	ready, err := readReady(ctx, stdout, l.opts.StartTimeout)
	if err != nil {
		_ = p.cmd.Process.Kill()
		<-p.exited
		return nil, fmt.Errorf("container %s did not start: %w", id, err)
	}
	l.mu.Lock()
	p.c.Addr = ready.Addr
	closing, exited := l.closing, isClosed(p.exited)
	if !closing && !exited {
		l.procs[id] = p
	}
	l.mu.Unlock()
	switch {
	case exited:
		return nil, fmt.Errorf("container %s exited right after starting", id)
	case closing:
		_ = l.stopProc(context.Background(), p)
		return nil, ErrNoCapacity
	}
	return p, nil
}

func readReady(ctx context.Context, stdout interface{ Read([]byte) (int, error) }, timeout time.Duration) (readyLine, error) {
	got := make(chan error, 1)
	var r readyLine
	sc := bufio.NewScanner(stdout)
	go func() {
		if !sc.Scan() {
			got <- fmt.Errorf("no ready line (exited: %v)", sc.Err())
			return
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Event != "ready" {
			got <- fmt.Errorf("bad ready line %q", sc.Text())
			return
		}
		got <- nil
		for sc.Scan() { // keep the pipe drained
		}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-got:
		return r, err
	case <-timer.C:
		return r, errors.New("timed out waiting for the ready line")
	case <-ctx.Done():
		return r, ctx.Err()
	}
}

// wait reaps a process, reports it lost if it was claimed and not released,
// and removes its cgroup and socket.
func (l *Local) wait(p *proc) {
	defer l.procWG.Done()
	err := p.cmd.Wait()
	close(p.exited)
	l.mu.Lock()
	c := p.c
	delete(l.procs, c.ID)
	for i, q := range p.node.pool {
		if q == p {
			p.node.pool = append(p.node.pool[:i], p.node.pool[i+1:]...)
			break
		}
	}
	if p.claimed {
		p.node.claimed--
	}
	lost := p.claimed && !p.released
	closing := l.closing
	l.mu.Unlock()
	if p.cgroup != "" {
		// The proxy removes its group on a clean exit; after a crash the
		// group and any process it forked are cleaned up here.
		g := l.hier.Group(p.cgroup)
		_ = g.Kill()
		if rerr := g.Remove(); rerr != nil {
			l.log.Warn("failed to remove a container cgroup", "container", c.ID, "error", rerr)
		}
	}
	if l.opts.Network == "unix" {
		_ = os.Remove(filepath.Join(l.opts.Dir, c.ID+".sock"))
	}
	if lost {
		l.log.Warn("container exited", "container", c.ID, "node", c.Node, "error", err)
		select {
		case l.lost <- c:
		case <-l.stop:
		}
	}
	if !closing {
		l.kickFiller()
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
