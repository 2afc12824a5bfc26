package controlplane

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xfaas/xfaas/controlplane/placement"
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

// Close stops the sweep of the registry for namespaces whose owner is
// gone: it returns, though the sweep's loop only waits for its next tick,
// and no sweep runs after it. Virtual time ticks the loop many times at
// once.
func TestCloseStopsTheSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{Backend: &fakeBackend{lost: make(chan placement.Container)}, Registry: registry.NewMemory(),
			Functions: functionTable{}, SweepInterval: time.Second})
		defer s.Close() // on a failure before the one the test makes
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		before := counterValue(t, s.m, "xfaas_orphan_sweeps_total")
		if before != 10 {
			t.Fatalf("%v sweeps in 10 intervals; want 10", before)
		}
		s.Close()
		time.Sleep(time.Hour)
		synctest.Wait()
		if after := counterValue(t, s.m, "xfaas_orphan_sweeps_total"); after != before {
			t.Errorf("%v sweeps after Close", after-before)
		}
	})
}

// functionTable is a FunctionSource of a fixed set of functions.
type functionTable map[string]*Function

func (ft functionTable) Lookup(name string) (*Function, bool) {
	f, ok := ft[name]
	return f, ok
}

// counterValue returns the value of the counter name in m, 0 if it has
// none.
func counterValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// A claim without an owner lease whose container is not bound yet is a
// placement under way (the placer claims, takes the lease, then binds):
// the sweep leaves the lease and the claim to the placer. A claim that
// stays so for longer than a placement may take is released: its placer
// died before the bind. A placer paused between its claim and its lease
// cannot be had on cue, so the placer here is a registry replica and the
// container a fake that answers as an unbound pool container.
func TestSweepLeavesAPrimaryBeingPlaced(t *testing.T) {
	b := &fakeBackend{lost: make(chan placement.Container)}
	reg := registry.NewMemory()
	s := NewScheduler(SchedulerOptions{Backend: b, Registry: reg, Functions: functionTable{"f": testFunction(t)}, SweepInterval: time.Hour})
	t.Cleanup(s.Close)
	c := startFake(t, []byte(`{"role":"pool"}`))
	ctx := context.Background()
	placer := reg.Replica()
	if _, won, err := placer.ClaimPrimary(ctx, registry.Registration{Container: "p-new", Function: "f", Session: "default", Node: "n0", Addr: c.addr}); !won || err != nil {
		t.Fatal(won, err)
	}
	seen := s.sweep(ctx, s.sweep(ctx, nil))
	if won, err := placer.AcquireOwner(ctx, "f", "default"); !won || err != nil {
		t.Fatalf("the placer could not take the lease after the sweep: %v %v", won, err)
	}
	if _, err := reg.Primary(ctx, "f", "default"); err != nil || b.wasReleased("p-new") || s.active("f", "default") != nil {
		t.Fatalf("the sweep took a primary being placed: claim %v, released %v", err, b.wasReleased("p-new"))
	}
	_ = placer.Close() // it died before the bind
	key := nsKey{"f", "default"}
	seen[key] = sighting{container: "p-new", since: time.Now().Add(-s.opts.StartTimeout)}
	s.sweep(ctx, seen)
	if _, err := reg.Primary(ctx, "f", "default"); !errors.Is(err, registry.ErrNotFound) || !b.wasReleased("p-new") {
		t.Fatalf("the claim of a placement abandoned before its bind stays: %v, released %v", err, b.wasReleased("p-new"))
	}
	if won, err := reg.Replica().AcquireOwner(ctx, "f", "default"); !won || err != nil {
		t.Errorf("the sweep kept the lease of the session it released: %v %v", won, err)
	}
}

// A request on one replica that finds its session claimed by a primary
// that another replica is still binding (restoring, say) waits for the
// bind and adopts that primary. It used to take the unbound container for
// a dead one, release its claim and place a second primary of the session.
func TestColdSessionWaitsForAPrimaryBeingBound(t *testing.T) {
	s, b, _ := newTestScheduler(t)
	reg := s.opts.Registry.(*registry.Memory)
	fn := testFunction(t)
	addr := startPoolContainer(t)
	placer := reg.Replica()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, won, err := placer.ClaimPrimary(ctx, registry.Registration{Container: "p", Function: fn.Name, Session: "default",
		Role: registry.RolePrimary, Node: "n0", Addr: addr}); !won || err != nil {
		t.Fatal(won, err)
	}
	bound := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond) // the placer's restore
		bound <- bindCounterPrimary(t, addr, fn)
	}()
	ns, err := s.coldSession(ctx, fn, "default")
	if err := <-bound; err != nil {
		t.Fatalf("the placer's bind: %v", err)
	}
	if err != nil {
		t.Fatalf("cold session: %v", err)
	}
	if got := ns.members[0].c.ID; got != "p" || len(b.claims()) != 0 {
		t.Fatalf("the session's primary is %s, after %d claims; want the placer's p and none", got, len(b.claims()))
	}
	if owner, err := reg.Primary(ctx, fn.Name, "default"); err != nil || owner.Container != "p" {
		t.Fatalf("the claim: %+v %v; want p's", owner, err)
	}
	ns.members[0].client.Close()
}

// A primary found unbound for longer than a placement may take was
// abandoned by its placer: the next request releases its claim and places
// the session anew.
func TestColdSessionReplacesAPrimaryNeverBound(t *testing.T) {
	s, b, _ := newTestScheduler(t)
	reg := s.opts.Registry.(*registry.Memory)
	fn := testFunction(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, won, err := reg.Replica().ClaimPrimary(ctx, registry.Registration{Container: "p", Function: fn.Name, Session: "default",
		Role: registry.RolePrimary, Node: "n0", Addr: startPoolContainer(t)}); !won || err != nil {
		t.Fatal(won, err)
	}
	s.unbound["p"] = time.Now().Add(-s.opts.StartTimeout - time.Second) // first found unbound that long ago
	// The fake backend has no container to give: the new placement fails
	// after the claim is released.
	if _, err := s.coldSession(ctx, fn, "default"); !errors.Is(err, placement.ErrNoCapacity) || len(b.claims()) != 1 {
		t.Fatalf("cold session: %v after %d claims; want a new placement", err, len(b.claims()))
	}
	if owner, err := reg.Primary(ctx, fn.Name, "default"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("the abandoned claim stays: %+v %v", owner, err)
	}
}

// A primary placed while its namespace's owner lease was not free yet (the
// previous owner letting go, or dead less than a lock delay ago) is this
// control plane's to retire, and it keeps asking for the lease until it
// has it. It used to ask again only before a retire, so another replica's
// sweep could take the namespace over meanwhile.
func TestPlacedPrimaryTakesItsLeaseWhenFree(t *testing.T) {
	s, _, _ := newTestScheduler(t)
	reg := s.opts.Registry.(*registry.Memory)
	fn := testFunction(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	previous := reg.Replica()
	if won, err := previous.AcquireOwner(ctx, fn.Name, "default"); !won || err != nil {
		t.Fatal(won, err)
	}
	m := dialMember(t, startCounterPrimary(t, fn), "p", proxy.RolePrimary, true)
	m.unleased = true // placed while previous held the lease
	install(s, s.newNamespace(fn, "default", m))
	_ = previous.Close() // its process ends
	ns := s.active(fn.Name, "default")
	for leased := false; !leased; {
		select {
		case <-ctx.Done():
			t.Fatal("the placer never took the free lease")
		case <-time.After(10 * time.Millisecond):
		}
		ns.mu.Lock()
		leased = !ns.members[0].unleased
		ns.mu.Unlock()
	}
	// A sweep elsewhere, which acts on a claim only after two sightings a
	// SweepInterval apart, finds the lease held.
	if won, err := reg.Replica().AcquireOwner(ctx, fn.Name, "default"); won || err != nil {
		t.Fatalf("another replica took the lease of the namespace placed here: %v %v", won, err)
	}
}
