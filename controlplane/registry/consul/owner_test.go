package consul_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/controlplane/registry/consul"
	"github.com/xfaas/xfaas/internal/consultest"
)

// ownerSession returns the Consul session that holds the lease of
// (fn, session) under opts, or "".
func ownerSession(t *testing.T, c *api.Client, opts consul.Options, session string) string {
	t.Helper()
	p, _, err := c.KV().Get(opts.OwnerKeyPrefix+"fn/"+session, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil {
		return ""
	}
	return p.Session
}

func acquire(t *testing.T, r *consul.Registry, session string) bool {
	t.Helper()
	won, err := r.AcquireOwner(context.Background(), "fn", session)
	if err != nil {
		t.Fatal(err)
	}
	return won
}

// A control plane whose Consul session ends while it lives (a partition
// longer than the TTL; here an operator destroys it) loses its leases: the
// key goes with the session, another replica takes it, and the first one,
// asking again, is told so instead of taking it back.
func ownerSessionEnds(t *testing.T, agent *consultest.Agent, opts consul.Options) {
	a := newRegistry(t, agent.NewClient(t), opts)
	b := newRegistry(t, agent.NewClient(t), opts)
	if !acquire(t, a, "s1") || acquire(t, b, "s1") {
		t.Fatal("a should hold the lease, b not")
	}
	id := ownerSession(t, agent.Client, opts, "s1")
	if id == "" {
		t.Fatal("the lease key names no session")
	}
	if _, err := agent.Client.Session().Destroy(id, nil); err != nil {
		t.Fatal(err)
	}
	if got := ownerSession(t, agent.Client, opts, "s1"); got != "" {
		t.Fatalf("the lease outlived its session: held by %s", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !acquire(t, b, "s1") {
		if time.Now().After(deadline) {
			t.Fatal("b never took the lease of a's ended session")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if acquire(t, a, "s1") {
		t.Fatal("a took back a lease b holds")
	}
	// a has a new session for what it asks next.
	if !acquire(t, a, "s2") {
		t.Fatal("a could not take a free lease with a new session")
	}
	if got := ownerSession(t, agent.Client, opts, "s2"); got == "" || got == id {
		t.Fatalf("s2 held by session %q; want a new one, not %q", got, id)
	}
}

// After a holder's session ends, nobody, not even a new session of the
// same process, takes the lease before the lock delay has passed: that is
// the time a partitioned owner has to notice it is one no more.
func ownerLockDelay(t *testing.T, agent *consultest.Agent, opts consul.Options) {
	a := newRegistry(t, agent.NewClient(t), opts)
	b := newRegistry(t, agent.NewClient(t), opts)
	if !acquire(t, a, "s1") {
		t.Fatal("a could not take a free lease")
	}
	ended := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if acquire(t, b, "s1") {
		t.Fatalf("b took the lease %v after its holder ended; the lock delay is %v", time.Since(ended), opts.OwnerLockDelay)
	}
	deadline := time.Now().Add(opts.OwnerLockDelay + 5*time.Second)
	for !acquire(t, b, "s1") {
		if time.Now().After(deadline) {
			t.Fatal("b never took the lease after the lock delay")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if waited := time.Since(ended); waited < opts.OwnerLockDelay-100*time.Millisecond {
		t.Fatalf("b took the lease after %v, before the lock delay of %v", waited, opts.OwnerLockDelay)
	}
}
