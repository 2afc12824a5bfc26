package state

import (
	"bytes"
	"context"
	"fmt"

	"github.com/xfaas/xfaas/internal/abi"
)

// Txn is one request's handle on a Store: it owns the request's open
// linearizable sections. A Txn is used by one goroutine at a time and is
// reused across requests: End closes everything and makes it fresh again.
type Txn struct {
	s        *Store
	sections []section
	// waitingOn is the entry this Txn waits to lock, for the deadlock walk.
	waitingOn atomicEntry
}

// section is an open linearizable section on one key.
type section struct {
	key   []byte
	e     *entry // pessimistic: the locked entry
	stamp uint64 // optimistic: the stamp read
}

// NewTxn returns a Txn on s.
func (s *Store) NewTxn() *Txn { return &Txn{s: s} }

// Open reports how many sections are open.
func (t *Txn) Open() int { return len(t.sections) }

func (t *Txn) find(key []byte) int {
	for i := range t.sections {
		if bytes.Equal(t.sections[i].key, key) {
			return i
		}
	}
	return -1
}

func (t *Txn) closeAt(i int) section {
	sec := t.sections[i]
	last := len(t.sections) - 1
	t.sections[i] = t.sections[last]
	t.sections[last] = section{}
	t.sections = t.sections[:last]
	return sec
}

// Get reads key. In mode 1 it opens a section on key (or continues the one
// already open). The returned slice is immutable; ok is false when the key is
// absent.
func (t *Txn) Get(ctx context.Context, key []byte, mode int32) (val []byte, ok bool, err error) {
	switch mode {
	case abi.ModeCausal:
		val, _, ok = t.s.get(key)
		return val, ok, nil
	case abi.ModeLinearizable:
		if err := t.s.checkKey(key); err != nil {
			return nil, false, err
		}
		if t.s.opts.Scheme == Optimistic {
			return t.getOptimistic(key)
		}
		return t.getPessimistic(ctx, key)
	}
	return nil, false, errMode(mode)
}

func (t *Txn) getOptimistic(key []byte) ([]byte, bool, error) {
	val, stamp, ok := t.s.get(key)
	if t.find(key) < 0 {
		t.sections = append(t.sections, section{key: append([]byte(nil), key...), stamp: stamp})
	}
	return val, ok, nil
}

func (t *Txn) getPessimistic(ctx context.Context, key []byte) ([]byte, bool, error) {
	if i := t.find(key); i >= 0 {
		val, _, ok := t.s.get(key)
		return val, ok, nil
	}
	e, err := t.lock(ctx, key)
	if err != nil {
		return nil, false, err
	}
	t.sections = append(t.sections, section{key: append([]byte(nil), key...), e: e})
	sh := t.s.shardOf(key)
	sh.mu.RLock()
	val, ok := e.val, e.present
	sh.mu.RUnlock()
	return val, ok, nil
}

// Put writes key. In mode 1 it commits and closes key's section; without an
// open section it is a blind linearizable write.
func (t *Txn) Put(ctx context.Context, key, val []byte, mode int32) error {
	switch mode {
	case abi.ModeCausal:
		return t.s.put(key, val)
	case abi.ModeLinearizable:
		return t.commit(ctx, key, val, false)
	}
	return errMode(mode)
}

// Delete deletes key. In mode 1 it commits the deletion and closes key's
// section.
func (t *Txn) Delete(ctx context.Context, key []byte, mode int32) error {
	switch mode {
	case abi.ModeCausal:
		return t.s.del(key)
	case abi.ModeLinearizable:
		return t.commit(ctx, key, nil, true)
	}
	return errMode(mode)
}

// commit applies a mode-1 write or delete and closes key's section.
func (t *Txn) commit(ctx context.Context, key, val []byte, del bool) error {
	if err := t.s.checkKey(key); err != nil {
		return err
	}
	if err := t.s.checkValue(val); err != nil {
		return err
	}
	if t.s.opts.Scheme == Optimistic {
		return t.commitOptimistic(key, val, del)
	}
	return t.commitPessimistic(ctx, key, val, del)
}

func (t *Txn) commitOptimistic(key, val []byte, del bool) error {
	i := t.find(key)
	if i < 0 { // blind write: nothing to validate
		if del {
			return t.s.del(key)
		}
		return t.s.put(key, val)
	}
	sec := t.closeAt(i)
	owned := ownedCopy(val, del)
	sh := t.s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[string(key)]
	var stamp uint64
	if e != nil && e.present {
		stamp = e.stamp
	}
	if stamp != sec.stamp {
		return ErrConflict
	}
	return t.s.applyLocked(sh, key, e, owned, del)
}

func (t *Txn) commitPessimistic(ctx context.Context, key, val []byte, del bool) error {
	var e *entry
	if i := t.find(key); i >= 0 {
		e = t.closeAt(i).e
	} else {
		var err error
		if e, err = t.lock(ctx, key); err != nil {
			return err
		}
	}
	owned := ownedCopy(val, del)
	sh := t.s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	err := t.s.applyLocked(sh, key, e, owned, del)
	t.s.unlockLocked(sh, key, e)
	return err
}

// applyLocked installs val in (or deletes) key's entry e, which may be nil
// when the key has no entry. The caller holds the shard's write lock.
func (s *Store) applyLocked(sh *shard, key []byte, e *entry, val []byte, del bool) error {
	if del {
		if e != nil {
			s.removeLocked(sh, key, e)
		}
		return nil
	}
	if e == nil {
		e = entryLocked(sh, key)
	}
	return s.installLocked(key, e, val)
}

func ownedCopy(val []byte, del bool) []byte {
	if del {
		return nil
	}
	return append(make([]byte, 0, len(val)), val...)
}

// End aborts every open section (a pessimistic section releases its lock; an
// optimistic one is forgotten). Nothing of an open section is applied, since
// writes commit immediately. The Txn is ready for the next request.
func (t *Txn) End() {
	for i := range t.sections {
		if e := t.sections[i].e; e != nil {
			sh := t.s.shardOf(t.sections[i].key)
			sh.mu.Lock()
			t.s.unlockLocked(sh, t.sections[i].key, e)
			sh.mu.Unlock()
		}
		t.sections[i] = section{}
	}
	t.sections = t.sections[:0]
}

func errMode(mode int32) error {
	return fmt.Errorf("%w: mode %d (want 0 or 1)", ErrInvalid, mode)
}
