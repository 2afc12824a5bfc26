package controlplane

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy"
)

// startCounterPrimary serves a real container bound as the primary of
// session "default" of function "f", running the counter guest. The test
// backend's Release leaves it running, as a container is for a moment
// between a retire's checkpoint and its release.
func startCounterPrimary(t *testing.T, fn *Function) string {
	t.Helper()
	addr := startPoolContainer(t)
	if err := bindCounterPrimary(t, addr, fn); err != nil {
		t.Fatal(err)
	}
	return addr
}

// startPoolContainer starts an in-process session container waiting to be
// bound, and returns its address.
func startPoolContainer(t *testing.T) string {
	t.Helper()
	c := proxy.New(proxy.Options{CacheDir: filepath.Join(os.TempDir(), "xfaas-test-compile-cache"), CheckpointDir: t.TempDir()})
	ln, err := wire.Listen("unix://" + filepath.Join(t.TempDir(), "c.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return wire.AddrOf(ln.Addr())
}

// bindCounterPrimary binds the container at addr as the primary of
// session "default" of fn, running the counter guest.
func bindCounterPrimary(t *testing.T, addr string, fn *Function) error {
	cl, err := proxy.Dial(context.Background(), addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.Bind(context.Background(), proxy.Binding{Function: fn.Name, Session: "default", Role: proxy.RolePrimary,
		Config: fn.Config, Module: testwasm.Bytes(t, "c/counter")})
}

// A replica that adopted a namespace routes to its primary while the owner
// retires it. Its request after the owner's checkpoint is refused as
// retryable (503), not answered and then lost with the container
// (RATIONALE.md, "Who retires a namespace.").
func TestAdoptersRequestDuringTheOwnersRetireIsRefused(t *testing.T) {
	owner, b, _ := newTestScheduler(t)
	adopter := NewScheduler(SchedulerOptions{Backend: &fakeBackend{lost: make(chan placement.Container)},
		Registry: owner.opts.Registry.(*registry.Memory).Replica(), Announcer: &fakeAnnouncer{}})
	t.Cleanup(adopter.Close)
	fn := testFunction(t)
	addr := startCounterPrimary(t, fn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if won, err := owner.opts.Registry.AcquireOwner(ctx, fn.Name, "default"); !won || err != nil {
		t.Fatalf("owner lease: %v %v", won, err)
	}
	install(owner, owner.newNamespace(fn, "default", dialMember(t, addr, "p", proxy.RolePrimary, true)))
	install(adopter, adopter.newNamespace(fn, "default", dialMember(t, addr, "p", proxy.RolePrimary, false)))
	if res, err := adopter.Invoke(ctx, fn, "default", []byte("incr")); err != nil || string(res.Output) != "1" {
		t.Fatalf("adopter's request before the retire: %q %v", res.Output, err)
	}

	info, err := owner.Evict(ctx, fn.Name, "default")
	if err != nil || info.Keys != 1 {
		t.Fatalf("evict: %+v %v", info, err)
	}
	if !b.wasReleased("p") {
		t.Fatal("the evicted primary was not released")
	}
	// The adopter has not heard of the release yet, and the container is
	// still there.
	res, err := adopter.Invoke(ctx, fn, "default", []byte("incr"))
	var ae *apierror.Error
	if !errors.As(err, &ae) || ae.Kind != apierror.Unavailable || ae.RetryAfter == 0 {
		t.Fatalf("adopter's request after the owner's checkpoint: %q %v; want unavailable with a retry-after", res.Output, err)
	}
}
