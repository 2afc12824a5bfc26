// Package registrytest is the conformance suite every registry.Registry
// implementation passes: the memory one in its unit tests, the Consul one
// against a real consul agent.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/xfaas/xfaas/controlplane/registry"
)

// Run runs the suite; each subtest gets a fresh registry from newRegistry.
func Run(t *testing.T, newRegistry func(t *testing.T) registry.Registry) {
	t.Run("OnePrimaryUnderRace", func(t *testing.T) { onePrimaryUnderRace(t, newRegistry(t)) })
	t.Run("ReleaseAndReclaim", func(t *testing.T) { releaseAndReclaim(t, newRegistry(t)) })
	t.Run("RegisterListDeregister", func(t *testing.T) { registerList(t, newRegistry(t)) })
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
