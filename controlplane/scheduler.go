package controlplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/controlplane/bus"
	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy"
)

// ModuleSource returns a module's bytes by digest.
type ModuleSource interface {
	Module(ctx context.Context, digest string) ([]byte, error)
}

// FunctionSource returns the current version of a function, or false for
// one that is not deployed.
type FunctionSource interface {
	Lookup(name string) (*Function, bool)
}

// Announcer tells other sessions and control-plane replicas where a
// session's containers are (NATS subject xfaas.addr.<function>.<session>).
type Announcer interface {
	Announce(r registry.Registration, up bool)
}

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	Backend  placement.Backend
	Registry registry.Registry
	Modules  ModuleSource
	// Functions says which version of each function is current: a
	// ColdSession starts on it, and one that ends after its function was
	// deleted or redeployed installs nothing. It must show a deletion or a
	// new version before EvictFunction or Upgrade is called for it.
	// Optional: without it, the version a request carries is current.
	Functions FunctionSource
	Announcer Announcer // optional
	// SecondaryIdle is how long a secondary may sit idle before it is
	// released. The default is 30 s.
	SecondaryIdle time.Duration
	// StartTimeout bounds a ColdSession or CopySession. The default is 30 s.
	StartTimeout time.Duration
	// SweepInterval is how often the registry's claims are swept for
	// namespaces whose owner is gone and that no request brings here
	// (sweep.go); one is taken over after two sweeps in a row saw it. The
	// default is 1 min. There is no sweep without Functions, which says
	// what such a namespace runs.
	SweepInterval time.Duration
	Metrics       *Metrics
	Logger        hclog.Logger
}

// Scheduler places session namespaces and routes their requests.
type Scheduler struct {
	opts SchedulerOptions
	log  hclog.Logger
	m    *Metrics

	mu         sync.Mutex
	namespaces map[nsKey]*namespace
	starting   map[nsKey]*coldStart
	// checkpointSeq is the seq of each session's latest checkpoint taken
	// by this control plane (keepalive.go).
	checkpointSeq map[nsKey]uint64
	// unbound is when a request first found each claimed primary not yet
	// bound (adoptRegistered).
	unbound map[string]time.Time
	// closed: Close has begun. Guarded by mu, which every wg.Add of a
	// request or a function-store hook holds, so that none is added while
	// Close waits (a WaitGroup must not grow from zero during Wait).
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
}

type nsKey struct{ fn, session string }

var errSchedulerClosed = &apierror.Error{Kind: apierror.Unavailable, RetryAfter: 1, Message: "the control plane is shutting down"}

// coldStart lets concurrent first requests of a session share one
// ColdSession.
type coldStart struct {
	done chan struct{}
	ns   *namespace
	err  error
	// retry: the namespace was retiring (checkpoint, then release); the
	// waiters look it up again.
	retry bool
}

// NewScheduler starts a scheduler; it watches for lost containers, trims
// idle secondaries and sweeps for namespaces whose owner is gone until
// Close.
func NewScheduler(opts SchedulerOptions) *Scheduler {
	if opts.SecondaryIdle <= 0 {
		opts.SecondaryIdle = 30 * time.Second
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	s := &Scheduler{opts: opts, log: opts.Logger, m: opts.Metrics,
		namespaces: map[nsKey]*namespace{}, starting: map[nsKey]*coldStart{}, checkpointSeq: map[nsKey]uint64{}, unbound: map[string]time.Time{}, stop: make(chan struct{})}
	s.wg.Add(2)
	go s.watchLost()
	go s.trimLoop()
	if opts.Functions != nil {
		s.goTracked(s.sweepLoop)
	}
	return s
}

// Result is a served request: the output and who served it.
type Result struct {
	Output    []byte
	Container string
	Node      string
	Role      proxy.Role
}

// Invoke routes one request of (fn, session) to a container of its
// namespace, creating the namespace on the first request.
func (s *Scheduler) Invoke(ctx context.Context, fn *Function, session string, input []byte) (Result, error) {
	for attempt := 0; ; attempt++ {
		ns, err := s.namespace(ctx, fn, session)
		if err != nil {
			return Result{}, err
		}
		m, err := ns.acquire(ctx)
		if errors.Is(err, errNamespaceGone) && attempt < 3 {
			if !ns.isRetiring() {
				s.forget(ns) // the primary died before this request reached it
			}
			continue // a retiring namespace starts again, restored
		}
		if err != nil {
			return Result{}, err
		}
		out, err := m.client.Invoke(ctx, input)
		ns.release(m)
		if err != nil && !answered(err) {
			// Whether the request ran is unknown, so it is not retried.
			return Result{}, s.unanswered(ctx, ns, m, err)
		}
		return Result{Output: out, Container: m.c.ID, Node: m.c.Node, Role: m.role}, err
	}
}

// answered reports whether err is the container's answer to a request,
// rather than a failure to get one.
func answered(err error) bool {
	var ae *apierror.Error
	return errors.As(err, &ae) && !errors.Is(err, wire.ErrClosed)
}

// unanswered maps a request that got no answer from m. Only a container
// whose management connection has ended is taken for gone: a caller that
// gave up, or one invocation connection that could not be made or broke,
// says nothing about the container, and forgetting a primary drops the
// session's state.
func (s *Scheduler) unanswered(ctx context.Context, ns *namespace, m *member, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return apierror.New(apierror.Timeout, "the request ended before container %s answered", m.c.ID)
	}
	if m.gone() {
		s.memberGone(ns, m.c.ID)
		return apierror.New(apierror.Unavailable, "container %s went away during the request", m.c.ID)
	}
	s.log.Warn("container did not answer a request", "function", ns.fn.Name, "session", ns.session, "container", m.c.ID, "error", err)
	return &apierror.Error{Kind: apierror.Unavailable, RetryAfter: 1,
		Message: fmt.Sprintf("container %s could not be reached", m.c.ID)}
}

// namespace returns the live namespace of (fn, session), or creates it.
func (s *Scheduler) namespace(ctx context.Context, fn *Function, session string) (*namespace, error) {
	key := nsKey{fn.Name, session}
	for {
		s.mu.Lock()
		if ns := s.namespaces[key]; ns != nil {
			s.mu.Unlock()
			return ns, nil
		}
		cs := s.starting[key]
		if cs == nil && s.closed {
			s.mu.Unlock()
			return nil, errSchedulerClosed
		}
		if cs == nil {
			// A request that waited for a retire or an outdated
			// ColdSession may carry a version that is no longer current.
			cur, err := s.currentLocked(fn)
			if err != nil {
				s.mu.Unlock()
				return nil, err
			}
			cs = &coldStart{done: make(chan struct{})}
			s.starting[key] = cs
			s.wg.Add(1)
			go s.coldStart(key, cur, cs)
		}
		s.mu.Unlock()
		select {
		case <-cs.done:
			if !cs.retry {
				return cs.ns, cs.err
			}
		case <-ctx.Done():
			return nil, apierror.New(apierror.Timeout, "the session did not start before the deadline")
		}
	}
}

// coldStart runs one ColdSession on behalf of every request waiting for
// it; it is not tied to the first request's deadline. A function deleted
// meanwhile gets no namespace and its requests a 404; one redeployed
// meanwhile gets none on the old version, and its requests start the
// session again on the new one.
func (s *Scheduler) coldStart(key nsKey, fn *Function, cs *coldStart) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StartTimeout)
	defer cancel()
	ns, err := s.coldSession(ctx, fn, key.session)
	// Decided under s.mu, where EvictFunction and Upgrade look for
	// namespaces: a change made after this finds the namespace there, and
	// one made before shows in Functions here.
	s.mu.Lock()
	cur, deleted := s.currentLocked(fn)
	outdated := deleted != nil || cur.Version != fn.Version
	if err == nil && !outdated {
		s.namespaces[key] = ns
	}
	s.mu.Unlock()
	if err == nil && outdated {
		// Nothing ran on the new primary, so its state is still the
		// checkpoint it restored: it goes without a new one. It goes
		// before the session can start again (cs still holds the key),
		// so that the next ColdSession does not adopt it.
		s.log.Debug("function changed during a cold session; dropping it", "function", key.fn, "session", key.session, "version", fn.Version)
		s.forget(ns)
	}
	s.mu.Lock()
	delete(s.starting, key)
	s.mu.Unlock()
	switch {
	case deleted != nil:
		cs.err = deleted
	case outdated:
		cs.retry = true
	default:
		cs.ns, cs.err = ns, err
	}
	close(cs.done)
}

// currentLocked returns the version of fn a new namespace runs: the
// current one, or a 404 for a function that was deleted. Lock order:
// s.mu, then the function source's.
func (s *Scheduler) currentLocked(fn *Function) (*Function, error) {
	if s.opts.Functions == nil {
		return fn, nil
	}
	cur, ok := s.opts.Functions.Lookup(fn.Name)
	if !ok {
		return nil, apierror.New(apierror.NotFound, "no function %q", fn.Name)
	}
	return cur, nil
}

// coldSession creates a namespace: it adopts the primary the registry
// names if that one is alive, else binds a pool container on the
// least-loaded node as the new primary.
func (s *Scheduler) coldSession(ctx context.Context, fn *Function, session string) (*namespace, error) {
	if m, err := s.adoptRegistered(ctx, fn.Name, session); m != nil || err != nil {
		if err != nil {
			return nil, err
		}
		return s.newNamespace(fn, session, m), nil
	}
	start := time.Now()
	m, err := s.startMember(ctx, fn, session, proxy.RolePrimary, "", "")
	var lost *lostRace
	if errors.As(err, &lost) {
		// The winner may still be binding its primary.
		if m, err = s.adoptRegistered(ctx, fn.Name, session); m == nil && err == nil {
			err = fmt.Errorf("%w, and its primary is gone", lost)
		}
		if err != nil {
			return nil, err
		}
		return s.newNamespace(fn, session, m), nil
	}
	if err != nil {
		return nil, err
	}
	s.m.coldSession.Observe(time.Since(start).Seconds())
	return s.newNamespace(fn, session, m), nil
}

// adoptRegistered adopts the namespace's registered primary, taking its
// owner lease if it is free. A primary that is not bound yet is being
// placed by another control plane, which claims a container before it
// binds it (and restores the state into it): that is waited for, since
// taking it for a dead one would release its claim and place a second
// primary of the session. Only a primary found unbound for longer than a
// placement may take (StartTimeout, which its placer's bind is bounded by
// too) was abandoned. It returns nil and no error when there is no primary
// to adopt: none is registered, or the registered one cannot be reached or
// was abandoned, and then its claim is released.
func (s *Scheduler) adoptRegistered(ctx context.Context, fn, session string) (*member, error) {
	for wait := 2 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		owner, err := s.opts.Registry.Primary(ctx, fn, session)
		if err != nil {
			return nil, nil
		}
		m, err := s.adopt(ctx, owner)
		unboundFor := s.sightUnbound(owner.Container, errors.Is(err, errUnbound))
		if err == nil {
			m.owned = s.takeOwner(ctx, fn, session)
			return m, nil
		}
		if !errors.Is(err, errUnbound) || unboundFor > s.opts.StartTimeout {
			s.log.Warn("registered primary is unreachable or was never bound; replacing it", "function", fn, "session", session, "container", owner.Container, "error", err)
			_ = s.opts.Registry.ReleasePrimary(ctx, fn, session, owner.Container)
			_ = s.opts.Registry.Deregister(ctx, owner.Container)
			s.sightUnbound(owner.Container, false)
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, apierror.New(apierror.Unavailable, "session %s/%s: its primary %s is still being placed by another control plane: %v", fn, session, owner.Container, ctx.Err())
		case <-time.After(wait):
		}
	}
}

func (s *Scheduler) newNamespace(fn *Function, session string, primary *member) *namespace {
	primary.lastUsed = time.Now()
	return &namespace{fn: fn, session: session, sched: s, members: []*member{primary}, lastUsed: primary.lastUsed}
}

// takeOwner takes the namespace's owner lease for this control plane and
// reports whether it holds it. An adopted primary whose lease is free lost
// its owner (that control plane ended while the container served on), so
// this one takes over retiring it. A failure is logged and reads as not
// owned: keep-alive asks again before it would retire the namespace.
func (s *Scheduler) takeOwner(ctx context.Context, fn, session string) bool {
	won, err := s.opts.Registry.AcquireOwner(ctx, fn, session)
	if err != nil {
		s.log.Warn("failed to take a session's owner lease", "function", fn, "session", session, "error", err)
	}
	return err == nil && won
}

// releaseOwner ends this control plane's owner lease of a namespace it
// released. A failure is only logged: the lease ends with this process's
// registry session anyway, and until then no replica retires a namespace
// whose primary is gone.
func (s *Scheduler) releaseOwner(ctx context.Context, fn, session string) {
	if err := s.opts.Registry.ReleaseOwner(ctx, fn, session); err != nil {
		s.log.Warn("failed to release a session's owner lease", "function", fn, "session", session, "error", err)
	}
}

// lostRace: another control plane claimed the namespace first.
type lostRace struct{ owner registry.Registration }

func (e *lostRace) Error() string { return "namespace claimed by container " + e.owner.Container }

// startMember claims a container on node (or the least-loaded node when
// node is "" or full) and binds it to the namespace in role. A primary is
// claimed in the registry (compare-and-swap) before it is bound.
func (s *Scheduler) startMember(ctx context.Context, fn *Function, session string, role proxy.Role, node, primaryAddr string) (_ *member, err error) {
	c, hit, err := s.claim(ctx, node, placement.SizeOf(fn.Config))
	if err != nil {
		return nil, err
	}
	s.m.claims.WithLabelValues(hitLabel(hit)).Inc()
	m := &member{c: c, role: role, owned: true}
	claimed := false // the registry names m the namespace's primary
	defer func() {
		if err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if claimed {
			// Else the registry names a released container as the
			// primary, and every later ColdSession, on every replica,
			// first tries to reach it.
			_ = s.opts.Registry.ReleasePrimary(ctx, fn.Name, session, c.ID)
		}
		s.stopMember(m)
		if claimed {
			s.releaseOwner(ctx, fn.Name, session)
		}
	}()
	if m.client, err = proxy.Dial(ctx, c.Addr); err != nil {
		return nil, fmt.Errorf("connect to container %s: %w", c.ID, err)
	}
	reg := registration(fn.Name, session, m)
	if role == proxy.RolePrimary {
		owner, won, err := s.opts.Registry.ClaimPrimary(ctx, reg)
		if err != nil {
			return nil, fmt.Errorf("claim namespace: %w", err)
		}
		if !won {
			return nil, &lostRace{owner: owner}
		}
		claimed = true
		// A primary this control plane placed is its own to retire even
		// if the lease is not free yet: whoever holds it held it for the
		// namespace's previous primary and is letting go of it (the
		// lease is released last), or ended less than a lock delay ago.
		// Keep-alive asks for it until it has it (leaseAsync), well
		// before another replica's sweep would take the namespace over,
		// and retire asks again before it checkpoints.
		m.unleased = !s.takeOwner(ctx, fn.Name, session)
	}
	wasm, err := s.opts.Modules.Module(ctx, fn.Digest)
	if err != nil {
		return nil, err
	}
	err = m.client.Bind(ctx, proxy.Binding{Function: fn.Name, Session: session, Role: role,
		Config: fn.Config, Module: wasm, Digest: fn.Digest, Primary: primaryAddr,
		Restore: role == proxy.RolePrimary, RestoreSeq: s.knownCheckpoint(fn.Name, session), Incarnation: fn.Incarnation})
	if err != nil {
		return nil, fmt.Errorf("bind container %s: %w", c.ID, err)
	}
	if role == proxy.RoleSecondary {
		if err := s.opts.Registry.Register(ctx, reg); err != nil {
			return nil, err
		}
	}
	s.announce(reg, true)
	s.log.Debug("container bound", "function", fn.Name, "session", session, "role", role, "container", c.ID, "node", c.Node, "pool_hit", hit)
	return m, nil
}

// claim takes a container that holds size. A secondary (node is its
// primary's) goes on node while node has room, and fails there if node
// cannot fit size rather than going further away; anything else goes on
// the least-loaded node that fits size, and on to the next one if that one
// cannot take the container after all (RATIONALE.md, "Where a container
// fits").
func (s *Scheduler) claim(ctx context.Context, node string, size placement.Size) (placement.Container, bool, error) {
	nodes, err := s.opts.Backend.Nodes(ctx)
	if err != nil {
		return placement.Container{}, false, err
	}
	if i := slices.IndexFunc(nodes, func(n placement.Node) bool { return n.Name == node && n.Room() }); i >= 0 {
		if !nodes[i].Fits(size) {
			return placement.Container{}, false, &apierror.Error{Kind: apierror.Unavailable, RetryAfter: 1,
				Message: fmt.Sprintf("no capacity: the primary's node %s has no room for a container of %s", node, size)}
		}
		return s.opts.Backend.Claim(ctx, node, size)
	}
	spread, err := placement.Spread(nodes, size)
	if err != nil {
		return placement.Container{}, false, err
	}
	var failed []string
	for _, n := range spread {
		c, hit, err := s.opts.Backend.Claim(ctx, n.Name, size)
		if !errors.Is(err, placement.ErrNodeFull) {
			return c, hit, err
		}
		s.log.Warn("node could not take a container; trying the next", "node", n.Name, "size", size.String(), "error", err)
		failed = append(failed, err.Error())
	}
	return placement.Container{}, false, &apierror.Error{Kind: apierror.Unavailable, RetryAfter: 1,
		Message: fmt.Sprintf("no capacity: no node with room for a container of %s could take it: %s", size, strings.Join(failed, "; "))}
}

// adopt connects to a primary placed by another control plane, or before
// this one restarted, after checking that it serves the namespace.
func (s *Scheduler) adopt(ctx context.Context, owner registry.Registration) (*member, error) {
	cl, err := proxy.Dial(ctx, owner.Addr)
	if err != nil {
		return nil, err
	}
	st, err := cl.Status(ctx)
	switch {
	case err == nil && st.Role == proxy.RolePool:
		err = fmt.Errorf("container %s: %w", owner.Container, errUnbound)
	case err == nil && (st.Role != proxy.RolePrimary || st.Function != owner.Function || st.Session != owner.Session):
		err = fmt.Errorf("container %s serves %s/%s as %s", owner.Container, st.Function, st.Session, st.Role)
	}
	if err != nil {
		cl.Close()
		return nil, err
	}
	return &member{c: placement.Container{ID: owner.Container, Node: owner.Node, Addr: owner.Addr}, role: proxy.RolePrimary, client: cl}, nil
}

// sightUnbound records whether container was just found unbound, and
// returns for how long it has been found so; a container found bound, or
// gone, is forgotten.
func (s *Scheduler) sightUnbound(container string, unbound bool) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !unbound {
		delete(s.unbound, container)
		return 0
	}
	since, ok := s.unbound[container]
	if !ok {
		since = time.Now()
		s.unbound[container] = since
	}
	return time.Since(since)
}

// errUnbound: a claim names a pool container that is not bound yet. Its
// placer claims the namespace before it binds the container.
var errUnbound = errors.New("the container is not bound yet")

func registration(fn, session string, m *member) registry.Registration {
	return registry.Registration{Container: m.c.ID, Function: fn, Session: session, Role: string(m.role), Node: m.c.Node, Addr: m.c.Addr}
}

func hitLabel(hit bool) string {
	if hit {
		return "hit"
	}
	return "miss"
}

func (s *Scheduler) announce(r registry.Registration, up bool) {
	if s.opts.Announcer != nil {
		s.opts.Announcer.Announce(r, up)
	}
}

// stopMember releases a member: its registrations, its connection and, if
// this control plane placed it, the container.
func (s *Scheduler) stopMember(m *member) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if m.client != nil {
		m.client.Close()
	}
	if !m.owned {
		return
	}
	if err := s.opts.Backend.Release(ctx, m.c.ID); err != nil {
		s.log.Warn("failed to release a container", "container", m.c.ID, "error", err)
	}
	_ = s.opts.Registry.Deregister(ctx, m.c.ID)
}

// forget drops a dead namespace, releasing the primary's claim and every
// container it still has. A namespace adopted from another control plane
// is only dropped from here (its client closed): its owner releases it.
func (s *Scheduler) forget(ns *namespace) {
	key := nsKey{ns.fn.Name, ns.session}
	// Both locks at once: retire's revert, which puts a namespace back,
	// then sees it either still active or emptied, never in between.
	s.mu.Lock()
	if s.namespaces[key] == ns {
		delete(s.namespaces, key)
	}
	ns.mu.Lock()
	members := ns.members
	ns.members, ns.dead = nil, true
	ns.wakeAllLocked()
	ns.mu.Unlock()
	s.mu.Unlock()
	if len(members) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Read once: owned changes under ns.mu only while the namespace has
	// its members, and forget has taken them.
	owned := members[0].owned
	if owned {
		// An adopted primary's claim is its owner's (or, when it died, the
		// next ColdSession's) to release.
		_ = s.opts.Registry.ReleasePrimary(ctx, ns.fn.Name, ns.session, members[0].c.ID)
	}
	for _, m := range members {
		// An adopted primary is alive and another control plane's: a
		// "down" from here would tombstone it in every address table.
		if m.owned {
			s.announce(registration(ns.fn.Name, ns.session, m), false)
		}
		s.stopMember(m)
	}
	if owned {
		// Last, once the primary is released: a replica that takes the
		// lease from here on may retire this primary, and by then there
		// is nothing left of it to checkpoint stale state from.
		s.releaseOwner(ctx, ns.fn.Name, ns.session)
	}
}

// primaryChanged follows an address update about a primary: a namespace
// this control plane adopted from another replica is dropped from the cache
// when that replica reports its primary gone or replaced, so the next
// request looks the namespace up again instead of calling a dead address.
// It runs on the bus's delivery goroutine and does not block.
func (s *Scheduler) primaryChanged(u bus.Update) {
	s.mu.Lock()
	ns := s.namespaces[nsKey{u.Function, u.Session}]
	s.mu.Unlock()
	if ns == nil {
		return
	}
	ns.mu.Lock()
	stale := len(ns.members) > 0 && !ns.members[0].owned &&
		(u.State == bus.Down) == (ns.members[0].c.ID == u.Container)
	ns.mu.Unlock()
	if stale {
		s.log.Debug("adopted primary moved", "function", u.Function, "session", u.Session, "container", u.Container, "state", u.State)
		go s.forget(ns)
	}
}

// memberGone handles a container that ended: a secondary leaves its
// namespace; a primary takes the whole namespace with it. Either way the
// member is stopped like any other: its client closed, its container
// released (a no-op for both backends once the container has ended) and
// deregistered.
func (s *Scheduler) memberGone(ns *namespace, id string) {
	m, wasPrimary := ns.remove(id)
	if m == nil {
		return
	}
	if wasPrimary {
		s.log.Warn("session primary lost", "function", ns.fn.Name, "session", ns.session, "container", id)
		s.forget(ns)
		return
	}
	s.announce(registration(ns.fn.Name, ns.session, m), false)
	s.stopMember(m)
}

func (s *Scheduler) watchLost() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case c := <-s.opts.Backend.Lost():
			for _, ns := range s.all() {
				s.memberGone(ns, c.ID)
			}
		}
	}
}

func (s *Scheduler) all() []*namespace {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*namespace, 0, len(s.namespaces))
	for _, ns := range s.namespaces {
		out = append(out, ns)
	}
	return out
}

// trimLoop releases secondaries idle for SecondaryIdle (they hold no
// state) and retires namespaces idle for keep_alive_s.
func (s *Scheduler) trimLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(min(max(s.opts.SecondaryIdle/4, 10*time.Millisecond), 250*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			for _, ns := range s.all() {
				for _, m := range ns.idleSecondaries(s.opts.SecondaryIdle) {
					s.announce(registration(ns.fn.Name, ns.session, m), false)
					s.stopMember(m)
				}
			}
			s.keepAlive()
		}
	}
}

// idleSecondaries removes and returns the secondaries that have run
// nothing for idle. Each is measured on its own: the primary takes
// requests first, so under a light load the secondaries a burst added
// serve nothing while the namespace stays busy.
func (ns *namespace) idleSecondaries(idle time.Duration) []*member {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.dead || len(ns.members) < 2 {
		return nil
	}
	var out, keep []*member
	for i, m := range ns.members {
		if i > 0 && m.inflight == 0 && time.Since(m.lastUsed) >= idle {
			out = append(out, m)
		} else {
			keep = append(keep, m)
		}
	}
	ns.members = keep
	return out
}

// EvictFunction releases every namespace of fn (it was deleted).
func (s *Scheduler) EvictFunction(fn string) {
	s.mu.Lock()
	for key := range s.checkpointSeq {
		if key.fn == fn {
			delete(s.checkpointSeq, key)
		}
	}
	s.mu.Unlock()
	for _, ns := range s.all() {
		if ns.fn.Name == fn {
			s.forget(ns)
		}
	}
}

// goTracked runs f in a goroutine that Close waits for, unless Close has
// begun. It holds mu across the wg.Add (see closed).
func (s *Scheduler) goTracked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close releases every namespace and stops the scheduler.
func (s *Scheduler) Close() {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if closed {
		return
	}
	close(s.stop)
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s.retireAll(ctx)
	for _, ns := range s.all() {
		s.forget(ns)
	}
}
