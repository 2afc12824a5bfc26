package baseline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xfaas/xfaas/bench/workload"
	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/testbin"
)

// startRedis starts a redis-server for the test; a missing one fails the
// test: `make test` installs it.
func startRedis(t *testing.T) (*Redis, *redis.Client) {
	t.Helper()
	r, err := StartRedis(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: 32})
	t.Cleanup(func() { rdb.Close() })
	return r, rdb
}

// Linearizable read-modify-writes from many stores (as many containers)
// lose no increment: the Redis lock excludes them.
func TestLinearizableIncrementsLoseNothing(t *testing.T) {
	_, rdb := startRedis(t)
	ctx := t.Context()
	const stores, rounds = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, stores)
	for i := range stores {
		wg.Go(func() {
			s := newStore(rdb, "fn", "w"+strconv.Itoa(i))
			for range rounds {
				val, _, err := s.get(ctx, []byte("n"), abi.ModeLinearizable)
				n, _ := strconv.Atoi(string(val))
				if err == nil {
					err = s.put(ctx, []byte("n"), []byte(strconv.Itoa(n+1)), abi.ModeLinearizable)
				}
				s.end(ctx)
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	val, _, err := newStore(rdb, "fn", "check").get(ctx, []byte("n"), abi.ModeCausal)
	if err != nil || string(val) != strconv.Itoa(stores*rounds) {
		t.Errorf("counter %q (%v); want %d", val, err, stores*rounds)
	}
}

// A request that ends with its section open applies nothing of it and
// releases the lock.
func TestEndAbortsAnOpenSection(t *testing.T) {
	_, rdb := startRedis(t)
	ctx := t.Context()
	a, b := newStore(rdb, "fn", "a"), newStore(rdb, "fn", "b")
	if err := a.put(ctx, []byte("k"), []byte("old"), abi.ModeCausal); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.get(ctx, []byte("k"), abi.ModeLinearizable); err != nil {
		t.Fatal(err)
	}
	a.end(ctx)
	done := make(chan error, 1)
	go func() {
		_, _, err := b.get(ctx, []byte("k"), abi.ModeLinearizable)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the lock of an ended request was not released")
	}
	// A blind linearizable write waits for b's lock.
	go func() {
		time.Sleep(50 * time.Millisecond)
		b.end(ctx)
	}()
	if err := a.put(ctx, []byte("k"), []byte("new"), abi.ModeLinearizable); err != nil {
		t.Fatalf("blind linearizable write while b holds the lock: %v; want it to wait for the lock", err)
	}
	if val, _, err := b.get(ctx, []byte("k"), abi.ModeCausal); err != nil || string(val) != "new" {
		t.Errorf("after the blind write: %q, %v; want new", val, err)
	}
}

func TestCodesMatchTheABI(t *testing.T) {
	for err, want := range map[error]int32{nil: abi.OK, errKeyTooLarge: abi.ErrKeyTooLarge, errValueTooLarge: abi.ErrValueTooLarge,
		errConflict: abi.ErrConflict, errLockTimeout: abi.ErrLockTimeout, context.DeadlineExceeded: abi.ErrLockTimeout,
		errMode: abi.ErrInvalid, errors.New("connection refused"): abi.ErrUnavailable} {
		if got := code(err); got != want {
			t.Errorf("code(%v) = %d; want %d", err, got, want)
		}
	}
}

// A cluster of worker processes runs RMW-Linear without losing an
// increment, and Close leaves no process behind.
func TestClusterRunsRMWLinear(t *testing.T) {
	r, _ := startRedis(t)
	w, _ := workload.ByName("rmw_linear")
	c, err := NewCluster(ClusterOptions{Binary: testbin.Xfaas(t), Module: w.Module, Function: "t", Redis: r.Addr,
		Containers: 3, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Invoke(ctx, workload.Init(64)); err != nil || string(out) != "ok" {
		t.Fatalf("init: %q, %v", out, err)
	}
	const clients, rounds = 6, 20
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range rounds {
				if _, err := c.Invoke(ctx, workload.Request); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	out, err := c.Invoke(ctx, workload.Request)
	if want := fmt.Sprint(clients*rounds + 1); err != nil || string(out) != want {
		t.Errorf("counter after %d increments: %q, %v; want %s", clients*rounds, out, err, want)
	}
	pids := c.Pids()
	c.Close()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("worker %d still runs after Close", pid)
		}
	}
}
