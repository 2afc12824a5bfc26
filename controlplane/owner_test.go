package controlplane

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/proxy"
)

// These tests check who retires a namespace when the control plane that
// placed its primary has ended (RATIONALE.md, "Who retires a namespace."):
// the scheduler's memory registry stands for the cluster's, and a replica
// of it for another control-plane process.

// ownedElsewhere makes another control-plane process hold the owner lease
// of session "default" of function "f"; closing what it returns is that
// process ending.
func ownedElsewhere(t *testing.T, s *Scheduler, session string) *registry.Memory {
	t.Helper()
	other := s.opts.Registry.(*registry.Memory).Replica()
	if won, err := other.AcquireOwner(context.Background(), "f", session); !won || err != nil {
		t.Fatalf("the other replica could not take the lease: %v %v", won, err)
	}
	return other
}

// An idle namespace adopted from a control plane that has ended is
// checkpointed and released by keep-alive here: nobody else would.
func TestIdleSessionOfAGoneOwnerIsRetired(t *testing.T) {
	s, b, a := newTestScheduler(t)
	other := ownedElsewhere(t, s, "default")
	c := startAnsweringContainer(t)
	ns := s.newNamespace(testFunction(t), "default", c.member(t, "p-other", proxy.RolePrimary, false))
	ns.lastUsed = time.Now().Add(-time.Hour)
	install(s, ns)
	_ = other.Close() // its process ended; its container serves on
	s.keepAlive()
	for deadline := time.Now().Add(10 * time.Second); s.active("f", "default") != nil || !b.wasReleased("p-other"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the orphaned session was not retired (released: %v)", b.wasReleased("p-other"))
		}
	}
	if n := c.answered(); n != 1 {
		t.Errorf("the primary got %d calls; want one checkpoint", n)
	}
	if seq := s.knownCheckpoint("f", "default"); seq != 7 {
		t.Errorf("known checkpoint seq %d; want 7", seq)
	}
	if !slices.Contains(a.downs(), "p-other") {
		t.Errorf("the released primary was not announced down: %v", a.downs())
	}
	next := s.opts.Registry.(*registry.Memory).Replica()
	if won, err := next.AcquireOwner(context.Background(), "f", "default"); !won || err != nil {
		t.Errorf("the lease was kept after the retire: %v %v", won, err)
	}
}

// A ColdSession that adopts a registered primary owns it if its owner's
// lease is gone, and only routes to it while that owner lives.
func TestAdoptionTakesTheLeaseOfAGoneOwner(t *testing.T) {
	for _, alive := range []bool{true, false} {
		s, _, _ := newTestScheduler(t)
		c := startAnsweringContainer(t)
		reg := s.opts.Registry.(*registry.Memory)
		if _, won, err := reg.ClaimPrimary(context.Background(), registry.Registration{
			Container: "p-other", Function: "f", Session: "default", Node: "n0", Addr: c.addr}); !won || err != nil {
			t.Fatal(won, err)
		}
		other := ownedElsewhere(t, s, "default")
		if !alive {
			_ = other.Close()
		}
		ns, err := s.coldSession(context.Background(), testFunction(t), "default")
		if err != nil {
			t.Fatal(err)
		}
		install(s, ns) // Close cleans up
		if got := ns.owned(); got == alive {
			t.Errorf("owner alive %v: the adopted namespace is owned %v", alive, got)
		}
	}
}

// A retire that finds the owner lease held by another replica (this
// control plane's registry session ended in a partition, and the other
// took over) neither checkpoints nor releases the primary: the namespace
// serves on here as an adopted one, and the evict is a conflict.
func TestRetireLeavesASessionTakenOverElsewhere(t *testing.T) {
	s, b, a := newTestScheduler(t)
	c := startAnsweringContainer(t)
	ns := s.newNamespace(testFunction(t), "default", c.member(t, "p1", proxy.RolePrimary, true))
	install(s, ns)
	ownedElsewhere(t, s, "default")
	if _, err := s.Evict(context.Background(), "f", "default"); apierror.KindOf(err) != apierror.Conflict {
		t.Errorf("Evict: %s %v; want a conflict", apierror.KindOf(err), err)
	}
	if s.active("f", "default") != ns || !ns.adopted() {
		t.Errorf("the namespace was dropped, or is still owned here")
	}
	if n := c.answered(); n != 0 || b.wasReleased("p1") || len(a.downs()) > 0 {
		t.Errorf("the primary got %d calls, released %v, downs %v", n, b.wasReleased("p1"), a.downs())
	}
}
