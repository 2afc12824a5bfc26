package controlplane

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/proxy"
)

// member is one container of a namespace, as this control plane sees it.
// inflight counts the requests this control plane has routed to it, and
// lastUsed is when one last started or ended there (a secondary idle for
// SecondaryIdle is released); both are guarded by the namespace's mu, and
// so is owned once the member is in a namespace.
type member struct {
	c        placement.Container
	role     proxy.Role
	client   *proxy.Client
	inflight int
	lastUsed time.Time
	// owned: this control plane may retire and release the member. A
	// secondary is owned by the control plane that placed it. A primary
	// is owned by the one that placed it, or that took the namespace's
	// owner lease after adopting it (keepalive.go); it stops being owned
	// when a retire finds the lease held by another replica.
	owned bool
	// unleased: an owned primary placed while the namespace's owner lease
	// was not free yet; keep-alive asks for the lease until it has it.
	unleased bool
}

// namespace routes the requests of one session namespace. See RATIONALE.md,
// "Scheduling: vertical first, then the primary's node, then spread".
type namespace struct {
	fn      *Function // the function version the namespace was created with
	session string
	sched   *Scheduler

	mu       sync.Mutex
	members  []*member // members[0] is the primary
	copying  int       // CopySessions under way
	waiters  []chan struct{}
	lastUsed time.Time
	dead     bool // the primary is gone: new requests need a new namespace
	retiring bool // being checkpointed and released (keepalive.go)
	// ownerCheck: keep-alive is asking the registry for the owner lease of
	// the namespace (adopted, or placed here without the lease), so that
	// it asks once at a time.
	ownerCheck bool
	leaseAsk   time.Time // the last leaseAsync
}

// goneGrace is how long a member whose invocation connection failed may
// take to show its management connection ended too. A container that dies
// breaks both at once, but the management connection's reader may notice a
// moment later.
const goneGrace = 50 * time.Millisecond

// gone reports whether m's container has ended: its management connection
// did, or does within goneGrace.
func (m *member) gone() bool {
	t := time.NewTimer(goneGrace)
	defer t.Stop()
	select {
	case <-m.client.Done():
		return true
	case <-t.C:
		return false
	}
}

func (ns *namespace) isRetiring() bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.retiring
}

// primary returns the primary, or nil once forget has emptied the
// namespace: a namespace being forgotten is still in the hands of requests,
// retires and CopySessions that took it before.
func (ns *namespace) primary() *member {
	if len(ns.members) == 0 {
		return nil
	}
	return ns.members[0]
}

// primaryMember is primary for a caller without ns.mu.
func (ns *namespace) primaryMember() *member {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.primary()
}

// acquire picks the container for one request and counts it in flight.
// It may start a CopySession, wait in the namespace's queue, or refuse with
// 429 when the queue is full.
func (ns *namespace) acquire(ctx context.Context) (*member, error) {
	for {
		ns.mu.Lock()
		if ns.dead || len(ns.members) == 0 {
			ns.mu.Unlock()
			return nil, errNamespaceGone
		}
		if m := ns.pickLocked(); m != nil {
			m.inflight++
			m.lastUsed = time.Now()
			ns.lastUsed = m.lastUsed
			ns.mu.Unlock()
			return m, nil
		}
		if len(ns.members)+ns.copying < ns.fn.Config.MaxContainers {
			ns.copying++
			ns.mu.Unlock()
			m, err := ns.copySession(ctx)
			if err == nil {
				return m, nil
			}
			ns.mu.Lock()
			if ns.dead {
				ns.mu.Unlock()
				return nil, errNamespaceGone
			}
			ns.sched.log.Warn("copy session failed; queueing", "function", ns.fn.Name, "session", ns.session, "error", err)
		}
		if len(ns.waiters) >= ns.queueLimit() {
			ns.mu.Unlock()
			return nil, &apierror.Error{Kind: apierror.Overloaded, RetryAfter: 1,
				Message: fmt.Sprintf("session is at %d containers of %d workers and %d requests are queued",
					len(ns.members), ns.fn.Config.MaxWorkers, len(ns.waiters))}
		}
		wake := make(chan struct{}, 1)
		ns.waiters = append(ns.waiters, wake)
		ns.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			ns.dropWaiter(wake)
			return nil, apierror.New(apierror.Timeout, "no worker of the session became free before the deadline")
		}
	}
}

// queueLimit bounds the requests waiting for a worker of the namespace:
// four times what the namespace runs at once at max_containers (the same
// headroom a container's own queue has), so that a burst waits for the
// secondaries being added rather than being refused; past that, 429.
func (ns *namespace) queueLimit() int {
	return 4 * ns.fn.Config.MaxContainers * ns.fn.Config.MaxWorkers
}

// pickLocked returns the member that should take a request, or nil when
// every member is at max_workers: the primary first, then a secondary on
// the primary's node (the busiest with room, to pack), then any secondary.
func (ns *namespace) pickLocked() *member {
	maxW := ns.fn.Config.MaxWorkers
	p := ns.primary()
	if p == nil {
		return nil
	}
	if p.inflight < maxW {
		return p
	}
	var sameNode, other *member
	for _, m := range ns.members[1:] {
		if m.inflight >= maxW {
			continue
		}
		if m.c.Node == p.c.Node {
			if sameNode == nil || m.inflight > sameNode.inflight {
				sameNode = m
			}
		} else if other == nil || m.inflight > other.inflight {
			other = m
		}
	}
	if sameNode != nil {
		return sameNode
	}
	return other
}

// release ends a request on m and wakes the longest waiter.
func (ns *namespace) release(m *member) {
	ns.mu.Lock()
	m.inflight--
	m.lastUsed = time.Now()
	ns.lastUsed = m.lastUsed
	ns.wakeLocked()
	ns.mu.Unlock()
}

// wakeAllLocked wakes every queued request, when the namespace dies: they
// see it dead and go on to its successor.
func (ns *namespace) wakeAllLocked() {
	for _, w := range ns.waiters {
		w <- struct{}{} // buffered, one wake-up each
	}
	ns.waiters = nil
}

func (ns *namespace) wakeLocked() {
	if len(ns.waiters) > 0 {
		w := ns.waiters[0]
		ns.waiters = ns.waiters[1:]
		w <- struct{}{}
	}
}

func (ns *namespace) dropWaiter(w chan struct{}) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for i, x := range ns.waiters {
		if x == w {
			ns.waiters = append(ns.waiters[:i], ns.waiters[i+1:]...)
			return
		}
	}
	// Woken and gave up at once: pass the wake-up on.
	ns.wakeLocked()
}

// copySession binds a new secondary (CopySession): on the primary's node
// if it has room, else on the least-loaded node. The new member takes the
// request that asked for it.
func (ns *namespace) copySession(ctx context.Context) (*member, error) {
	s := ns.sched
	var m *member
	node, addr, err := ns.primaryPlace()
	if err == nil {
		start := time.Now()
		if m, err = s.startMember(ctx, ns.fn, ns.session, proxy.RoleSecondary, node, addr); err == nil {
			s.m.copySession.Observe(time.Since(start).Seconds())
		}
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.copying--
	if err != nil {
		return nil, err
	}
	if ns.dead {
		go s.stopMember(m)
		return nil, errNamespaceGone
	}
	m.inflight++
	m.lastUsed = time.Now()
	ns.members = append(ns.members, m)
	ns.lastUsed = m.lastUsed
	return m, nil
}

// primaryPlace returns the primary's node and address for a CopySession,
// or errNamespaceGone once the namespace is dead or forgotten (acquire
// lets go of the lock before it starts one).
func (ns *namespace) primaryPlace() (node, addr string, err error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	p := ns.primary()
	if ns.dead || p == nil {
		return "", "", errNamespaceGone
	}
	return p.c.Node, p.c.Addr, nil
}

// remove drops a member that is gone and returns it (nil if it is not
// one). Losing the primary kills the namespace: the state lived there.
func (ns *namespace) remove(id string) (m *member, wasPrimary bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for i, m := range ns.members {
		if m.c.ID != id {
			continue
		}
		if i == 0 {
			ns.dead = true
			for range ns.waiters {
				ns.wakeLocked()
			}
			return m, true
		}
		ns.members = append(ns.members[:i], ns.members[i+1:]...)
		ns.wakeLocked()
		return m, false
	}
	return nil, false
}

var errNamespaceGone = apierror.New(apierror.Unavailable, "the session's primary container is gone")
