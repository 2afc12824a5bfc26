package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/linearcheck"
)

var schemes = []Scheme{Pessimistic, Optimistic}

func bg() context.Context { return context.Background() }

func TestCausalRoundTrip(t *testing.T) {
	s := New(Options{})
	tx := s.NewTxn()
	if _, ok, err := tx.Get(bg(), []byte("k"), abi.ModeCausal); ok || err != nil {
		t.Fatalf("absent key: ok=%v err=%v", ok, err)
	}
	if err := tx.Put(bg(), []byte("k"), []byte("v1"), abi.ModeCausal); err != nil {
		t.Fatal(err)
	}
	val, ok, err := tx.Get(bg(), []byte("k"), abi.ModeCausal)
	if !ok || err != nil || string(val) != "v1" {
		t.Fatalf("got %q ok=%v err=%v", val, ok, err)
	}
	if got := s.Stats(); got.Keys != 1 || got.Bytes != 3 {
		t.Fatalf("stats %+v, want 1 key of 3 bytes", got)
	}
	if err := tx.Delete(bg(), []byte("k"), abi.ModeCausal); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := tx.Get(bg(), []byte("k"), abi.ModeCausal); ok {
		t.Fatal("deleted key still present")
	}
	if got := s.Stats(); got.Keys != 0 || got.Bytes != 0 {
		t.Fatalf("stats after delete %+v", got)
	}
	assertNoEntries(t, s)
}

func TestPutCopiesValue(t *testing.T) {
	s := New(Options{})
	tx := s.NewTxn()
	buf := []byte("original")
	if err := tx.Put(bg(), []byte("k"), buf, abi.ModeCausal); err != nil {
		t.Fatal(err)
	}
	copy(buf, "CLOBBER!")
	if val, _, _ := tx.Get(bg(), []byte("k"), abi.ModeCausal); string(val) != "original" {
		t.Fatalf("store aliased the caller's buffer: %q", val)
	}
}

func TestLimits(t *testing.T) {
	for _, sc := range schemes {
		t.Run(sc.String(), func(t *testing.T) {
			s := New(Options{Scheme: sc, MaxKeyBytes: 4, MaxValueBytes: 8, MaxBytes: 20})
			tx := s.NewTxn()
			for _, mode := range []int32{abi.ModeCausal, abi.ModeLinearizable} {
				if err := tx.Put(bg(), []byte("12345"), nil, mode); !errors.Is(err, ErrKeyTooLarge) {
					t.Errorf("mode %d: 5-byte key: %v", mode, err)
				}
				if _, _, err := tx.Get(bg(), []byte("12345"), mode); mode == 1 && !errors.Is(err, ErrKeyTooLarge) {
					t.Errorf("mode %d: read of 5-byte key: %v", mode, err)
				}
				if err := tx.Put(bg(), []byte("k"), make([]byte, 9), mode); !errors.Is(err, ErrValueTooLarge) {
					t.Errorf("mode %d: 9-byte value: %v", mode, err)
				}
				if err := tx.Put(bg(), nil, []byte("v"), mode); !errors.Is(err, ErrInvalid) {
					t.Errorf("mode %d: empty key: %v", mode, err)
				}
			}
			if _, _, err := tx.Get(bg(), []byte("k"), 7); !errors.Is(err, ErrInvalid) {
				t.Errorf("mode 7: %v", err)
			}
			// 20 bytes in all: two 1+8 entries fit, a third does not.
			for i, want := range []error{nil, nil, ErrStateFull} {
				err := tx.Put(bg(), []byte{byte('a' + i)}, make([]byte, 8), abi.ModeCausal)
				if !errors.Is(err, want) && err != want {
					t.Fatalf("put %d: %v, want %v", i, err, want)
				}
			}
			// Shrinking a value is allowed when full.
			if err := tx.Put(bg(), []byte("a"), []byte("x"), abi.ModeCausal); err != nil {
				t.Fatalf("shrink when full: %v", err)
			}
			if tx.Open() != 0 {
				t.Fatalf("%d sections left open by failed operations", tx.Open())
			}
		})
	}
}

// TestLinearizableIncrements: P goroutines × N read-modify-writes of one key
// in mode 1 give exactly P×N.
func TestLinearizableIncrements(t *testing.T) {
	const P, N = 16, 400
	for _, sc := range schemes {
		t.Run(sc.String(), func(t *testing.T) {
			s := New(Options{Scheme: sc})
			var wg sync.WaitGroup
			var conflicts sync.Map
			for p := range P {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tx := s.NewTxn()
					for range N {
						n := increment(t, tx, "count")
						conflicts.Store(p, n)
					}
				}()
			}
			wg.Wait()
			val, _, _ := s.NewTxn().Get(bg(), []byte("count"), abi.ModeCausal)
			if got, _ := strconv.Atoi(string(val)); got != P*N {
				t.Fatalf("count = %d, want %d", got, P*N)
			}
			assertNoLocks(t, s)
		})
	}
}

// increment adds one to key in mode 1, retrying optimistic conflicts, and
// returns the number of retries.
func increment(t testing.TB, tx *Txn, key string) (retries int) {
	for {
		val, _, err := tx.Get(bg(), []byte(key), abi.ModeLinearizable)
		if err != nil {
			t.Errorf("read: %v", err)
			return
		}
		n, _ := strconv.Atoi(string(val))
		err = tx.Put(bg(), []byte(key), []byte(strconv.Itoa(n+1)), abi.ModeLinearizable)
		if errors.Is(err, ErrConflict) {
			retries++
			continue
		}
		if err != nil {
			t.Errorf("write: %v", err)
		}
		if tx.Open() != 0 {
			t.Errorf("%d sections open after commit", tx.Open())
		}
		return retries
	}
}

// TestHistoryIsLinearizable records concurrent mode-1 gets, blind puts and
// appends on a few keys and checks the history with porcupine.
func TestHistoryIsLinearizable(t *testing.T) {
	const P, N = 8, 150
	for _, sc := range schemes {
		t.Run(sc.String(), func(t *testing.T) {
			s := New(Options{Scheme: sc})
			h := linearcheck.NewHistory()
			var wg sync.WaitGroup
			for p := range P {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tx := s.NewTxn()
					rng := rand.New(rand.NewPCG(uint64(p), 1))
					for i := range N {
						key := fmt.Sprintf("k%d", rng.IntN(3))
						runOp(t, h, tx, p, key, rng.IntN(10), fmt.Sprintf("<%d.%d>", p, i))
					}
				}()
			}
			wg.Wait()
			h.Check(t, 30*time.Second)
			assertNoLocks(t, s)
		})
	}
}

func runOp(t *testing.T, h *linearcheck.History, tx *Txn, client int, key string, dice int, tag string) {
	k := []byte(key)
	switch {
	case dice < 3: // read-only section: read in mode 1, then abort
		call := h.Now()
		val, _, err := tx.Get(bg(), k, abi.ModeLinearizable)
		tx.End()
		ret := h.Now()
		if err != nil {
			t.Errorf("get: %v", err)
			return
		}
		h.Add(client, linearcheck.Input{Kind: linearcheck.Get, Key: key}, call, linearcheck.Output{Value: string(val)}, ret)
	case dice < 4: // blind linearizable write
		call := h.Now()
		if err := tx.Put(bg(), k, []byte(tag), abi.ModeLinearizable); err != nil {
			t.Errorf("put: %v", err)
			return
		}
		h.Add(client, linearcheck.Input{Kind: linearcheck.Put, Key: key, Value: tag}, call, linearcheck.Output{}, h.Now())
	default: // append: read-modify-write, retried on conflict; only the successful try is an operation
		for {
			call := h.Now()
			old, _, err := tx.Get(bg(), k, abi.ModeLinearizable)
			if err != nil {
				t.Errorf("append read: %v", err)
				return
			}
			err = tx.Put(bg(), k, append(bytes.Clone(old), tag...), abi.ModeLinearizable)
			ret := h.Now()
			if errors.Is(err, ErrConflict) {
				continue
			}
			if err != nil {
				t.Errorf("append write: %v", err)
				return
			}
			h.Add(client, linearcheck.Input{Kind: linearcheck.Append, Key: key, Value: tag}, call, linearcheck.Output{Value: string(old)}, ret)
			return
		}
	}
}

// TestCausalNeverTorn: mode-0 readers never see a mix of two writes.
func TestCausalNeverTorn(t *testing.T) {
	s := New(Options{})
	ctx, cancel := context.WithTimeout(bg(), 300*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx := s.NewTxn()
			val := make([]byte, 4096)
			for i := 0; ctx.Err() == nil; i++ {
				for j := range val {
					val[j] = byte(w*64 + i%64)
				}
				if err := tx.Put(bg(), []byte("k"), val[:1024+i%3072], abi.ModeCausal); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var reads atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx := s.NewTxn()
			for ctx.Err() == nil {
				val, ok, _ := tx.Get(bg(), []byte("k"), abi.ModeCausal)
				if ok && bytes.Count(val, val[:1]) != len(val) {
					t.Errorf("torn value of %d bytes", len(val))
					return
				}
				if ok {
					reads.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("no reader saw a value")
	}
	t.Logf("%d reads, none torn", reads.Load())
}

func TestDeadlockHasOneVictim(t *testing.T) {
	s := New(Options{LockWait: 10 * time.Second})
	a, b := s.NewTxn(), s.NewTxn()
	mustLock(t, a, "x")
	mustLock(t, b, "y")
	errs := make(chan error, 2)
	go func() { _, _, err := a.Get(bg(), []byte("y"), abi.ModeLinearizable); errs <- err }()
	// b closes the cycle only once a waits; whoever closes it is the victim.
	waitFor(t, func() bool { return a.waitingOn.Load() != nil })
	_, _, errB := b.Get(bg(), []byte("x"), abi.ModeLinearizable)
	if !errors.Is(errB, ErrDeadlock) {
		t.Fatalf("b closed the cycle but got %v, want ErrDeadlock", errB)
	}
	if b.Open() != 0 {
		t.Fatalf("victim kept %d sections", b.Open())
	}
	select {
	case err := <-errs:
		if err != nil {
			t.Fatalf("survivor got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("survivor still waits after the victim aborted")
	}
	if a.Open() != 2 {
		t.Fatalf("survivor holds %d sections, want 2", a.Open())
	}
	a.End()
	assertNoLocks(t, s)
}

func TestDeadlockHammer(t *testing.T) {
	// Many requests locking two of three keys in random order: every request
	// ends (commit or deadlock/timeout), none hangs, and the count of
	// commits equals the increments in the store.
	s := New(Options{LockWait: 2 * time.Second})
	const P, N = 8, 200
	var mu sync.Mutex
	commits, victims := 0, 0
	var wg sync.WaitGroup
	for p := range P {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx := s.NewTxn()
			rng := rand.New(rand.NewPCG(uint64(p), 2))
			for range N {
				k1, k2 := fmt.Sprint(rng.IntN(3)), fmt.Sprint(rng.IntN(3))
				ok := lockBothAndIncrement(t, tx, k1, k2)
				mu.Lock()
				if ok {
					commits++
				} else {
					victims++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := 0
	for k := range 3 {
		val, _, _ := s.NewTxn().Get(bg(), []byte(fmt.Sprint(k)), abi.ModeCausal)
		n, _ := strconv.Atoi(string(val))
		total += n
	}
	if total != commits {
		t.Fatalf("store holds %d increments, %d requests committed (%d victims)", total, commits, victims)
	}
	t.Logf("%d commits, %d deadlock victims", commits, victims)
	assertNoLocks(t, s)
}

func lockBothAndIncrement(t *testing.T, tx *Txn, k1, k2 string) bool {
	defer tx.End()
	for _, k := range []string{k1, k2} {
		if _, _, err := tx.Get(bg(), []byte(k), abi.ModeLinearizable); err != nil {
			if !errors.Is(err, ErrDeadlock) && !errors.Is(err, ErrLockTimeout) {
				t.Errorf("lock %s: %v", k, err)
			}
			if tx.Open() != 0 {
				t.Errorf("%d sections open after %v", tx.Open(), err)
			}
			return false
		}
	}
	val, _, _ := tx.Get(bg(), []byte(k1), abi.ModeLinearizable)
	n, _ := strconv.Atoi(string(val))
	if err := tx.Put(bg(), []byte(k1), []byte(strconv.Itoa(n+1)), abi.ModeLinearizable); err != nil {
		t.Errorf("commit: %v", err)
		return false
	}
	return true
}

func TestLockWaitIsBounded(t *testing.T) {
	s := New(Options{LockWait: 50 * time.Millisecond})
	holder, waiter := s.NewTxn(), s.NewTxn()
	mustLock(t, holder, "k")
	mustLock(t, waiter, "other")
	start := time.Now()
	_, _, err := waiter.Get(bg(), []byte("k"), abi.ModeLinearizable)
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("got %v, want ErrLockTimeout", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("waited %v for a 50ms bound", waited)
	}
	if waiter.Open() != 0 {
		t.Fatal("timed-out request kept its other section")
	}
	// The aborted section released "other": a third request takes it at once.
	mustLock(t, s.NewTxn(), "other")
}

func TestLockWaitStopsOnCancel(t *testing.T) {
	s := New(Options{})
	holder := s.NewTxn()
	mustLock(t, holder, "k")
	ctx, cancel := context.WithCancel(bg())
	errs := make(chan error)
	waiter := s.NewTxn()
	go func() { _, _, err := waiter.Get(ctx, []byte("k"), abi.ModeLinearizable); errs <- err }()
	waitFor(t, func() bool { return waiter.waitingOn.Load() != nil })
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	holder.End()
	assertNoLocks(t, s)
}

func TestEndReleasesAndAppliesNothing(t *testing.T) {
	for _, sc := range schemes {
		t.Run(sc.String(), func(t *testing.T) {
			s := New(Options{Scheme: sc, LockWait: time.Second})
			tx := s.NewTxn()
			if err := tx.Put(bg(), []byte("k"), []byte("before"), abi.ModeCausal); err != nil {
				t.Fatal(err)
			}
			mustLock(t, tx, "k")
			mustLock(t, tx, "absent")
			tx.End()
			other := s.NewTxn()
			mustLock(t, other, "k") // would time out if tx still held it
			val, _, _ := other.Get(bg(), []byte("k"), abi.ModeLinearizable)
			if string(val) != "before" {
				t.Fatalf("value %q after an aborted section", val)
			}
			other.End()
			assertNoLocks(t, s)
		})
	}
}

func TestOptimisticConflict(t *testing.T) {
	s := New(Options{Scheme: Optimistic})
	a, b := s.NewTxn(), s.NewTxn()
	mustLock(t, a, "k")
	if err := b.Put(bg(), []byte("k"), []byte("b"), abi.ModeCausal); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(bg(), []byte("k"), []byte("a"), abi.ModeLinearizable); !errors.Is(err, ErrConflict) {
		t.Fatalf("got %v, want ErrConflict", err)
	}
	if a.Open() != 0 {
		t.Fatal("conflict left the section open")
	}
	val, _, _ := a.Get(bg(), []byte("k"), abi.ModeCausal)
	if string(val) != "b" {
		t.Fatalf("conflicting write applied: %q", val)
	}
	// A delete-then-recreate in between is a conflict too.
	mustLock(t, a, "k")
	_ = b.Delete(bg(), []byte("k"), abi.ModeCausal)
	_ = b.Put(bg(), []byte("k"), []byte("b"), abi.ModeCausal)
	if err := a.Delete(bg(), []byte("k"), abi.ModeLinearizable); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete after recreate: %v, want ErrConflict", err)
	}
}

func mustLock(t *testing.T, tx *Txn, key string) {
	t.Helper()
	if _, _, err := tx.Get(bg(), []byte(key), abi.ModeLinearizable); err != nil {
		t.Fatalf("read_state(%q, 1): %v", key, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// assertNoLocks checks that no key is locked or awaited and that no
// placeholder entry is left behind.
func assertNoLocks(t *testing.T, s *Store) {
	t.Helper()
	entries := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for k, e := range sh.m {
			if e.owner.Load() != nil || e.waiters != 0 || e.wake != nil {
				t.Errorf("key %q still locked (waiters %d)", k, e.waiters)
			}
			if !e.present {
				t.Errorf("placeholder for %q left behind", k)
			}
			entries++
		}
		sh.mu.RUnlock()
	}
	if int64(entries) != s.keys.Load() {
		t.Errorf("%d entries for %d keys", entries, s.keys.Load())
	}
}

func assertNoEntries(t *testing.T, s *Store) {
	t.Helper()
	assertNoLocks(t, s)
	if n := s.keys.Load(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

// A deadlock or a timed-out lock wait aborts every open section of the
// request. The write that would have closed one of them must not then
// commit as a blind write: it was computed from a read another request may
// have overtaken since. It fails with the error that aborted the section,
// until the request ends or reads the key again.
func TestCommitAfterAbortedSection(t *testing.T) {
	for name, abort := range map[string]error{"timeout": ErrLockTimeout, "deadlock": ErrDeadlock} {
		t.Run(name, func(t *testing.T) {
			s := New(Options{LockWait: 50 * time.Millisecond})
			holder, req, other := s.NewTxn(), s.NewTxn(), s.NewTxn()
			mustLock(t, holder, "b")
			mustLock(t, req, "a")
			holderGot := make(chan error, 1)
			if abort == ErrDeadlock {
				// holder waits for a, so req's wait for b closes the cycle.
				go func() { _, _, err := holder.Get(bg(), []byte("a"), abi.ModeLinearizable); holderGot <- err }()
				waitFor(t, func() bool { return holder.waitingOn.Load() != nil })
			} else {
				holderGot <- nil
			}
			if _, _, err := req.Get(bg(), []byte("b"), abi.ModeLinearizable); !errors.Is(err, abort) {
				t.Fatalf("read of b: %v, want %v", err, abort)
			}
			if err := <-holderGot; err != nil {
				t.Fatalf("holder: %v", err)
			}
			holder.End()
			mustLock(t, other, "a")
			if err := other.Put(bg(), []byte("a"), []byte("other"), abi.ModeLinearizable); err != nil {
				t.Fatal(err)
			}
			if err := req.Put(bg(), []byte("a"), []byte("stale"), abi.ModeLinearizable); !errors.Is(err, abort) {
				t.Fatalf("commit of the aborted section of a: %v, want %v", err, abort)
			}
			if err := req.Delete(bg(), []byte("a"), abi.ModeLinearizable); !errors.Is(err, abort) {
				t.Fatalf("delete of the aborted section of a: %v, want %v", err, abort)
			}
			if err := req.Put(bg(), []byte("b"), []byte("stale"), abi.ModeLinearizable); !errors.Is(err, abort) {
				t.Fatalf("commit after the failed read of b: %v, want %v", err, abort)
			}
			if val, _, _ := other.Get(bg(), []byte("a"), abi.ModeCausal); string(val) != "other" {
				t.Fatalf("a = %q: the aborted section's write applied", val)
			}
			// A blind write of a key the request never read still commits.
			if err := req.Put(bg(), []byte("c"), []byte("blind"), abi.ModeLinearizable); err != nil {
				t.Fatalf("blind write after the abort: %v", err)
			}
			// Reading a again opens a new section, which commits.
			mustLock(t, req, "a")
			if err := req.Put(bg(), []byte("a"), []byte("fresh"), abi.ModeLinearizable); err != nil {
				t.Fatalf("commit of a new section after the abort: %v", err)
			}
			// End forgets the abort: the next request starts clean.
			req.End()
			if err := req.Put(bg(), []byte("b"), []byte("next"), abi.ModeLinearizable); err != nil {
				t.Fatalf("blind write of the next request: %v", err)
			}
			assertNoLocks(t, s)
		})
	}
}
