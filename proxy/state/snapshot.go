package state

import (
	"errors"
	"fmt"

	"github.com/xfaas/xfaas/internal/checkpoint"
)

// Snapshot returns every present key with its value and stamp, and the
// sequence number seq such that every write stamped up to seq is included.
// Writes running concurrently may or may not be included; each value is
// read atomically.
func (s *Store) Snapshot() (entries []checkpoint.Entry, seq uint64) {
	// A write takes its stamp under its shard's lock, so any write stamped
	// up to seq has finished installing before Range reads its shard.
	seq = s.seq.Load()
	entries = make([]checkpoint.Entry, 0, s.keys.Load())
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for k, e := range sh.m {
			if e.present {
				entries = append(entries, checkpoint.Entry{Key: k, Value: e.val, Stamp: e.stamp})
			}
		}
		sh.mu.RUnlock()
	}
	return entries, seq
}

// ErrNotEmpty is returned by Restore into a store that has state.
var ErrNotEmpty = errors.New("restore into a store that is not empty")

// Restore loads entries into an empty store and continues its sequence
// numbers after seq (and after every entry's stamp). Limits apply: a
// checkpoint larger than the store's limits is refused, not truncated.
func (s *Store) Restore(entries []checkpoint.Entry, seq uint64) error {
	if s.keys.Load() != 0 || s.seq.Load() != 0 {
		return ErrNotEmpty
	}
	var total int64
	for _, e := range entries {
		if err := s.checkKey([]byte(e.Key)); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if err := s.checkValue(e.Value); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		total += int64(len(e.Key) + len(e.Value))
		seq = max(seq, e.Stamp)
	}
	if total > s.opts.MaxBytes {
		return fmt.Errorf("restore: %w: the checkpoint holds %d bytes", ErrStateFull, total)
	}
	for _, e := range entries {
		sh := s.shardOf([]byte(e.Key))
		sh.mu.Lock()
		sh.m[e.Key] = &entry{val: e.Value, stamp: e.Stamp, present: true}
		sh.mu.Unlock()
	}
	s.keys.Store(int64(len(entries)))
	s.bytes.Store(total)
	s.seq.Store(seq)
	return nil
}
