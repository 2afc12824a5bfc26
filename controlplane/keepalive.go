package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/proxy"
)

// errNotActive: the namespace is not (or no longer) this control plane's
// live namespace of its session.
var errNotActive = errors.New("session namespace is not active")

// retire checkpoints a namespace and releases its containers: keep-alive
// after keep_alive_s idle, evict, a new function version, shutdown. See
// RATIONALE.md, "Checkpoints". New requests of the session wait while it
// retires and then start it again, restored from the checkpoint. When the
// checkpoint fails, nothing is released and the namespace serves on: state
// is never dropped for want of a checkpoint. A namespace adopted from
// another control plane is a conflict: its owner checkpoints and releases
// it. So is one whose owner lease another replica took meanwhile: retire
// asks the registry for it right before the checkpoint, and leaves the
// namespace adopted when the answer is no.
func (s *Scheduler) retire(ctx context.Context, ns *namespace, reason string) (proxy.CheckpointInfo, error) {
	key := nsKey{ns.fn.Name, ns.session}
	if ns.adopted() {
		return proxy.CheckpointInfo{}, errOwnedElsewhere(ns.session)
	}
	s.mu.Lock()
	if s.namespaces[key] != ns || s.starting[key] != nil {
		s.mu.Unlock()
		return proxy.CheckpointInfo{}, errNotActive
	}
	delete(s.namespaces, key)
	gate := &coldStart{done: make(chan struct{}), retry: true}
	s.starting[key] = gate
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.starting[key] == gate {
			delete(s.starting, key)
		}
		s.mu.Unlock()
		close(gate.done)
	}()

	ns.mu.Lock()
	ns.dead, ns.retiring = true, true
	ns.wakeAllLocked()
	ns.mu.Unlock()
	revert := func(err error) (proxy.CheckpointInfo, error) {
		// A primary that died while it was checkpointed takes the
		// namespace with it, as it would have if it was active: the
		// backend's report of it finds no active namespace, so nothing
		// else would forget it, and it would come back routing to a dead
		// container.
		if p := ns.primaryMember(); p != nil && p.gone() {
			s.forget(ns)
			return proxy.CheckpointInfo{}, errPrimaryDiedRetiring
		}
		// Both locks, as forget takes them: a namespace forget emptied
		// meanwhile (a request found the primary gone) stays forgotten.
		s.mu.Lock()
		ns.mu.Lock()
		forgotten := len(ns.members) == 0
		if !forgotten {
			ns.dead, ns.retiring = false, false
			s.namespaces[key] = ns
		}
		ns.mu.Unlock()
		s.mu.Unlock()
		if forgotten {
			return proxy.CheckpointInfo{}, errPrimaryDiedRetiring
		}
		s.log.Warn("session not retired; it stays active", "function", key.fn, "session", key.session, "reason", reason, "error", err)
		return proxy.CheckpointInfo{}, err
	}

	// Drain: the requests routed before now finish first.
	for ns.busy() {
		select {
		case <-ctx.Done():
			return revert(apierror.New(apierror.Timeout, "requests of the session did not finish in time to checkpoint it"))
		case <-time.After(2 * time.Millisecond):
		}
	}
	p := ns.primaryMember() // retiring: the members stay until forget, unless the primary died
	if p == nil {
		return proxy.CheckpointInfo{}, errPrimaryDiedRetiring
	}
	if err := s.confirmOwner(ctx, ns, p); err != nil {
		return revert(err)
	}
	start := time.Now()
	// Sealed: requests that adopters route here, and state writes of their
	// secondaries, are refused from the snapshot on instead of answered
	// and lost with the container.
	info, err := p.client.Seal(ctx)
	if err != nil {
		return revert(err)
	}
	s.m.checkpoint.Observe(time.Since(start).Seconds())
	s.noteCheckpoint(key, info)
	s.log.Info("session retired", "function", key.fn, "session", key.session, "reason", reason,
		"seq", info.Seq, "keys", info.Keys, "bytes", info.Bytes, "durable", info.Durable)
	s.forget(ns)
	return info, nil
}

// confirmOwner asks the registry whether this control plane still holds
// the owner lease of ns, whose primary is p, just before a retire
// checkpoints and releases it. Placing or taking over the primary took the
// lease, but this process's registry session may have ended since (on
// Consul: a partition longer than its TTL), and another replica may have
// taken the lease and be retiring the namespace too. A lease that is free
// again is taken back: nobody acted as owner meanwhile. One held by
// another replica makes ns adopted: that replica retires it.
func (s *Scheduler) confirmOwner(ctx context.Context, ns *namespace, p *member) error {
	won, err := s.opts.Registry.AcquireOwner(ctx, ns.fn.Name, ns.session)
	if err != nil {
		return &apierror.Error{Kind: apierror.Unavailable, RetryAfter: 1,
			Message: fmt.Sprintf("the registry could not confirm that this control plane owns session %s: %v", ns.session, err)}
	}
	if won {
		return nil
	}
	ns.mu.Lock()
	if ns.primary() == p {
		p.owned = false
	}
	ns.mu.Unlock()
	s.log.Warn("another control plane took over the session; leaving it to that one", "function", ns.fn.Name, "session", ns.session)
	return errOwnedElsewhere(ns.session)
}

var errPrimaryDiedRetiring = apierror.New(apierror.Unavailable, "the session's primary died while it was being checkpointed")

// busy reports whether requests routed to the namespace are running.
func (ns *namespace) busy() bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, m := range ns.members {
		if m.inflight > 0 {
			return true
		}
	}
	return false
}

// owned reports whether this control plane placed the namespace's live
// primary (rather than adopting it from another replica).
func (ns *namespace) owned() bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	p := ns.primary()
	return !ns.dead && p != nil && p.owned
}

// adopted reports whether the namespace's primary is another control
// plane's to retire.
func (ns *namespace) adopted() bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	p := ns.primary()
	return p != nil && !p.owned
}

// idle reports whether the namespace has run nothing for d.
func (ns *namespace) idle(d time.Duration) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.dead || time.Since(ns.lastUsed) < d {
		return false
	}
	for _, m := range ns.members {
		if m.inflight > 0 {
			return false
		}
	}
	return true
}

// keepAlive retires the namespaces idle for their function's keep_alive_s.
// An idle namespace adopted from another control plane is retired too if
// its owner lease is free (the owner ended, so nobody else will), else only
// dropped from the cache: its owner checkpoints it.
func (s *Scheduler) keepAlive() {
	for _, ns := range s.all() {
		s.leaseAsync(ns)
		if !ns.idle(ns.fn.Config.KeepAlive()) {
			continue
		}
		if !ns.owned() {
			s.takeOverAsync(ns)
			continue
		}
		s.retireAsync(ns, "idle")
	}
}

// leaseAsked bounds how often keep-alive asks for the owner lease of a
// namespace it placed without it (leaseAsync).
const leaseAsked = time.Second

// leaseAsync asks for the owner lease of a namespace whose primary this
// control plane placed while the lease was not free, in the background, at
// most once a leaseAsked: the previous holder releases it, or its lock
// delay ends, within seconds, and another replica's sweep acts on an
// unowned claim only after two sightings a SweepInterval apart.
func (s *Scheduler) leaseAsync(ns *namespace) {
	ns.mu.Lock()
	p := ns.primary()
	ask := p != nil && p.owned && p.unleased && !ns.ownerCheck && time.Since(ns.leaseAsk) >= leaseAsked
	if ask {
		ns.ownerCheck, ns.leaseAsk = true, time.Now()
	}
	ns.mu.Unlock()
	if !ask {
		return
	}
	s.goTracked(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		won := s.takeOwner(ctx, ns.fn.Name, ns.session)
		ns.mu.Lock()
		if won && ns.primary() == p {
			p.unleased = false
		}
		ns.ownerCheck = false
		ns.mu.Unlock()
	})
}

// takeOverAsync asks for the owner lease of an idle adopted namespace in
// the background, one ask at a time per namespace, since the registry is
// a network away: won, the namespace is this control plane's and retires;
// lost, it is dropped from the cache as before. Asking only when the
// namespace is idle keeps it to one registry write per adopted namespace
// and keep_alive_s, and that is when a retire is due.
func (s *Scheduler) takeOverAsync(ns *namespace) {
	ns.mu.Lock()
	busy := ns.ownerCheck
	ns.ownerCheck = true
	ns.mu.Unlock()
	if busy {
		return
	}
	s.goTracked(func() { // unless Close has begun: it drops every namespace
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		won := s.takeOwner(ctx, ns.fn.Name, ns.session)
		ns.mu.Lock()
		p := ns.primary()
		owned := won && !ns.dead && p != nil
		if owned {
			p.owned = true
		}
		ns.ownerCheck = false
		ns.mu.Unlock()
		switch {
		case owned:
			s.log.Info("took over an idle session whose owner is gone", "function", ns.fn.Name, "session", ns.session, "container", p.c.ID)
			s.retireAsync(ns, "idle")
		case won:
			// Forgotten meanwhile (its primary died): the lease is free
			// for whoever starts the session next.
			s.releaseOwner(ctx, ns.fn.Name, ns.session)
		default:
			s.forget(ns)
		}
	})
}

// Evict checkpoints a session now and releases its containers. It returns
// errNotActive (a 404) when the session is not active here.
func (s *Scheduler) Evict(ctx context.Context, fn, session string) (proxy.CheckpointInfo, error) {
	ns := s.active(fn, session)
	if ns == nil {
		return proxy.CheckpointInfo{}, errNotActive
	}
	return s.retire(ctx, ns, "evict")
}

// Checkpoint checkpoints an active session without stopping it. Requests
// may run meanwhile: each key's value in the checkpoint is one that was
// committed, and every write acknowledged before the call is in it.
func (s *Scheduler) Checkpoint(ctx context.Context, fn, session string) (proxy.CheckpointInfo, error) {
	ns := s.active(fn, session)
	if ns == nil {
		return proxy.CheckpointInfo{}, errNotActive
	}
	ns.mu.Lock()
	var p *member
	owned := false
	if !ns.dead {
		p = ns.primary()
		owned = p != nil && p.owned
	}
	ns.mu.Unlock()
	if p == nil {
		return proxy.CheckpointInfo{}, errNotActive
	}
	if !owned {
		return proxy.CheckpointInfo{}, errOwnedElsewhere(session)
	}
	start := time.Now()
	info, err := p.client.Checkpoint(ctx)
	if err == nil {
		s.m.checkpoint.Observe(time.Since(start).Seconds())
		s.noteCheckpoint(nsKey{fn, session}, info)
	}
	return info, err
}

func errOwnedElsewhere(session string) error {
	return apierror.New(apierror.Conflict, "session %s is owned by another control plane", session)
}

func (s *Scheduler) active(fn, session string) *namespace {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.namespaces[nsKey{fn, session}]
}

// Upgrade retires the namespaces that run an older version of f, so the
// next request restores their state into the new version (checkpoint,
// swap, restore). It does not block. A namespace adopted from another
// control plane is left to its owner, which gets the same version; when
// the owner retires it, primaryChanged drops it here.
func (s *Scheduler) Upgrade(f *Function) {
	for _, ns := range s.all() {
		if ns.fn.Name != f.Name || ns.fn.Version >= f.Version || !ns.owned() {
			continue
		}
		s.retireAsync(ns, "upgrade")
	}
}

// retireAsync retires ns in the background, bounded by StartTimeout; the
// scheduler's Close waits for it. A failure leaves the namespace active
// (retire says why in the log).
func (s *Scheduler) retireAsync(ns *namespace, reason string) {
	s.goTracked(func() { // unless Close has begun: it retires every namespace it owns itself
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.StartTimeout)
		defer cancel()
		_, _ = s.retire(ctx, ns, reason)
	})
}

// retireAll checkpoints every namespace this control plane owns, at
// shutdown, so that `xfaas dev` restarted on the same data keeps every
// session. It waits at most until ctx is done.
func (s *Scheduler) retireAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ns := range s.all() {
		if ns.owned() {
			wg.Go(func() { _, _ = s.retire(ctx, ns, "shutdown") })
		}
	}
	wg.Wait()
}

// noteCheckpoint remembers the seq of a session's latest durable
// checkpoint, so its next primary can trust a node copy with that seq
// without asking the durable tier (proxy.Binding.RestoreSeq). Only this
// control plane's checkpoints are known; 0 means "ask".
func (s *Scheduler) noteCheckpoint(key nsKey, info proxy.CheckpointInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if info.Durable {
		s.checkpointSeq[key] = info.Seq
	} else {
		delete(s.checkpointSeq, key)
	}
}

func (s *Scheduler) knownCheckpoint(fn, session string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpointSeq[nsKey{fn, session}]
}
