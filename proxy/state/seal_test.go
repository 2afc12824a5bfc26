package state

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xfaas/xfaas/internal/abi"
)

// A sealed store refuses every kind of write, and Unseal opens it again.
func TestSealRefusesWrites(t *testing.T) {
	for _, scheme := range schemes {
		t.Run(scheme.String(), func(t *testing.T) {
			s := New(Options{Scheme: scheme})
			tx := s.NewTxn()
			if err := tx.Put(bg(), []byte("k"), []byte("v"), abi.ModeCausal); err != nil {
				t.Fatal(err)
			}
			if _, _, err := tx.Get(bg(), []byte("k"), abi.ModeLinearizable); err != nil {
				t.Fatal(err)
			}
			s.Seal()
			writes := map[string]func() error{
				"put":           func() error { return tx.Put(bg(), []byte("j"), []byte("v"), abi.ModeCausal) },
				"delete":        func() error { return tx.Delete(bg(), []byte("k"), abi.ModeCausal) },
				"commit":        func() error { return tx.Put(bg(), []byte("k"), []byte("w"), abi.ModeLinearizable) },
				"blind commit":  func() error { return tx.Put(bg(), []byte("b"), []byte("w"), abi.ModeLinearizable) },
				"commit delete": func() error { return tx.Delete(bg(), []byte("b"), abi.ModeLinearizable) },
			}
			for name, write := range writes {
				if err := write(); Code(err) != abi.ErrUnavailable {
					t.Errorf("%s while sealed: %v; want unavailable", name, err)
				}
			}
			if val, ok, err := tx.Get(bg(), []byte("k"), abi.ModeCausal); string(val) != "v" || !ok || err != nil {
				t.Errorf("read while sealed: %q %v %v", val, ok, err)
			}
			tx.End()
			s.Unseal()
			if err := tx.Put(bg(), []byte("k"), []byte("w"), abi.ModeLinearizable); err != nil {
				t.Errorf("commit after unseal: %v", err)
			}
		})
	}
}

// Every write that succeeds while a seal races with it is in the snapshot
// taken after the seal: nothing acknowledged is left out of a retire's
// last checkpoint.
func TestSealedSnapshotHoldsEveryAcknowledgedWrite(t *testing.T) {
	for _, scheme := range schemes {
		t.Run(scheme.String(), func(t *testing.T) {
			s := New(Options{Scheme: scheme})
			var wg sync.WaitGroup
			var acked [8]atomic.Int64 // per writer: the last value acknowledged
			var snapped atomic.Bool   // stops the writers of a store that does not seal
			for w := range acked {
				wg.Go(func() {
					tx := s.NewTxn()
					defer tx.End()
					key := []byte(fmt.Sprint("k", w))
					for i := int64(1); ; i++ {
						mode := int32(i % 2) // alternate mode 0 and a blind mode-1 write
						err := tx.Put(bg(), key, []byte(fmt.Sprint(i)), mode)
						if errors.Is(err, ErrUnavailable) {
							return
						}
						if err != nil {
							t.Error(err)
							return
						}
						acked[w].Store(i)
						if snapped.Load() {
							return
						}
					}
				})
			}
			for s.Stats().Seq < 1000 {
				runtime.Gosched()
			}
			s.Seal()
			entries, _ := s.Snapshot()
			snapped.Store(true)
			wg.Wait()
			got := map[string]string{}
			for _, e := range entries {
				got[e.Key] = string(e.Value)
			}
			for w := range acked {
				want := ""
				if n := acked[w].Load(); n > 0 {
					want = fmt.Sprint(n)
				}
				if got[fmt.Sprint("k", w)] != want {
					t.Errorf("writer %d: snapshot holds %q, last acknowledged %q", w, got[fmt.Sprint("k", w)], want)
				}
			}
		})
	}
}
