package placement

import (
	"cmp"
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"
	"golang.org/x/sync/errgroup"

	"github.com/xfaas/xfaas/internal/containerid"
)

// Defaults of NomadOptions.
const (
	DefaultPoolJob     = "xfaas-pool"
	DefaultService     = "xfaas-session"
	DefaultClaimPrefix = "xfaas/claims/"
	DefaultJobPrefix   = "xfaas-session-"
	// DriverName is the task driver session containers run under.
	DriverName = "xfaas"
)

// ErrInvalidNomadConfig is wrapped by NewNomad for bad options.
var ErrInvalidNomadConfig = errors.New("invalid nomad placement config")

// NomadOptions configure a Nomad backend. Zero fields take the defaults.
type NomadOptions struct {
	// Nomad and Consul are the clients of the cluster. Required.
	Nomad  *nomadapi.Client
	Consul *consulapi.Client
	// PoolJob is the operator's pool job (jobspecs/xfaas-pool.nomad.hcl).
	// The default is "xfaas-pool".
	PoolJob string
	// Service is the Consul service containers register as. The default is
	// "xfaas-session".
	Service string
	// ClaimPrefix is where claims live in Consul KV, ending in "/". The
	// default is "xfaas/claims/".
	ClaimPrefix string
	// JobPrefix names the one-off jobs started on a pool miss. The default
	// is "xfaas-session-".
	JobPrefix string
	// Capacity is how many claimed containers a node may run. The default
	// is 32.
	Capacity int
	// Datacenters of the one-off jobs. The default is every datacenter.
	Datacenters []string
	// StartTimeout bounds a one-off job's start. The default is 60 s.
	StartTimeout time.Duration
	// StopTimeout bounds how long a released container may take to end
	// before its claim is dropped anyway. The default is 30 s.
	StopTimeout time.Duration
	Logger      hclog.Logger
}

func (o *NomadOptions) fill() error {
	if o.Nomad == nil || o.Consul == nil {
		return fmt.Errorf("%w: nomad and consul clients are required", ErrInvalidNomadConfig)
	}
	o.PoolJob = cmp.Or(o.PoolJob, DefaultPoolJob)
	o.Service = cmp.Or(o.Service, DefaultService)
	o.ClaimPrefix = cmp.Or(o.ClaimPrefix, DefaultClaimPrefix)
	o.JobPrefix = cmp.Or(o.JobPrefix, DefaultJobPrefix)
	if !strings.HasSuffix(o.ClaimPrefix, "/") || strings.HasPrefix(o.ClaimPrefix, "/") {
		return fmt.Errorf("%w: claim prefix %q must end, and not start, with /", ErrInvalidNomadConfig, o.ClaimPrefix)
	}
	if o.Capacity <= 0 {
		o.Capacity = 32
	}
	if len(o.Datacenters) == 0 {
		o.Datacenters = []string{"*"}
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = time.Minute
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return nil
}

// Nomad places containers as Nomad allocations of the xfaas driver: it
// claims warm containers of the operator's pool job, found through their
// Consul services, and starts a one-off job on a pool miss. A pool
// container is claimed only for a function it can hold, as its service's
// Meta sizes it; a one-off job is sized for its function. A claim is a
// Consul KV entry created by compare-and-swap, so replicas of the control
// plane never claim one container twice (RATIONALE.md, "Pool on Nomad";
// README.md, "How placement works on Nomad").
type Nomad struct {
	opts NomadOptions
	log  hclog.Logger

	mu      sync.Mutex
	claims  map[string]*nomadClaim // by container id, this replica's
	closing bool
	// unsizedWarned: a pool container without its size in Meta was
	// reported; once is enough.
	unsizedWarned bool

	lost chan Container
	stop chan struct{}
	wg   sync.WaitGroup
}

// nomadClaim is the value of a claim key.
type nomadClaim struct {
	Container string `json:"container"`
	Node      string `json:"node"`
	Addr      string `json:"addr"`
	Alloc     string `json:"alloc"`
	// Job is set for a one-off job, which Release deregisters.
	Job string `json:"job,omitempty"`
	// At is when the claim was made, to tell a claim on an allocation not
	// listed yet from one whose allocation was garbage collected.
	At time.Time `json:"at"`

	// size is what the container holds, from its service's Meta; zero
	// when the Meta does not say.
	size     Size
	released bool
}

func (c *nomadClaim) container() Container {
	return Container{ID: c.Container, Node: c.Node, Addr: c.Addr}
}

var _ Backend = (*Nomad)(nil)

// NewNomad returns a backend on the cluster and starts watching the
// allocations of the containers it claims.
func NewNomad(opts NomadOptions) (*Nomad, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	n := &Nomad{opts: opts, log: opts.Logger, claims: map[string]*nomadClaim{},
		lost: make(chan Container, 64), stop: make(chan struct{})}
	n.wg.Add(1)
	go n.watch()
	return n, nil
}

// Nodes reports the ready, eligible Nomad nodes whose xfaas driver is
// healthy, with the claims of every replica, their unclaimed pool, and the
// room Nomad's scheduler sees on them (nomadRoom). Its five reads do not
// depend on each other, so they go at once: a ColdSession waits for them.
func (n *Nomad) Nodes(ctx context.Context) ([]Node, error) {
	var (
		stubs  []*nomadapi.NodeListStub
		claims map[string]*nomadClaim
		pool   []*nomadClaim
		used   map[string]nomadUse
		rate   cpuRate
		rated  bool
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		stubs, _, err = n.opts.Nomad.Nodes().List((&nomadapi.QueryOptions{
			Params: map[string]string{"resources": "true"}}).WithContext(gctx))
		if err != nil {
			return fmt.Errorf("list nomad nodes: %w", err)
		}
		return nil
	})
	g.Go(func() (err error) { claims, err = n.allClaims(gctx); return err })
	g.Go(func() (err error) { pool, err = n.pool(gctx, ""); return err })
	g.Go(func() (err error) { used, err = n.reserved(gctx); return err })
	g.Go(func() error { rate, rated = n.poolRate(gctx); return nil })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	claimed, free, sizes := map[string]int{}, map[string]int{}, map[string][]Size{}
	for _, c := range claims {
		claimed[c.Node]++
	}
	for _, p := range pool {
		if _, ok := claims[p.Container]; !ok {
			free[p.Node]++
			if p.size != (Size{}) && !slices.Contains(sizes[p.Node], p.size) {
				sizes[p.Node] = append(sizes[p.Node], p.size)
			}
		}
	}
	var out []Node
	for _, s := range stubs {
		d := s.Drivers[DriverName]
		if s.Status != "ready" || s.SchedulingEligibility != "eligible" || s.Drain || d == nil || !d.Detected || !d.Healthy {
			continue
		}
		node := Node{Name: s.Name, Capacity: n.opts.Capacity, Claimed: claimed[s.Name], Pool: free[s.Name], PoolSizes: sizes[s.Name]}
		r, ok := rate, rated
		if !ok {
			r, ok = coreRate(s)
		}
		if ok {
			node.Allocatable, node.Free = nomadRoom(s, used[s.ID], r)
		}
		out = append(out, node)
	}
	return out, nil
}

// nomadUse is CPU, in MHz, and memory, in MiB, as Nomad reserves them.
type nomadUse struct{ mhz, memoryMB int64 }

// reserved returns, by node id, what the live allocations reserve on each
// node, counted as Nomad's scheduler counts them when it places one more:
// every allocation neither stopping nor stopped (desired status run, client
// status not terminal), its tasks' CPU and memory. Tasks are summed, as
// the API does not say which are prestart tasks that Nomad counts only
// while the main ones do not run: for such jobs the room seen is less than
// Nomad's, never more.
func (n *Nomad) reserved(ctx context.Context) (map[string]nomadUse, error) {
	allocs, _, err := n.opts.Nomad.Allocations().List((&nomadapi.QueryOptions{
		Params: map[string]string{"resources": "true"},
		Filter: `DesiredStatus == "run" and ClientStatus != "complete" and ClientStatus != "failed" and ClientStatus != "lost"`,
	}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list nomad allocations: %w", err)
	}
	out := map[string]nomadUse{}
	for _, a := range allocs {
		if a.AllocatedResources == nil {
			continue
		}
		u := out[a.NodeID]
		for _, t := range a.AllocatedResources.Tasks {
			u.mhz += t.Cpu.CpuShares
			u.memoryMB += t.Memory.MemoryMB
		}
		out[a.NodeID] = u
	}
	return out, nil
}

// nomadRoom returns the largest container a one-off can have on node s:
// total with no allocation there, free beside the allocations that reserve
// used. Both are the node's compute and memory less what it reserves for
// itself (and, for free, less used), which is what Nomad's scheduler
// compares a job's resources with, the CPU turned into a quota at rate.
// Nil for a node that does not report its resources.
func nomadRoom(s *nomadapi.NodeListStub, used nomadUse, rate cpuRate) (total, free *Resources) {
	r := s.NodeResources
	if r == nil || r.Cpu.CpuShares <= 0 || r.Memory.MemoryMB <= 0 {
		return nil, nil
	}
	cpu, mem := r.Cpu.CpuShares, r.Memory.MemoryMB
	if rr := s.ReservedResources; rr != nil {
		cpu -= int64(rr.Cpu.CpuShares)
		mem -= int64(rr.Memory.MemoryMB)
	}
	total = &Resources{Millicores: rate.quota(cpu), MemoryMB: max(mem, 0)}
	free = &Resources{Millicores: rate.quota(cpu - used.mhz), MemoryMB: max(mem-used.memoryMB, 0)}
	return total, free
}

// Claim takes a healthy unclaimed pool container on node that holds size,
// or starts a one-off job sized for it there on a pool miss.
func (n *Nomad) Claim(ctx context.Context, node string, size Size) (Container, bool, error) {
	if n.isClosing() {
		return Container{}, false, ErrNoCapacity
	}
	pool, err := n.pool(ctx, node)
	if err != nil {
		return Container{}, false, err
	}
	claims, err := n.allClaims(ctx)
	if err != nil {
		return Container{}, false, err
	}
	// Replicas start at different places, so they rarely race for one.
	rand.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	for _, c := range pool {
		if _, taken := claims[c.Container]; taken || !n.holds(c, size) {
			continue
		}
		won, err := n.claim(ctx, c)
		if err != nil {
			return Container{}, false, err
		}
		if won {
			return c.container(), true, nil
		}
	}
	used := 0
	for _, c := range claims {
		if c.Node == node {
			used++
		}
	}
	if used >= n.opts.Capacity {
		return Container{}, false, fmt.Errorf("%w: node %s has %d claimed containers, its capacity", ErrNodeFull, node, used)
	}
	c, err := n.startOneOff(ctx, node, size)
	if err != nil {
		return Container{}, false, err
	}
	return c.container(), false, nil
}

// holds reports whether pool container c can hold a function of size. A
// container whose Meta does not say its size holds nothing: its cgroup may
// be smaller than any function needs, and it is said once why.
func (n *Nomad) holds(c *nomadClaim, size Size) bool {
	if c.size != (Size{}) {
		return c.size.Holds(size)
	}
	n.mu.Lock()
	warn := !n.unsizedWarned
	n.unsizedWarned = true
	n.mu.Unlock()
	if warn {
		n.log.Warn("pool containers without their size in their service meta are not claimed; see jobspecs/xfaas-pool.nomad.hcl",
			"container", c.Container, "meta", sizeKeys)
	}
	return false
}

// claim writes c's claim key if nobody has; true when it did.
func (n *Nomad) claim(ctx context.Context, c *nomadClaim) (bool, error) {
	c.At = time.Now().UTC()
	val, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	won, _, err := n.opts.Consul.KV().CAS(&consulapi.KVPair{Key: n.key(c.Container), Value: val},
		(&consulapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("claim container %s: %w", c.Container, err)
	}
	if won {
		n.mu.Lock()
		n.claims[c.Container] = c
		n.mu.Unlock()
	}
	return won, nil
}

func (n *Nomad) key(container string) string { return n.opts.ClaimPrefix + container }

// pool returns the passing pool containers of the pool job, on node (all
// with ""), claimed or not.
func (n *Nomad) pool(ctx context.Context, node string) ([]*nomadClaim, error) {
	filter := fmt.Sprintf(`Service.Meta.role == "pool" and Service.Meta.job == %q`, n.opts.PoolJob)
	if node != "" {
		filter += fmt.Sprintf(` and Service.Meta.node == %q`, node)
	}
	entries, _, err := n.opts.Consul.Health().Service(n.opts.Service, "", true,
		(&consulapi.QueryOptions{Filter: filter}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list pool containers: %w", err)
	}
	out := make([]*nomadClaim, 0, len(entries))
	for _, e := range entries {
		if c := claimOf(e.Service); c != nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// claimOf is the claim of a container's Nomad-registered service, or nil
// for a service that does not say its allocation.
func claimOf(s *consulapi.AgentService) *nomadClaim {
	alloc, task := s.Meta["alloc"], s.Meta["task"]
	if alloc == "" || task == "" || s.Address == "" || s.Port == 0 {
		return nil
	}
	return &nomadClaim{Container: containerid.Nomad(alloc, task), Node: s.Meta["node"], Alloc: alloc,
		Addr: "tcp://" + net.JoinHostPort(s.Address, strconv.Itoa(s.Port)), size: sizeOf(s.Meta)}
}

// sizeKeys name a container's size in an xfaas task config and in its
// service Meta: the function config's names of Size's fields, in the order
// of values.
var sizeKeys = [3]string{"max_workers", "worker_cpu_millicores", "worker_memory_mb"}

// values are s's fields in the order of sizeKeys.
func (s Size) values() [3]int { return [3]int{s.Workers, s.WorkerCPUMillicores, s.WorkerMemoryMB} }

// sizeOfValues is the Size whose values are v.
func sizeOfValues(v [3]int) Size {
	return Size{Workers: v[0], WorkerCPUMillicores: v[1], WorkerMemoryMB: v[2]}
}

// sizeOf is the size a service's Meta says, or zero if it does not say it
// all.
func sizeOf(meta map[string]string) Size {
	var v [3]int
	for i, k := range sizeKeys {
		n, err := strconv.Atoi(meta[k])
		if err != nil || n <= 0 {
			return Size{}
		}
		v[i] = n
	}
	return sizeOfValues(v)
}

// meta returns s as service Meta (sizeKeys).
func (s Size) meta() map[string]string {
	m := make(map[string]string, len(sizeKeys))
	for i, v := range s.filled().values() {
		m[sizeKeys[i]] = strconv.Itoa(v)
	}
	return m
}

// allClaims returns the claims of every replica by container id.
func (n *Nomad) allClaims(ctx context.Context) (map[string]*nomadClaim, error) {
	pairs, _, err := n.opts.Consul.KV().List(n.opts.ClaimPrefix, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list claims: %w", err)
	}
	out := make(map[string]*nomadClaim, len(pairs))
	for _, p := range pairs {
		var c nomadClaim
		if err := json.Unmarshal(p.Value, &c); err != nil || c.Container == "" {
			n.log.Warn("ignoring a malformed claim", "key", p.Key, "error", err)
			continue
		}
		out[c.Container] = &c
	}
	return out, nil
}

// Lost delivers claimed containers whose allocation ended without Release.
func (n *Nomad) Lost() <-chan Container { return n.lost }

// Close stops the watch, then releases this replica's claims: their
// allocations stop and their one-off jobs go. The pool job stays: it is the
// operator's.
func (n *Nomad) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return nil
	}
	n.closing = true
	var claims []*nomadClaim
	for _, c := range n.claims {
		if !c.released {
			c.released = true
			claims = append(claims, c)
		}
	}
	n.mu.Unlock()
	errs := make([]error, len(claims))
	var wg sync.WaitGroup
	for i, c := range claims {
		wg.Go(func() {
			if err := n.stopAlloc(ctx, c); err != nil {
				errs[i] = fmt.Errorf("stop %s: %w", c.Container, err)
			}
			// As in Release: the claim goes once the container has.
			wctx, cancel := context.WithTimeout(ctx, n.opts.StopTimeout)
			defer cancel()
			_ = n.waitEnded(wctx, c.Alloc)
			n.drop(c)
		})
	}
	wg.Wait()
	close(n.stop)
	n.wg.Wait()
	return errors.Join(errs...)
}

func (n *Nomad) isClosing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closing
}

func isNotFound(err error) bool {
	var ue nomadapi.UnexpectedResponseError
	if errors.As(err, &ue) {
		return ue.StatusCode() == 404
	}
	return err != nil && strings.Contains(err.Error(), "404")
}

// sleepCtx waits for d or ctx; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func randomSuffix() string {
	var b [4]byte
	_, _ = cryptorand.Read(b[:])
	return hex.EncodeToString(b[:])
}
