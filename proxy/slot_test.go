package proxy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// A request of a connection a slot owns can run only on the slot's own
// worker, and it is not in the pool's queue. While in-process requests
// borrow that worker and keep the queue full, it still gets the worker at
// the next release, ahead of the queue, instead of waiting out its
// deadline while later requests are served.
func TestSlotRequestIsNotStarvedByTheQueue(t *testing.T) {
	c, cl := startContainer(t, Options{CacheDir: compileCache, Limits: testLimits(t)})
	cfg := fnconfig.Default()
	cfg.MaxWorkers, cfg.WorkerCPUMillicores, cfg.TimeoutMS = 1, 1000, 3000
	ctx := context.Background()
	if err := cl.Bind(ctx, Binding{Function: "f", Session: "s", Role: RolePrimary, Config: cfg, Module: testwasm.Bytes(t, "test/spin")}); err != nil {
		t.Fatal(err)
	}
	if out, err := cl.Invoke(ctx, []byte("0")); err != nil || string(out) != "1" {
		t.Fatalf("first invoke = %q, %v", out, err)
	}
	if n := c.Status().Workers.SlotConns; n != 1 {
		t.Fatalf("slots serve %d connections; want the slot to own the client's", n)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for range 3 { // one runs, two wait: the queue is never empty at a release
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Invoke(ctx, []byte("20")); err != nil {
					t.Errorf("in-process invoke: %v", err)
					return
				}
			}
		})
	}
	waitUntil(t, "the queue to fill", func() bool { return c.Status().Workers.Queued > 0 })
	for range 5 {
		start := time.Now()
		if _, err := cl.Invoke(ctx, []byte("0")); err != nil {
			t.Fatalf("slot's request while the queue is busy: %v after %v", err, time.Since(start))
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("slot's request took %v behind 20 ms requests", d)
		}
	}
}

// A slot's own request that waits for its lent worker gives up as soon as
// its caller hangs up, and the worker is not spent on it: the request
// that borrowed the worker keeps it to the end, and the worker then goes
// back to the pool rather than to a guest whose caller has gone.
func TestSlotRequestWaitingEndsWhenTheCallerHangsUp(t *testing.T) {
	l := testLimits(t)
	placer, err := l.Workers(1, 1000, 128)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "test/spin", fixtureOptions{maxWorkers: 1, placer: placer, timeout: 10 * time.Second})
	f.mustInvoke("0") // the slot's worker, idle
	p, sl := f.pool, f.pool.slots[0]

	// Hold the slot's thread, so that the two requests below line up on
	// it in order: the slot's own first, then the one that borrows its
	// worker (an in-process request, which takes the idle worker at once).
	held, gate := make(chan struct{}), make(chan struct{})
	sl.post(slotJob{fn: func() {
		close(held)
		<-gate
	}})
	<-held
	callCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	own := make(chan error, 1)
	sl.post(slotJob{fn: func() {
		_, err := p.invoke(callCtx, []byte("0"), sl) // as if read from the slot's connection
		own <- err
	}})
	lent := make(chan error, 1)
	go func() {
		_, err := f.invoke("300")
		lent <- err
	}()
	waitUntil(t, "the borrower's job to line up", func() bool {
		sl.mu.Lock()
		defer sl.mu.Unlock()
		return len(sl.jobs) == 2
	})
	close(gate)
	waitUntil(t, "the slot's request to wait for its worker", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return sl.waiting
	})
	cancel() // the caller hangs up while the borrower runs

	if err := <-lent; err != nil {
		t.Errorf("borrowing request: %v", err)
	}
	select {
	case err := <-own:
		if err == nil {
			t.Error("the slot's request ran after its caller hung up")
		}
	case <-time.After(time.Second):
		t.Fatal("the slot's request still waits 1 s after the borrower ended")
	}
	if d := p.Status().Discards; d != 0 {
		t.Errorf("discards = %d; want the worker kept, not spent on a request whose caller is gone", d)
	}
	if out := f.mustInvoke("0"); out != "1" {
		t.Errorf("invoke after = %q", out)
	}
}
