package proxy

import (
	"context"
	"errors"
	"testing"

	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// A caller that gives up stops the guest it started: the control plane's
// connection hangs up, and the request's context ends although nobody
// reads that socket while the guest runs. Checked on a worker slot's own
// connection (CPU limits) and on the wire server's path (no limits).
func TestGivingUpStopsTheGuest(t *testing.T) {
	for _, limited := range []bool{true, false} {
		name := "wire server"
		if limited {
			name = "slot connection"
		}
		t.Run(name, func(t *testing.T) {
			opts := Options{CacheDir: compileCache}
			if limited {
				opts.Limits = testLimits(t)
			}
			c, cl := startContainer(t, opts)
			cfg := fnconfig.Default()
			cfg.TimeoutMS = 60000
			ctx := context.Background()
			if err := cl.Bind(ctx, Binding{Function: "f", Session: "s", Role: RolePrimary, Config: cfg, Module: testwasm.Bytes(t, "test/spin")}); err != nil {
				t.Fatal(err)
			}
			if out, err := cl.Invoke(ctx, []byte("0")); err != nil || string(out) != "1" {
				t.Fatalf("first invoke = %q, %v", out, err)
			}
			callCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				_, err := cl.Invoke(callCtx, []byte("30000")) // spins for 30 s unless stopped
				done <- err
			}()
			waitUntil(t, "the guest to run", func() bool { return c.Status().Workers.InFlight == 1 })
			if limited && c.Status().Workers.SlotConns == 0 {
				t.Fatal("no slot owns the connection")
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("given-up invoke: %v; want context.Canceled", err)
			}
			waitUntil(t, "the guest to stop", func() bool { return c.Status().Workers.InFlight == 0 })
			if d := c.Status().Workers.Discards; d != 1 {
				t.Errorf("discards = %d; want the stopped worker discarded", d)
			}
			if out, err := cl.Invoke(ctx, []byte("0")); err != nil || string(out) != "1" {
				t.Fatalf("invoke after the stop = %q, %v", out, err)
			}
		})
	}
}
