package proxy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/cgroup"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/natstest"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// A Close whose grace period runs out stops the guests still running: their
// requests fail at once as Unavailable (not as a guest that exited), Close
// returns the grace period's error, and every slot thread has ended, so the
// worker cgroups are gone (testLimits' cleanup removes the container group,
// and fails if it cannot). Checked with CPU limits (slots) and without.
func TestCloseAfterGraceStopsRunningGuests(t *testing.T) {
	for _, limited := range []bool{true, false} {
		name := "unlimited"
		if limited {
			name = "slots"
		}
		t.Run(name, func(t *testing.T) {
			var l *cgroupLimits
			opts := Options{CacheDir: compileCache}
			if limited {
				l = testLimits(t)
				opts.Limits = l
			}
			c := New(opts)
			cfg := fnconfig.Default()
			cfg.MaxWorkers, cfg.TimeoutMS = 2, 20000
			if err := c.Bind(context.Background(), Binding{Function: "f", Session: "s", Role: RolePrimary, Config: cfg, Module: testwasm.Bytes(t, "test/spin")}); err != nil {
				t.Fatal(err)
			}
			var groups []*cgroup.Group
			if limited {
				l.mu.Lock()
				groups = append(groups, l.workers...)
				l.mu.Unlock()
				t.Cleanup(func() { stopLeakedSlots(t, l, c.bound().pool, groups) })
			}
			done := make(chan error, 1)
			go func() {
				_, err := c.Invoke(context.Background(), []byte("10000")) // spins for 10 s unless stopped
				done <- err
			}()
			waitUntil(t, "the guest to run", func() bool { return c.Status().Workers.InFlight == 1 })

			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			err := c.Close(ctx)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Close = %v; want the grace period's deadline", err)
			}
			if err != nil && strings.Contains(err.Error(), "cgroup") {
				t.Errorf("Close could not remove the cgroups: %v", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Close took %v; want the grace period and about a second more, not the guest's 10 s", d)
			}
			select {
			case err := <-done:
				if apierror.KindOf(err) != apierror.Unavailable || !strings.Contains(err.Error(), "shutting down") {
					t.Errorf("stopped invoke: %v (%s); want unavailable, shutting down", err, apierror.KindOf(err))
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the running request did not end when Close stopped it")
			}
			if !limited {
				return
			}
			for i, g := range groups {
				if g.Exists() {
					t.Errorf("worker cgroup %d is still there after Close", i)
				}
			}
		})
	}
}

// stopLeakedSlots ends slot threads that outlived Close, which only a
// regression makes happen, so that the test leaves no cgroup behind: it
// puts the worker groups back for their threads to leave, and stops them.
func stopLeakedSlots(t *testing.T, l *cgroupLimits, p *Pool, groups []*cgroup.Group) {
	leaked := false
	for _, g := range groups {
		leaked = leaked || g.Exists()
	}
	if !leaked || p.set == nil {
		return
	}
	t.Error("slot threads outlived Close")
	l.mu.Lock()
	l.workers = groups
	l.mu.Unlock()
	p.set.stop()
}

// With durability "log", Close gives up on appends the log server never
// acknowledged when its grace period ends, rather than waiting for a
// server that is gone. The request whose write was not acknowledged was
// not answered as a success either.
func TestCloseWithAnUnreachableLog(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.ClientURL(), nats.MaxReconnects(-1))
	c := New(Options{NATS: nc})
	cfg := fnconfig.Default()
	cfg.Durability = "log"
	if err := c.Bind(context.Background(), Binding{Function: "kv", Session: "00000000000000000000000000000001", Role: RolePrimary, Config: cfg, Module: testwasm.Bytes(t, "c/kv")}); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	// Appended while the client reconnects, the write waits in its buffer
	// and its acknowledgement never comes.
	waitUntil(t, "the client to notice", func() bool { return nc.Status() == nats.RECONNECTING })
	ictx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Invoke(ictx, []byte("set a b")); apierror.KindOf(err) != apierror.Timeout {
		t.Errorf("write with the log unreachable: %v; want a timeout, not an answer", err)
	}

	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		closed <- c.Close(ctx)
	}()
	select {
	case err := <-closed:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close = %v; want the grace period's deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waits for the log 5 s after a grace period of 0.5 s")
	}
}
