package controlplane

import (
	"context"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/natstest"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// newHookServer starts a control plane on a real NATS with a backend that
// has no containers (fakeBackend): enough to deploy functions and run
// hooks, which run in the control plane itself.
func newHookServer(t *testing.T) *Server {
	t.Helper()
	nc := natstest.Connect(t, natstest.Start(t).ClientURL())
	s, err := NewServer(t.Context(), Config{}, Deps{NATS: nc, Backend: &fakeBackend{lost: make(chan placement.Container)}, Registry: registry.NewMemory()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// Deleting a hook function closes its worker pool, which otherwise kept a
// warm wasm instance and its trimmer in the control plane for good.
func TestDeletedHookClosesItsPool(t *testing.T) {
	s := newHookServer(t)
	ctx := t.Context()
	if _, err := s.Deploy(ctx, "users", testwasm.Bytes(t, "test/hook"), nil, ""); err != nil {
		t.Fatal(err)
	}
	if label, err := s.hooks.label(ctx, "users", []byte("alice buys"), nil); err != nil || label != "alice" {
		t.Fatalf("hook label: %q, %v", label, err)
	}
	s.hooks.mu.Lock()
	p := s.hooks.pools["users"].pool
	s.hooks.mu.Unlock()
	if err := s.fns.Delete(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := p.Invoke(ctx, []byte("alice")); err != nil {
			break // closed
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted hook's pool still serves")
		}
	}
	s.hooks.mu.Lock()
	defer s.hooks.mu.Unlock()
	if hp := s.hooks.pools["users"]; hp != nil {
		t.Fatal("the deleted hook's pool is still kept")
	}
}

// A hook request that arrives after the hooks closed (a request still
// running when the control plane shuts down) is unavailable; it used to
// panic on the closed pool map.
func TestHookAfterCloseIsUnavailable(t *testing.T) {
	s := newHookServer(t)
	ctx := t.Context()
	if _, err := s.Deploy(ctx, "users", testwasm.Bytes(t, "test/hook"), nil, ""); err != nil {
		t.Fatal(err)
	}
	s.hooks.close(ctx)
	if _, err := s.hooks.label(ctx, "users", []byte("alice buys"), nil); apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("hook after close: %v; want unavailable", err)
	}
}
