package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/checkpoint"
)

func TestSnapshotRestoreEquality(t *testing.T) {
	s := New(Options{})
	tx := s.NewTxn()
	for i := range 10_000 {
		if err := tx.Put(bg(), fmt.Appendf(nil, "key-%05d", i), fmt.Appendf(nil, "value-%d", i*i), abi.ModeCausal); err != nil {
			t.Fatal(err)
		}
	}
	tx.Put(bg(), []byte("big"), bytes.Repeat([]byte{9}, 1<<20), abi.ModeCausal)
	tx.Delete(bg(), []byte("key-00007"), abi.ModeCausal)
	entries, seq := s.Snapshot()
	// Through the checkpoint format, as a restore on another node would.
	c, err := checkpoint.Decode((&checkpoint.Checkpoint{Function: "f", Session: "s", Seq: seq, Entries: entries}).Encode())
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{})
	if err := r.Restore(c.Entries, c.Seq); err != nil {
		t.Fatal(err)
	}
	if r.Stats() != s.Stats() {
		t.Fatalf("stats %+v after restore; want %+v", r.Stats(), s.Stats())
	}
	s.Range(func(k string, v []byte) bool {
		got, ok, _ := r.NewTxn().Get(bg(), []byte(k), abi.ModeCausal)
		if !ok || !bytes.Equal(got, v) {
			t.Fatalf("key %s differs after restore", k)
		}
		return true
	})
	if _, ok, _ := r.NewTxn().Get(bg(), []byte("key-00007"), abi.ModeCausal); ok {
		t.Fatal("a deleted key came back")
	}
	// New writes continue the sequence; optimistic stamps keep working.
	rt := r.NewTxn()
	rt.Put(bg(), []byte("after"), []byte("x"), abi.ModeCausal)
	if got := r.Stats().Seq; got != seq+1 {
		t.Fatalf("seq %d after one write past %d", got, seq)
	}
	if err := r.Restore(nil, 0); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a used store: %v", err)
	}
	if err := New(Options{MaxBytes: 100}).Restore(c.Entries, c.Seq); !errors.Is(err, ErrStateFull) {
		t.Fatalf("restore past the limit: %v", err)
	}
}

// A snapshot taken while writers run includes every write acknowledged
// before it started, each with its latest value at least.
func TestSnapshotUnderWrites(t *testing.T) {
	s := New(Options{})
	ctx, cancel := context.WithCancel(bg())
	var wg sync.WaitGroup
	var acked sync.Map // key → the last value acknowledged
	for w := range 4 {
		wg.Go(func() {
			tx := s.NewTxn()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("w%d-%d", w, i%200)
				if err := tx.Put(bg(), []byte(key), fmt.Appendf(nil, "%d", i), abi.ModeCausal); err != nil {
					t.Error(err)
					return
				}
				acked.Store(key, i)
			}
		})
	}
	for range 20 {
		before := map[string]int{}
		acked.Range(func(k, v any) bool { before[k.(string)] = v.(int); return true })
		entries, seq := s.Snapshot()
		got := map[string]int{}
		for _, e := range entries {
			if e.Stamp > s.Stats().Seq {
				t.Fatalf("entry %s stamped %d, past the store's sequence", e.Key, e.Stamp)
			}
			var n int
			fmt.Sscan(string(e.Value), &n)
			got[e.Key] = n
		}
		for k, v := range before {
			if n, ok := got[k]; !ok || n < v {
				t.Fatalf("snapshot (seq %d) lacks the acknowledged write %s=%d (has %d, %v)", seq, k, v, n, ok)
			}
		}
	}
	cancel()
	wg.Wait()
}
