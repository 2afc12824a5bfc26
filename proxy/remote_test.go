package proxy

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/proxy/state"
)

// A section a secondary opened lives in the primary's transaction for the
// worker's connection. When that connection breaks mid-request, the primary
// ends the transaction and releases the key; the request must not then
// reconnect and commit its write as a blind write over another request's
// update. Its mode-1 operations fail as unavailable until it ends, whether
// it finds the connection broken on a mode-0 call or on the commit itself.
func TestSectionLostWithItsConnection(t *testing.T) {
	for _, lock := range []string{"pessimistic", "optimistic"} {
		for _, foundBy := range []string{"read", "commit"} {
			t.Run(lock+"/"+foundBy, func(t *testing.T) { testSectionLost(t, lock, foundBy) })
		}
	}
}

func testSectionLost(t *testing.T, lock, foundBy string) {
	_, primary := startContainer(t, Options{CacheDir: compileCache})
	bindCounter(t, primary, RolePrimary, "", lock)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := []byte("count")
	a := &remoteState{primary: primary.Addr(), pessimistic: lock == "pessimistic"}
	defer a.Close()
	if _, _, err := a.Get(ctx, key, abi.ModeLinearizable); err != nil {
		t.Fatal(err)
	}
	a.conn.Close() // the connection breaks; the primary ends a's transaction

	b := &remoteState{primary: primary.Addr(), pessimistic: lock == "pessimistic"}
	defer b.Close()
	if _, _, err := b.Get(ctx, key, abi.ModeLinearizable); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, key, []byte("B"), abi.ModeLinearizable); err != nil {
		t.Fatal(err)
	}
	b.End()

	switch foundBy {
	case "read":
		if _, _, err := a.Get(ctx, []byte("other"), abi.ModeCausal); !errors.Is(err, state.ErrUnavailable) {
			t.Fatalf("read on the broken connection: %v, want unavailable", err)
		}
		if _, _, err := a.Get(ctx, []byte("other"), abi.ModeCausal); err != nil {
			t.Fatalf("mode-0 read after reconnecting: %v", err)
		}
	case "commit":
		if err := a.Put(ctx, key, []byte("A"), abi.ModeLinearizable); !errors.Is(err, state.ErrUnavailable) {
			t.Fatalf("commit on the broken connection: %v, want unavailable", err)
		}
	}
	if err := a.Put(ctx, key, []byte("A"), abi.ModeLinearizable); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("commit of the lost section: %v, want unavailable", err)
	}
	if err := a.Delete(ctx, key, abi.ModeLinearizable); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("delete in the lost section: %v, want unavailable", err)
	}
	if _, _, err := a.Get(ctx, key, abi.ModeLinearizable); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("new section after the loss: %v, want unavailable", err)
	}
	a.End()
	if val, _, _ := b.Get(ctx, key, abi.ModeCausal); string(val) != "B" {
		t.Fatalf("count = %q: b's update was overwritten", val)
	}

	// The next request starts clean.
	if _, _, err := a.Get(ctx, key, abi.ModeLinearizable); err != nil {
		t.Fatalf("next request's read: %v", err)
	}
	if err := a.Put(ctx, key, []byte("A"), abi.ModeLinearizable); err != nil {
		t.Fatalf("next request's commit: %v", err)
	}
	a.End()
}

// Each worker of a secondary has its own connection to the primary, which
// holds a goroutine and a transaction there. A worker that retires (trimmed
// when idle, or discarded) closes it; only the live workers keep theirs.
func TestRetiredWorkersCloseTheirStateConnections(t *testing.T) {
	_, primary := startContainer(t, Options{CacheDir: compileCache})
	bindCounter(t, primary, RolePrimary, "", "pessimistic")
	sc, sec := startContainer(t, Options{CacheDir: compileCache, IdleTimeout: 50 * time.Millisecond})
	bindCounter(t, sec, RoleSecondary, primary.Addr(), "pessimistic")
	b := sc.bound()
	// The increments wait for the key while holder has it, so that the
	// secondary forks more than one worker and there is one to trim.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	holder := holdCount(ctx, t, primary)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10 {
				if _, err := sec.Invoke(context.Background(), []byte("incr")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	waitUntil(t, "the secondary to fork a second worker", func() bool { return b.pool.Status().Forks >= 2 })
	holder.End()
	wg.Wait()
	// A trim takes a worker out of the pool, then closes it: its
	// connection goes a moment after Live drops.
	open, all := 0, 0
	connections := func() bool {
		b.remotes.mu.Lock()
		defer b.remotes.mu.Unlock()
		open, all = 0, len(b.remotes.all)
		for _, r := range b.remotes.all {
			if r.conn != nil {
				open++
			}
		}
		return open <= 1 && all <= 1
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.pool.Status().Live != 1 || !connections() {
		if time.Now().After(deadline) {
			t.Fatalf("%d live workers and %d state connections open (%d accessors kept) after 10 s; want 1",
				b.pool.Status().Live, open, all)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if out, err := sec.Invoke(context.Background(), []byte("get")); err != nil || out == nil {
		t.Fatalf("the remaining worker: %q, %v", out, err)
	}
}
