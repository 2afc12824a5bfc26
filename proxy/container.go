package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy/state"
)

// Options configure a Container.
type Options struct {
	// ID names the container; the default is NewID().
	ID string
	// Node names the node the container runs on, for status and logs.
	Node string
	// CacheDir holds the compilation cache shared by the node's containers.
	CacheDir string
	// Limits places workers in CPU-limited cgroups; nil runs them unlimited.
	Limits Limits
	// MaxQueue and IdleTimeout tune the worker pool (see PoolOptions).
	MaxQueue    int
	IdleTimeout time.Duration
	// State tunes the primary's store (key, value and total size limits).
	// Its Scheme is taken from the function config.
	State state.Options
	// Resolver finds the primaries that pull_state reads from, for functions
	// that declare depends_on. Nil makes those pulls unavailable (-8).
	Resolver Resolver
	// CheckpointDir is the node's checkpoint directory: checkpoints are
	// written there and read from there when they are current. Empty
	// keeps them only in the durable tier.
	CheckpointDir string
	// NATS, when set, gives the container the durable tier (the JetStream
	// object store xfaas-checkpoints) and the session logs of durability
	// "log". Without it, checkpoints stay on the node and durability "log"
	// is refused.
	NATS   *nats.Conn
	Logger hclog.Logger
}

// Limits creates the per-worker cgroups of a bound container.
type Limits interface {
	// Workers prepares n worker slots with a CPU quota each (and memoryMB
	// of linear memory each, for sizing the container) and returns the
	// placer that moves a worker thread into slot i. It may follow a
	// Prepare, and resizes what that made.
	Workers(n, cpuMillicores, memoryMB int) (ThreadPlacer, error)
	// Prepare makes n worker slots for threads that wait for a bind,
	// without sizing the container.
	Prepare(n, cpuMillicores int) (ThreadPlacer, error)
	// Status says whether limits are enforced, and if not, why.
	Status() LimitStatus
	// Close removes what Workers and Prepare created.
	Close() error
}

// LimitStatus is how a container's workers are limited.
type LimitStatus struct {
	Enforced bool   `json:"enforced"`
	Reason   string `json:"reason,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"`
}

// Container is one session container: an unbound pool container until Bind,
// then the primary or a secondary of one session namespace, for the rest of
// its life (a container never serves a second session).
type Container struct {
	opts    Options
	log     hclog.Logger
	started time.Time
	metrics *prometheus.Registry
	ckpts   *checkpoints

	mu        sync.Mutex
	b         *bound
	closed    bool
	prepDone  chan struct{} // closed when prep is set; nil without Prepare
	prepTaken bool          // a bind or Close has taken prep
	prep      *prepared
}

// bound is what Bind sets up.
type bound struct {
	Binding
	engine  *Engine
	module  *Module
	pool    *Pool
	store   *state.Store // primary only
	remotes remoteSet    // secondary only: the workers' connections to the primary
	pull    *puller      // with depends_on only: pull_state's connections
	journal *journal     // primary with durability "log" only
	ckMu    sync.Mutex   // one checkpoint at a time
	m       *invokeMetrics
	limits  LimitStatus
	// prepared: the bind took what the container had prepared.
	prepared bool
}

// NewID returns a fresh container id: "c-" and 12 random hex digits.
func NewID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "c-" + hex.EncodeToString(b[:])
}

// New returns an unbound container.
func New(opts Options) *Container {
	if opts.ID == "" {
		opts.ID = NewID()
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c := &Container{opts: opts, log: opts.Logger.With("container", opts.ID), started: time.Now(), metrics: reg}
	c.ckpts = &checkpoints{dir: opts.CheckpointDir, log: c.log}
	if opts.NATS != nil {
		js, _ := jetstream.New(opts.NATS) // fails only on bad options
		c.ckpts.durable = NewCheckpointStore(js)
		// Open the durable tier while the container waits in the pool, so
		// a ColdSession's restore does not pay for it.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.ckpts.store(ctx); err != nil {
				c.log.Warn("durable checkpoint tier not reachable yet", "error", err)
			}
		}()
	}
	return c
}

// ID is the container's id.
func (c *Container) ID() string { return c.opts.ID }

// Bind makes the container a session container. It compiles the module
// (a compilation-cache hit when the node has seen it), starts the worker
// pool, and for a primary creates the empty session state.
func (c *Container) Bind(ctx context.Context, b Binding) error {
	if err := checkBinding(&b); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errShuttingDown
	}
	if c.b != nil {
		return apierror.New(apierror.Conflict, "container %s is already bound to a session", c.opts.ID)
	}
	start := time.Now()
	nb, err := c.setUp(ctx, b)
	if err != nil {
		return err
	}
	c.b = nb
	c.log.Info("bound", "function", b.Function, "session", b.Session, "role", b.Role,
		"compile_ms", nb.module.CompileTime.Milliseconds(), "limits_enforced", nb.limits.Enforced,
		"prepared", nb.prepared, "ms", float64(time.Since(start).Microseconds())/1000)
	return nil
}

func checkBinding(b *Binding) error {
	switch {
	case b.Function == "" || b.Session == "":
		return apierror.New(apierror.BadRequest, "binding needs a function and a session")
	case b.Role != RolePrimary && b.Role != RoleSecondary:
		return apierror.New(apierror.BadRequest, "binding role must be primary or secondary, not %q", b.Role)
	case b.Role == RoleSecondary && b.Primary == "":
		return apierror.New(apierror.BadRequest, "a secondary needs its primary's address")
	case b.Digest != "" && Digest(b.Module) != b.Digest:
		return apierror.New(apierror.BadRequest, "module digest mismatch: got %s, want %s", Digest(b.Module), b.Digest)
	case !validIncarnation(b.Incarnation):
		return apierror.New(apierror.BadRequest, "incarnation must be at most 64 lower-case hex digits, not %q", b.Incarnation)
	}
	return b.Config.Validate()
}

// validIncarnation reports whether s can be an incarnation: it becomes a
// token of the session's log subject.
func validIncarnation(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// setUp makes the bound state. It sizes the worker cgroups for b's config
// first, then takes what the container prepared (Prepare) and uses what
// matches that config.
func (c *Container) setUp(ctx context.Context, b Binding) (_ *bound, err error) {
	nb := &bound{Binding: b}
	var prep *prepared
	defer func() {
		prep.release() // what the bind did not use
		if err != nil {
			nb.close(context.Background())
		}
	}()
	nb.Module = nil // the compiled form is kept, not the bytes
	placer, err := c.placer(nb)
	if err != nil {
		return nil, err
	}
	if prep, err = c.takePrepared(ctx); err != nil {
		return nil, apierror.New(apierror.Unavailable, "container %s is still preparing its bind: %v", c.opts.ID, err)
	}
	nb.prepared = prep != nil
	if nb.engine = prep.engineFor(b.Config.WorkerMemoryMB); nb.engine == nil {
		if nb.engine, err = NewEngine(ctx, EngineOptions{CacheDir: c.opts.CacheDir, MemoryLimitMB: b.Config.WorkerMemoryMB}); err != nil {
			return nil, err
		}
	}
	if nb.module, err = nb.engine.Compile(ctx, b.Module); err != nil {
		return nil, err
	}
	newAccessor, err := nb.accessors(c.opts.State)
	if err != nil {
		return nil, err
	}
	if err := c.prepareState(ctx, nb); err != nil {
		return nil, err
	}
	if len(b.Config.DependsOn) > 0 {
		if nb.pull, err = newPuller(ctx, b.Config.DependsOn, c.opts.Resolver, b.Config.MaxWorkers, c.log); err != nil {
			return nil, err
		}
	}
	var slots *slotSet
	if placer != nil {
		if slots, err = prep.slotsFor(b.Config.MaxWorkers); err != nil {
			return nil, err
		}
	}
	nb.pool, err = NewPool(nb.engine, nb.module, PoolOptions{
		Function: b.Function, Session: b.Session,
		MaxWorkers: b.Config.MaxWorkers, MaxQueue: c.opts.MaxQueue, IdleTimeout: c.opts.IdleTimeout,
		Timeout: b.Config.Timeout(), NewAccessor: newAccessor, Placer: placer, Logger: c.log,
		pull: nb.pull, slots: slots,
	})
	if err != nil {
		return nil, err
	}
	nb.m = registerMetrics(c.metrics, c.opts.ID, nb)
	return nb, nil
}

// accessors returns how each new worker reaches the state.
func (nb *bound) accessors(opts state.Options) (func() Accessor, error) {
	scheme, err := state.ParseScheme(nb.Config.Lock)
	if err != nil {
		return nil, apierror.New(apierror.BadRequest, "%v", err)
	}
	if nb.Role == RoleSecondary {
		return func() Accessor { return nb.remotes.add(nb.Primary, scheme == state.Pessimistic) }, nil
	}
	opts.Scheme = scheme
	nb.store = state.New(opts)
	return func() Accessor { return nb.store.NewTxn() }, nil
}

// prepareState gives a primary's new store its log and its restored
// state, before it serves.
func (c *Container) prepareState(ctx context.Context, nb *bound) error {
	if nb.store == nil {
		return nil
	}
	if nb.Config.Durability == "log" {
		if c.opts.NATS == nil {
			return apierror.New(apierror.BadRequest, "durability \"log\" needs NATS: the container runs without (xfaas proxy --nats)")
		}
		var err error
		if nb.journal, err = openJournal(ctx, c.opts.NATS, LogSubject(nb.Function, nb.Session, nb.Incarnation), c.log); err != nil {
			return apierror.New(apierror.Unavailable, "%v", err)
		}
	}
	if nb.Restore {
		if err := c.restore(ctx, nb); err != nil {
			return err
		}
	}
	if nb.journal != nil {
		nb.store.SetJournal(nb.journal)
	}
	return nil
}

// placer prepares the worker cgroups, or says once why there are none.
func (c *Container) placer(nb *bound) (ThreadPlacer, error) {
	nb.limits = LimitStatus{Reason: "cgroup limits disabled"}
	if c.opts.Limits != nil {
		nb.limits = c.opts.Limits.Status()
	}
	if !nb.limits.Enforced {
		c.log.Warn("workers run without CPU limits", "reason", nb.limits.Reason)
		return nil, nil
	}
	p, err := c.opts.Limits.Workers(nb.Config.MaxWorkers, nb.Config.WorkerCPUMillicores, nb.Config.WorkerMemoryMB)
	if err != nil {
		return nil, fmt.Errorf("create worker cgroups: %w", err)
	}
	return p, nil
}

// Invoke runs one request of the bound session.
func (c *Container) Invoke(ctx context.Context, input []byte) ([]byte, error) {
	b := c.bound()
	if b == nil {
		return nil, apierror.New(apierror.Unavailable, "container %s is not bound to a session", c.opts.ID)
	}
	start := time.Now()
	out, err := b.pool.Invoke(ctx, input)
	if err == nil {
		// Durability "log": the answer waits for the log to hold every
		// write committed before it.
		err = b.journal.sync(ctx)
	}
	b.m.observe(start, err)
	return out, err
}

func (c *Container) bound() *bound {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b
}

// Close stops the container: queued requests fail, running ones may finish
// until ctx is done, then the workers, the runtime and the worker cgroups
// go. Close is idempotent.
func (c *Container) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	b := c.b
	prepDone, prepTaken := c.prepDone, c.prepTaken
	c.prepTaken = true
	c.mu.Unlock()
	var errs []error
	if b != nil {
		errs = append(errs, b.close(ctx))
	}
	if prepDone != nil && !prepTaken {
		<-prepDone
		c.prep.release()
	}
	// Only now: the pool and the preparation have ended their slot
	// threads, and a worker cgroup that still holds one cannot go.
	if c.opts.Limits != nil {
		errs = append(errs, c.opts.Limits.Close())
	}
	return errors.Join(errs...)
}

func (nb *bound) close(ctx context.Context) error {
	var errs []error
	if nb.pool != nil {
		errs = append(errs, nb.pool.Close(ctx))
	}
	nb.remotes.closeAll()
	nb.pull.close()
	errs = append(errs, nb.journal.close(ctx))
	if nb.engine != nil {
		errs = append(errs, nb.engine.Close(context.Background()))
	}
	return errors.Join(errs...)
}

// remoteSet tracks the state accessors of a secondary's workers, to close
// their connections to the primary when the container closes. A worker
// that retires takes its own out (remoteState.Close).
type remoteSet struct {
	mu  sync.Mutex
	all []*remoteState
}

func (s *remoteSet) add(primary string, pessimistic bool) *remoteState {
	r := &remoteState{primary: primary, pessimistic: pessimistic, set: s}
	s.mu.Lock()
	s.all = append(s.all, r)
	s.mu.Unlock()
	return r
}

// remove takes r out of the set and reports whether it was there.
func (s *remoteSet) remove(r *remoteState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.all, r)
	if i < 0 {
		return false
	}
	s.all = slices.Delete(s.all, i, i+1)
	return true
}

func (s *remoteSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.all {
		r.hangUp()
	}
	s.all = nil
}

// TakeWire gives an invocation connection to a worker slot, which answers
// req and serves the connection's later requests from its own thread
// (wire.TakeHandler). It declines without slots (no CPU limits), with
// durability "log" (an answer then waits for the log, which a slot must not
// do) and when every slot owns a connection already: the wire server then
// serves the connection itself.
func (c *Container) TakeWire(conn *wire.Conn, req wire.Request) bool {
	if req.Method() != methodInvoke {
		return false
	}
	b := c.bound()
	if b == nil || b.journal != nil {
		return false
	}
	return b.pool.adopt(conn, req, func(sl *slot, req wire.Request) ([]byte, error) {
		// The stream's context ends when the control plane hangs up, which
		// stops a guest whose caller gave up.
		if req.Method() != methodInvoke {
			return c.ServeWire(sl.stream.Context(), conn, req.Method(), req.Payload)
		}
		ctx, cancel, input, err := invokeRequest(sl.stream.Context(), req.Payload)
		if err != nil {
			return nil, err
		}
		defer cancel()
		start := time.Now()
		out, err := b.pool.invoke(ctx, input, sl)
		b.m.observe(start, err)
		return out, err
	})
}

// invokeRequest decodes an invoke request's payload and bounds ctx by the
// timeout the caller sent, if any.
func invokeRequest(ctx context.Context, payload []byte) (context.Context, context.CancelFunc, []byte, error) {
	input, timeout, err := decodeInvoke(payload)
	if err != nil {
		return nil, nil, nil, apierror.New(apierror.BadRequest, "%v", err)
	}
	if timeout <= 0 {
		return ctx, func() {}, input, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, cancel, input, nil
}

// ServeWire serves the container's wire protocol.
func (c *Container) ServeWire(ctx context.Context, conn *wire.Conn, method uint8, payload []byte) ([]byte, error) {
	switch method {
	case methodInvoke:
		ctx, cancel, input, err := invokeRequest(ctx, payload)
		if err != nil {
			return nil, err
		}
		defer cancel()
		return c.Invoke(ctx, input)
	case methodBind:
		b, err := decodeBinding(payload)
		if err != nil {
			return nil, apierror.New(apierror.BadRequest, "%v", err)
		}
		return nil, c.Bind(ctx, b)
	case methodStatus:
		return encodeJSON(c.Status())
	case methodCheckpoint:
		info, err := c.serveCheckpoint(ctx, payload)
		if err != nil {
			return nil, err
		}
		return encodeJSON(info)
	case methodStateGet, methodStatePut, methodStateDelete, methodStateEnd:
		b := c.bound()
		if b == nil || b.store == nil {
			return nil, apierror.New(apierror.Unavailable, "container %s holds no session state", c.opts.ID)
		}
		reply, err := serveState(ctx, b.store, conn, method, payload)
		if err == nil && method != methodStateEnd {
			// Durability "log": a secondary's write is acknowledged, and
			// its read answered, once the log holds every write before
			// it, as the primary's own answers wait in Invoke. A read
			// that did not wait could show a client a value that a crash
			// of the primary then takes back.
			err = b.journal.sync(ctx)
		}
		return reply, err
	}
	return nil, apierror.New(apierror.BadRequest, "unknown method %d", method)
}

// serveCheckpoint runs a checkpoint request: Checkpoint, or Seal bounded
// by the caller's remaining time, which the connection's context does not
// carry, so that a seal that cannot finish unseals before the caller has
// given up on it.
func (c *Container) serveCheckpoint(ctx context.Context, payload []byte) (CheckpointInfo, error) {
	seal, timeout, err := decodeCheckpoint(payload)
	if err != nil {
		return CheckpointInfo{}, apierror.New(apierror.BadRequest, "%v", err)
	}
	if !seal {
		return c.Checkpoint(ctx)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return c.Seal(ctx)
}
