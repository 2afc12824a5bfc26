// Package registrytest is the conformance suite every registry.Registry
// implementation passes: the memory one in its unit tests, the Consul one
// against a real consul agent.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane/registry"
)

// Run runs the suite; each subtest gets a fresh registry from newRegistry.
// replica returns another registry on the same records as r, standing for a
// second control-plane process on the same cluster.
func Run(t *testing.T, newRegistry func(t *testing.T) registry.Registry, replica func(t *testing.T, r registry.Registry) registry.Registry) {
	t.Run("OnePrimaryUnderRace", func(t *testing.T) { onePrimaryUnderRace(t, newRegistry(t)) })
	t.Run("ReleaseAndReclaim", func(t *testing.T) { releaseAndReclaim(t, newRegistry(t)) })
	t.Run("RegisterListDeregister", func(t *testing.T) { registerList(t, newRegistry(t)) })
	pair := func(t *testing.T) (a, b registry.Registry) {
		a = newRegistry(t)
		return a, replica(t, a)
	}
	t.Run("OwnerLeaseIsExclusive", func(t *testing.T) { ownerLeaseIsExclusive(t, pair) })
	t.Run("OwnerLeaseEndsWithItsHolder", func(t *testing.T) { ownerLeaseEndsWithItsHolder(t, pair) })
	t.Run("OwnerLeaseUnderRace", func(t *testing.T) { ownerLeaseUnderRace(t, pair) })
	t.Run("UnownedClaims", func(t *testing.T) { unownedClaims(t, pair) })
}

func reg(container, fn, session, role string) registry.Registration {
	return registry.Registration{Container: container, Function: fn, Session: session, Role: role, Node: "node-0", Addr: "tcp://127.0.0.1:1"}
}

// Many replicas claim one namespace at once: exactly one wins, and every
// loser is told who did.
func onePrimaryUnderRace(t *testing.T, r registry.Registry) {
	ctx := context.Background()
	const n = 16
	var wg sync.WaitGroup
	owners := make([]registry.Registration, n)
	wins := make([]bool, n)
	for i := range n {
		wg.Go(func() {
			var err error
			owners[i], wins[i], err = r.ClaimPrimary(ctx, reg(fmt.Sprintf("c%02d", i), "fn", "s1", registry.RolePrimary))
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	winner := ""
	for i := range n {
		if wins[i] {
			if winner != "" {
				t.Fatalf("two primaries: %s and %s", winner, owners[i].Container)
			}
			winner = owners[i].Container
		}
	}
	if winner == "" {
		t.Fatal("nobody won the claim")
	}
	for i := range n {
		if owners[i].Container != winner {
			t.Errorf("claimer %d was told the owner is %q, not %q", i, owners[i].Container, winner)
		}
	}
	got, err := r.Primary(ctx, "fn", "s1")
	if err != nil || got.Container != winner || got.Role != registry.RolePrimary {
		t.Fatalf("Primary = %+v, %v; want %s", got, err, winner)
	}
}

func releaseAndReclaim(t *testing.T, r registry.Registry) {
	ctx := context.Background()
	if _, won, err := r.ClaimPrimary(ctx, reg("a", "fn", "s2", registry.RolePrimary)); !won || err != nil {
		t.Fatalf("first claim: won=%v %v", won, err)
	}
	// Only the holder can release.
	if err := r.ReleasePrimary(ctx, "fn", "s2", "b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Primary(ctx, "fn", "s2"); got.Container != "a" {
		t.Fatalf("a non-holder released the claim: owner %+v", got)
	}
	if err := r.ReleasePrimary(ctx, "fn", "s2", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Primary(ctx, "fn", "s2"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after release: %v; want ErrNotFound", err)
	}
	if owner, won, err := r.ClaimPrimary(ctx, reg("b", "fn", "s2", registry.RolePrimary)); !won || err != nil || owner.Container != "b" {
		t.Fatalf("reclaim: %+v won=%v %v", owner, won, err)
	}
}

func registerList(t *testing.T, r registry.Registry) {
	ctx := context.Background()
	for _, x := range []registry.Registration{
		reg("p1", "", "", registry.RolePool),
		reg("s1", "fn", "s3", registry.RoleSecondary),
		reg("o1", "other", "s3", registry.RoleSecondary),
	} {
		if err := r.Register(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.List(ctx, "fn")
	if err != nil || len(got) != 1 || got[0].Container != "s1" || got[0].Role != registry.RoleSecondary || got[0].Session != "s3" {
		t.Fatalf("List(fn) = %+v, %v", got, err)
	}
	all, err := r.List(ctx, "")
	if err != nil || len(all) < 3 {
		t.Fatalf("List() = %+v, %v", all, err)
	}
	if err := r.Deregister(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.List(ctx, "fn"); len(got) != 0 {
		t.Fatalf("after deregister: %+v", got)
	}
}

func mustAcquire(t *testing.T, r registry.Registry, session string, want bool) {
	t.Helper()
	got, err := r.AcquireOwner(context.Background(), "fn", session)
	if err != nil || got != want {
		t.Fatalf("AcquireOwner(fn, %s) = %v, %v; want %v", session, got, err, want)
	}
}

// One replica holds a namespace's lease until it releases it; the other
// can neither take nor release it meanwhile. Leases are per namespace and
// need no primary claim.
func ownerLeaseIsExclusive(t *testing.T, pair func(*testing.T) (a, b registry.Registry)) {
	ctx := context.Background()
	a, b := pair(t)
	mustAcquire(t, a, "s4", true)
	mustAcquire(t, a, "s4", true) // keeping it
	mustAcquire(t, b, "s4", false)
	mustAcquire(t, b, "s5", true) // another namespace
	if err := b.ReleaseOwner(ctx, "fn", "s4"); err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, b, "s4", false) // b's release of a's lease did nothing
	if err := a.ReleaseOwner(ctx, "fn", "s4"); err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, b, "s4", true)
	mustAcquire(t, a, "s4", false)
	if err := a.ReleaseOwner(ctx, "fn", "never-held"); err != nil {
		t.Fatalf("releasing a lease never held: %v", err)
	}
}

// A replica's leases end with it (Close, as its process's death), so
// another replica can take over its namespaces; that may take a moment
// (Consul's lock delay), so the taker polls with a deadline.
func ownerLeaseEndsWithItsHolder(t *testing.T, pair func(*testing.T) (a, b registry.Registry)) {
	ctx := context.Background()
	a, b := pair(t)
	mustAcquire(t, a, "s6", true)
	mustAcquire(t, b, "s6", false)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		won, err := b.AcquireOwner(ctx, "fn", "s6")
		if err != nil {
			t.Fatal(err)
		}
		if won {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease of a closed replica was never free")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustAcquire(t, b, "s6", true)
}

// Two replicas race for one lease many times over: each time exactly one
// holds it.
func ownerLeaseUnderRace(t *testing.T, pair func(*testing.T) (a, b registry.Registry)) {
	ctx := context.Background()
	a, b := pair(t)
	for i := range 8 {
		session := fmt.Sprintf("race-%d", i)
		var won [2]bool
		var wg sync.WaitGroup
		for j, r := range []registry.Registry{a, b} {
			wg.Go(func() {
				var err error
				if won[j], err = r.AcquireOwner(ctx, "fn", session); err != nil {
					t.Errorf("acquire: %v", err)
				}
			})
		}
		wg.Wait()
		if won[0] == won[1] {
			t.Fatalf("%s: a won %v, b won %v; want exactly one", session, won[0], won[1])
		}
	}
}

// Unowned lists the claims whose namespace no replica holds the lease of,
// as every replica sees them: not one that either holds, nor a released
// one; and a replica's namespaces show once its leases end with it.
func unownedClaims(t *testing.T, pair func(*testing.T) (a, b registry.Registry)) {
	ctx := context.Background()
	a, b := pair(t)
	for _, session := range []string{"u1", "u2", "u3"} {
		if _, won, err := a.ClaimPrimary(ctx, reg("c-"+session, "fn", session, registry.RolePrimary)); !won || err != nil {
			t.Fatalf("claim %s: won=%v %v", session, won, err)
		}
	}
	mustAcquire(t, a, "u2", true)
	mustAcquire(t, b, "u3", true)
	mustAcquire(t, a, "u4", true) // a lease without a claim
	wantUnowned(t, a, "u1")
	wantUnowned(t, b, "u1")
	if err := a.ReleasePrimary(ctx, "fn", "u1", "c-u1"); err != nil {
		t.Fatal(err)
	}
	wantUnowned(t, a)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wantUnowned(t, a, "u3")
}

// wantUnowned checks that r.Unowned names the claims of exactly these
// sessions of function "fn", each with its primary's registration.
func wantUnowned(t *testing.T, r registry.Registry, sessions ...string) {
	t.Helper()
	got, err := r.Unowned(context.Background())
	if err != nil {
		t.Fatalf("Unowned: %v", err)
	}
	var names []string
	for _, c := range got {
		if c.Function != "fn" || c.Container != "c-"+c.Session || c.Role != registry.RolePrimary || c.Addr == "" {
			t.Errorf("Unowned returned %+v; want a claim made by this test", c)
		}
		names = append(names, c.Session)
	}
	slices.Sort(names)
	if !slices.Equal(names, sessions) {
		t.Fatalf("Unowned names sessions %v; want %v", names, sessions)
	}
}
