// Package state is the in-memory session state of a primary container: a
// key/value store with the two consistency modes of DESIGN.md.
//
// Mode 0 (causal) operations are atomic per key and never wait. Mode 1
// (linearizable) operations run inside per-key critical sections opened by a
// read and closed by the matching write or delete, either pessimistically
// (the read takes the key's lock) or optimistically (the write validates the
// key's stamp). See RATIONALE.md, "Session state".
//
// A Store is safe for concurrent use. A Txn is one request's handle on the
// store and is used by one goroutine at a time.
package state

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Scheme is how linearizable sections are isolated.
type Scheme int

const (
	// Pessimistic: read_state(k, 1) takes k's lock until the section closes.
	Pessimistic Scheme = iota
	// Optimistic: write_state(k, 1) commits only if k did not move since the read.
	Optimistic
)

// ParseScheme maps the function config's "lock" value to a Scheme. The empty
// string is the default, pessimistic.
func ParseScheme(s string) (Scheme, error) {
	switch s {
	case "", "pessimistic":
		return Pessimistic, nil
	case "optimistic":
		return Optimistic, nil
	}
	return 0, fmt.Errorf("%w: lock must be \"pessimistic\" or \"optimistic\", not %q", ErrInvalid, s)
}

func (s Scheme) String() string {
	if s == Optimistic {
		return "optimistic"
	}
	return "pessimistic"
}

// Options configure a Store. Zero fields take the documented defaults.
type Options struct {
	// Scheme isolates linearizable sections. The default is Pessimistic.
	Scheme Scheme
	// MaxKeyBytes bounds a key's length. The default is 1 KiB.
	MaxKeyBytes int
	// MaxValueBytes bounds a value's length. The default is 4 MiB.
	MaxValueBytes int
	// MaxBytes bounds the total size of keys and values. The default is 1 GiB.
	MaxBytes int64
	// LockWait bounds one wait for a key's lock. The default is 5 s.
	LockWait time.Duration
}

// Defaults of Options.
const (
	DefaultMaxKeyBytes   = 1 << 10
	DefaultMaxValueBytes = 4 << 20
	DefaultMaxBytes      = 1 << 30
	DefaultLockWait      = 5 * time.Second
)

func (o *Options) fill() {
	if o.MaxKeyBytes <= 0 {
		o.MaxKeyBytes = DefaultMaxKeyBytes
	}
	if o.MaxValueBytes <= 0 {
		o.MaxValueBytes = DefaultMaxValueBytes
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.LockWait <= 0 {
		o.LockWait = DefaultLockWait
	}
}

const shardCount = 64

// Store is a session's state.
type Store struct {
	opts   Options
	seed   maphash.Seed
	shards [shardCount]shard

	seq   atomic.Uint64 // stamp of the latest write
	bytes atomic.Int64  // total key and value bytes of present entries
	keys  atomic.Int64  // present entries

	journal Journal // durability "log"; nil otherwise

	// sealed refuses every write (Seal). applyLocked, which every write
	// goes through, reads it under the shard's write lock, which Snapshot
	// also takes, so a write either lands before the snapshot reads its
	// shard or sees sealed and fails.
	sealed atomic.Bool

	// waitMu serializes wait-graph registrations (see locks.go). It is
	// taken only when a request is about to wait for a lock.
	waitMu sync.Mutex
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*entry
}

// entry is one key. val is immutable once installed. All fields but owner
// are guarded by the shard's mutex; owner is atomic so that the deadlock walk
// can read it without taking shard locks.
type entry struct {
	val     []byte
	stamp   uint64
	present bool

	owner   atomic.Pointer[Txn] // pessimistic lock holder, nil when free
	wake    chan struct{}       // closed when the lock is released; nil when nobody waits
	waiters int                 // requests between registering and re-checking
}

// New returns an empty store.
func New(opts Options) *Store {
	opts.fill()
	s := &Store{opts: opts, seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*entry)
	}
	return s
}

// Scheme is the store's isolation scheme.
func (s *Store) Scheme() Scheme { return s.opts.Scheme }

func (s *Store) shardOf(key []byte) *shard {
	return &s.shards[maphash.Bytes(s.seed, key)%shardCount]
}

func (s *Store) checkKey(key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty key", ErrInvalid)
	}
	if len(key) > s.opts.MaxKeyBytes {
		return fmt.Errorf("%w: key of %d bytes exceeds the %d byte limit", ErrKeyTooLarge, len(key), s.opts.MaxKeyBytes)
	}
	return nil
}

func (s *Store) checkValue(val []byte) error {
	if len(val) > s.opts.MaxValueBytes {
		return fmt.Errorf("%w: value of %d bytes exceeds the %d byte limit", ErrValueTooLarge, len(val), s.opts.MaxValueBytes)
	}
	return nil
}

// get reads key's current value under the shard's read lock. The returned
// slice is immutable and may be retained.
func (s *Store) get(key []byte) (val []byte, stamp uint64, ok bool) {
	sh := s.shardOf(key)
	sh.mu.RLock()
	if e := sh.m[string(key)]; e != nil && e.present {
		val, stamp, ok = e.val, e.stamp, true
	}
	sh.mu.RUnlock()
	return val, stamp, ok
}

// install makes val (already copied, owned by the store) the value of e.
// The caller holds the shard's write lock.
func (s *Store) installLocked(key []byte, e *entry, val []byte) error {
	delta := int64(len(val))
	if e.present {
		delta -= int64(len(e.val))
	} else {
		delta += int64(len(key))
	}
	if delta > 0 && s.bytes.Load()+delta > s.opts.MaxBytes {
		return fmt.Errorf("%w: session state would exceed %d bytes", ErrStateFull, s.opts.MaxBytes)
	}
	s.bytes.Add(delta)
	if !e.present {
		s.keys.Add(1)
	}
	e.val, e.present, e.stamp = val, true, s.seq.Add(1)
	if s.journal != nil {
		s.journal.Append(key, val, false, e.stamp)
	}
	return nil
}

// removeLocked deletes e's value. An entry that is locked or awaited stays
// in the map as a placeholder; any other is dropped. The caller holds the
// shard's write lock.
func (s *Store) removeLocked(sh *shard, key []byte, e *entry) {
	if e.present {
		s.bytes.Add(-int64(len(key) + len(e.val)))
		s.keys.Add(-1)
	}
	e.val, e.present, e.stamp = nil, false, s.seq.Add(1)
	if s.journal != nil {
		s.journal.Append(key, nil, true, e.stamp)
	}
	s.dropIfIdleLocked(sh, key, e)
}

func (s *Store) dropIfIdleLocked(sh *shard, key []byte, e *entry) {
	if !e.present && e.owner.Load() == nil && e.waiters == 0 {
		if sh.m[string(key)] == e {
			delete(sh.m, string(key))
		}
	}
}

// entryLocked returns key's entry, creating a placeholder if there is none.
// The caller holds the shard's write lock.
func entryLocked(sh *shard, key []byte) *entry {
	e := sh.m[string(key)]
	if e == nil {
		e = &entry{}
		sh.m[string(key)] = e
	}
	return e
}

// put writes a mode-0 (or blind optimistic) value.
func (s *Store) put(key, val []byte) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if err := s.checkValue(val); err != nil {
		return err
	}
	owned := append([]byte(nil), val...)
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return s.applyLocked(sh, key, sh.m[string(key)], owned, false)
}

// del deletes key (mode 0 or blind optimistic).
func (s *Store) del(key []byte) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return s.applyLocked(sh, key, sh.m[string(key)], nil, true)
}

// Seal makes every later write and delete fail with ErrUnavailable, so
// that a snapshot taken after it is the session's final state: the primary
// is about to be released (a retire). A write that runs concurrently with
// Seal either is in every Snapshot taken after Seal returns, or fails.
// Reads go on. See RATIONALE.md, "Who retires a namespace".
func (s *Store) Seal() { s.sealed.Store(true) }

// Unseal undoes Seal: the retire failed and the session serves on.
func (s *Store) Unseal() { s.sealed.Store(false) }

var errSealed = fmt.Errorf("%w: the session is being checkpointed to stop or move; retry the request", ErrUnavailable)

// Stats is a point-in-time summary of a store.
type Stats struct {
	Keys  int64  `json:"keys"`
	Bytes int64  `json:"bytes"`
	Seq   uint64 `json:"seq"`
}

// Stats reports the number of keys, their total size and the latest stamp.
func (s *Store) Stats() Stats {
	return Stats{Keys: s.keys.Load(), Bytes: s.bytes.Load(), Seq: s.seq.Load()}
}

// Errors of state operations. Code maps each to its ABI status.
var (
	ErrConflict      = errors.New("optimistic conflict: the key moved since it was read")
	ErrDeadlock      = errors.New("deadlock: the request's open sections were aborted")
	ErrLockTimeout   = errors.New("lock wait timed out: the request's open sections were aborted")
	ErrKeyTooLarge   = errors.New("key too large")
	ErrValueTooLarge = errors.New("value too large")
	ErrInvalid       = errors.New("invalid state operation")
	ErrStateFull     = errors.New("session state full")
	ErrUnavailable   = errors.New("session state unavailable")
)

// Range calls fn for every present key until fn returns false. Each value
// is read atomically; the walk as a whole is not a snapshot when writes run
// concurrently.
func (s *Store) Range(fn func(key string, val []byte) bool) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		type kv struct {
			k string
			v []byte
		}
		items := make([]kv, 0, len(sh.m))
		for k, e := range sh.m {
			if e.present {
				items = append(items, kv{k, e.val})
			}
		}
		sh.mu.RUnlock()
		for _, it := range items {
			if !fn(it.k, it.v) {
				return
			}
		}
	}
}
