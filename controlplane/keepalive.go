package controlplane

import (
	"context"
	"errors"
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
// it.
func (s *Scheduler) retire(ctx context.Context, ns *namespace, reason string) (proxy.CheckpointInfo, error) {
	key := nsKey{ns.fn.Name, ns.session}
	if p := ns.primaryMember(); p != nil && !p.owned {
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
	start := time.Now()
	info, err := p.client.Checkpoint(ctx)
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
// A namespace adopted from another control plane is only dropped from the
// cache: its owner checkpoints it.
func (s *Scheduler) keepAlive() {
	for _, ns := range s.all() {
		if !ns.idle(ns.fn.Config.KeepAlive()) {
			continue
		}
		if !ns.owned() {
			go s.forget(ns)
			continue
		}
		s.retireAsync(ns, "idle")
	}
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
	if !ns.dead {
		p = ns.primary()
	}
	ns.mu.Unlock()
	if p == nil {
		return proxy.CheckpointInfo{}, errNotActive
	}
	if !p.owned {
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return // Close retires every namespace it owns itself
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.StartTimeout)
		defer cancel()
		_, _ = s.retire(ctx, ns, reason)
	}()
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
