package controlplane

import (
	"context"
	"errors"
	"time"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/proxy"
)

// sweepCallTimeout bounds a sweep's read of the registry, and the takeover
// of one namespace: its lease, and adopting or releasing its primary.
const sweepCallTimeout = 10 * time.Second

// sweepLoop sweeps the registry every SweepInterval until Close, which
// cancels a sweep under way. See RATIONALE.md, "Who retires a namespace.".
func (s *Scheduler) sweepLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ends with the loop, at the latest
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick := time.NewTicker(s.opts.SweepInterval)
	defer tick.Stop()
	var seen map[nsKey]sighting
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		seen = s.sweep(ctx, seen)
	}
}

// sighting is when a sweep first saw a namespace's claim, naming
// container, without an owner lease.
type sighting struct {
	container string
	since     time.Time
}

// sweep takes over the namespaces whose owner is gone and that nobody
// routes to here: the claims Unowned returns that are not in this control
// plane's cache. It acts on a claim only when the previous sweep saw it
// unowned too, naming the same primary (seen), and returns what this sweep
// saw: a claim shows unowned for the moment between its placer's
// ClaimPrimary and AcquireOwner, so a claim must stay unowned for a whole
// SweepInterval first. One registry read per sweep, and a probe of the
// primary and a lease request per orphan: a namespace whose owner lives is
// not asked about.
func (s *Scheduler) sweep(ctx context.Context, seen map[nsKey]sighting) map[nsKey]sighting {
	s.m.sweeps.Inc()
	lctx, cancel := context.WithTimeout(ctx, sweepCallTimeout)
	claims, err := s.opts.Registry.Unowned(lctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("failed to sweep the registry for sessions whose owner is gone", "error", err)
		}
		return seen
	}
	now := make(map[nsKey]sighting, len(claims))
	for _, c := range claims {
		if ctx.Err() != nil {
			break
		}
		key := nsKey{c.Function, c.Session}
		if s.cached(key) {
			continue
		}
		sight, again := seen[key]
		if !again || sight.container != c.Container {
			now[key] = sighting{container: c.Container, since: time.Now()}
			continue
		}
		now[key] = sight
		s.takeOverOrphan(ctx, c, sight.since)
	}
	return now
}

// cached reports whether this control plane has (or is starting, or
// retiring) the namespace: its own requests and keep-alive look after it.
func (s *Scheduler) cached(key nsKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.namespaces[key] != nil || s.starting[key] != nil
}

// takeOverOrphan makes a namespace whose owner is gone this control
// plane's, if it wins the namespace's owner lease: adopted into the cache
// as an owned one, which keep-alive checkpoints and releases once it has
// been idle for keep_alive_s since the takeover; or released at once
// without a checkpoint when its function was deleted or its primary
// cannot be reached. A lease it does not win has a live owner, or one that
// ended less than a lock delay ago: the next sweep asks again. The primary
// is looked at before the lease is asked for: one that is not bound yet
// is being placed, and its placer takes the lease right after its claim
// (on Consul that can take a while: the claim's service registration
// waits for the catalog), so the lease is left to it, unless the claim
// has been unowned since longer ago than a placement may take: then its
// placer died before the bind, and the claim is released.
func (s *Scheduler) takeOverOrphan(sweepCtx context.Context, c registry.Registration, unownedSince time.Time) {
	ctx, cancel := context.WithTimeout(sweepCtx, sweepCallTimeout)
	defer cancel()
	m, err := s.adopt(ctx, c)
	binding := errors.Is(err, errUnbound) && time.Since(unownedSince) < s.opts.StartTimeout
	if sweepCtx.Err() != nil || binding || !s.takeOwner(ctx, c.Function, c.Session) {
		// Close cut the sweep short, or the primary is being placed, or
		// its owner lives.
		if err == nil {
			m.client.Close()
		}
		return
	}
	fn, deployed := s.opts.Functions.Lookup(c.Function)
	switch {
	case !deployed:
		s.log.Info("releasing a session whose owner is gone and whose function was deleted", "function", c.Function, "session", c.Session, "container", c.Container)
	case err != nil:
		s.log.Warn("releasing a session whose owner is gone and whose primary cannot be adopted", "function", c.Function, "session", c.Session, "container", c.Container, "error", err)
	}
	if !deployed || err != nil {
		if err == nil {
			m.client.Close()
		}
		s.dropOrphan(c)
		return
	}
	m.owned = true
	ns := s.newNamespace(fn, c.Session, m)
	key := nsKey{c.Function, c.Session}
	s.mu.Lock()
	free := s.namespaces[key] == nil && s.starting[key] == nil
	if free {
		s.namespaces[key] = ns
	}
	s.mu.Unlock()
	if !free {
		// A request started the session here meanwhile: its ColdSession
		// adopts the primary and keeps the lease taken here.
		m.client.Close()
		return
	}
	s.m.orphans.WithLabelValues("adopted").Inc()
	s.log.Info("took over a session whose owner is gone", "function", c.Function, "session", c.Session, "container", c.Container)
}

// dropOrphan releases a namespace whose owner lease this control plane
// took from a gone owner, without a checkpoint, as forget releases an
// owned namespace: the claim, a "down" for the replicas that adopted it,
// the container and its registration, then the lease.
func (s *Scheduler) dropOrphan(c registry.Registration) {
	p := &member{c: placement.Container{ID: c.Container, Node: c.Node, Addr: c.Addr}, role: proxy.RolePrimary, owned: true}
	s.forget(&namespace{fn: &Function{Name: c.Function}, session: c.Session, sched: s, members: []*member{p}})
	s.m.orphans.WithLabelValues("released").Inc()
}
