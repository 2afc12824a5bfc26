package state

import (
	"context"
	"sync/atomic"
	"time"
)

// Lock order: a shard's mutex may be held while taking Store.waitMu, never
// the reverse. The deadlock walk reads owners and waitingOn atomically, so it
// needs no shard lock.

type atomicEntry = atomic.Pointer[entry]

// maxWalk bounds the deadlock walk; a chain this long is treated as a cycle.
const maxWalk = 1 << 10

// lock takes key's lock for t, waiting while another request holds it. On a
// deadlock or a timed-out wait, every section of t is aborted first (abort),
// and commit refuses their keys until End.
func (t *Txn) lock(ctx context.Context, key []byte) (*entry, error) {
	sh := t.s.shardOf(key)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		sh.mu.Lock()
		e := entryLocked(sh, key)
		if e.owner.CompareAndSwap(nil, t) {
			sh.mu.Unlock()
			return e, nil
		}
		if e.wake == nil {
			e.wake = make(chan struct{})
		}
		wake := e.wake
		e.waiters++
		deadlock := t.s.registerWait(t, e)
		sh.mu.Unlock()

		var err error
		if deadlock {
			err = ErrDeadlock
		} else {
			if timer == nil {
				timer = time.NewTimer(t.s.opts.LockWait)
			}
			select {
			case <-wake:
			case <-timer.C:
				err = ErrLockTimeout
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		t.waitingOn.Store(nil)
		sh.mu.Lock()
		e.waiters--
		t.s.dropIfIdleLocked(sh, key, e)
		sh.mu.Unlock()
		if err != nil {
			t.abort(err)
			return nil, err
		}
	}
}

// registerWait records that t waits on e and reports whether that closes a
// cycle of waits (then t must not wait). Registrations are serialized by
// waitMu, so of two requests closing a cycle the second always sees it.
func (s *Store) registerWait(t *Txn, e *entry) (deadlock bool) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	if waitsFor(e, t) {
		return true
	}
	t.waitingOn.Store(e)
	return false
}

// waitsFor walks from e to its owner, to the entry that owner waits on, and
// so on, and reports whether the walk reaches t. A chain longer than maxWalk
// is reported as a cycle: bounded work beats a precise answer there.
func waitsFor(e *entry, t *Txn) bool {
	for range maxWalk {
		owner := e.owner.Load()
		if owner == nil {
			return false
		}
		if owner == t {
			return true
		}
		if e = owner.waitingOn.Load(); e == nil {
			return false
		}
	}
	return true
}

// unlockLocked releases e's lock, wakes its waiters, and drops e if it is a
// placeholder nobody needs. The caller holds the shard's write lock.
func (s *Store) unlockLocked(sh *shard, key []byte, e *entry) {
	e.owner.Store(nil)
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
	s.dropIfIdleLocked(sh, key, e)
}
