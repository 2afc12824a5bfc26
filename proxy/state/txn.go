package state

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/xfaas/xfaas/internal/abi"
)

// Txn is one request's handle on a Store: it owns the request's open
// linearizable sections. A Txn is used by one goroutine at a time and is
// reused across requests: End closes everything and makes it fresh again.
type Txn struct {
	s        *Store
	sections []section
	// aborted remembers, until End, the keys whose sections a deadlock or a
	// timed-out lock wait aborted, each with that error. See commit.
	aborted []abortedKey
	// waitingOn is the entry this Txn waits to lock, for the deadlock walk.
	waitingOn atomicEntry
}

// section is an open linearizable section on one key.
type section struct {
	key   []byte
	e     *entry // pessimistic: the locked entry
	stamp uint64 // optimistic: the stamp read
}

// abortedKey is a key whose section (or the read that was to open it) was
// aborted, and the error that aborted it.
type abortedKey struct {
	key []byte
	err error
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
		// The read failed, so whatever the request writes to key next was
		// computed without its value: that write fails like those of the
		// sections lock aborted.
		t.markAborted(key, err)
		return nil, false, err
	}
	if len(t.aborted) > 0 {
		t.forgetAbort(key)
	}
	t.sections = append(t.sections, section{key: append([]byte(nil), key...), e: e})
	sh := t.s.shardOf(key)
	sh.mu.RLock()
	val, ok := e.val, e.present
	sh.mu.RUnlock()
	return val, ok, nil
}

// Put writes key. In mode 1 it commits and closes key's section; without an
// open section it is a blind linearizable write, unless the request's
// section on key was aborted (see commit).
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
//
// When a deadlock or a lock timeout aborted key's section, the request's
// write of key is still the one that was to close that section, computed
// from a read that other requests may have overtaken since the lock was
// released. Committing it as a blind write would silently overwrite their
// updates, so it fails with the error that aborted the section, as does
// every later mode-1 write of key, until the request ends or reads key in
// mode 1 again, which opens a new section. A key the request never read
// in mode 1 is still written blindly.
func (t *Txn) commit(ctx context.Context, key, val []byte, del bool) error {
	if err := t.s.checkKey(key); err != nil {
		return err
	}
	if err := t.s.checkValue(val); err != nil {
		return err
	}
	if err := t.abortOf(key); err != nil {
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
	if s.sealed.Load() {
		return errSealed
	}
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

// abortOf returns the error that aborted key's section, nil if none did.
func (t *Txn) abortOf(key []byte) error {
	for i := range t.aborted {
		if bytes.Equal(t.aborted[i].key, key) {
			return t.aborted[i].err
		}
	}
	return nil
}

// markAborted records that err aborted key's section.
func (t *Txn) markAborted(key []byte, err error) {
	for i := range t.aborted {
		if bytes.Equal(t.aborted[i].key, key) {
			t.aborted[i].err = err
			return
		}
	}
	t.aborted = append(t.aborted, abortedKey{key: append([]byte(nil), key...), err: err})
}

// forgetAbort drops key's aborted section: the request read key again.
func (t *Txn) forgetAbort(key []byte) {
	t.aborted = slices.DeleteFunc(t.aborted, func(a abortedKey) bool { return bytes.Equal(a.key, key) })
}

// abort ends every open section as End does, after a deadlock or a lock
// timeout (err), and remembers their keys for commit.
func (t *Txn) abort(err error) {
	for i := range t.sections {
		t.aborted = append(t.aborted, abortedKey{key: t.sections[i].key, err: err})
	}
	t.release()
}

// End aborts every open section (a pessimistic section releases its lock; an
// optimistic one is forgotten). Nothing of an open section is applied, since
// writes commit immediately. The Txn is ready for the next request.
func (t *Txn) End() {
	t.release()
	clear(t.aborted)
	t.aborted = t.aborted[:0]
}

// Close is End: a Txn holds nothing beyond its sections. It lets a Txn be a
// handle its user closes when it retires.
func (t *Txn) Close() { t.End() }

// release ends every open section: a pessimistic one releases its lock.
func (t *Txn) release() {
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
