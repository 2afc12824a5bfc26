package state

import "fmt"

// Journal receives every write the store commits, for durability "log"
// (see RATIONALE.md, "Durable sessions"). Append is called under the
// key's shard lock, so the writes of one key reach it in stamp order; it
// must not block for long (it queues, it does not wait for the disk).
type Journal interface {
	Append(key, val []byte, deleted bool, stamp uint64)
}

// SetJournal makes j receive every write committed from now on. It is set
// once, after Restore and Replay and before the store serves requests.
func (s *Store) SetJournal(j Journal) { s.journal = j }

// Replay applies a logged write after a Restore: it installs (or deletes)
// key unless the store holds a newer stamp for it, so replaying a log tail
// that overlaps the checkpoint, or replaying twice, changes nothing. Like
// Restore, it runs before the store serves requests.
func (s *Store) Replay(key, val []byte, deleted bool, stamp uint64) error {
	if err := s.checkKey(key); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if !deleted {
		if err := s.checkValue(val); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[string(key)]
	if e != nil && e.stamp >= stamp {
		return nil
	}
	e = entryLocked(sh, key)
	var err error
	if deleted {
		s.removeLocked(sh, key, e)
	} else {
		err = s.installLocked(key, e, append([]byte(nil), val...))
	}
	if err == nil {
		e.stamp = stamp
		for {
			cur := s.seq.Load()
			if cur >= stamp || s.seq.CompareAndSwap(cur, stamp) {
				break
			}
		}
	}
	return err
}
