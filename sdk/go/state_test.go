//go:build !wasip1

package xfaas_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	xfaas "github.com/xfaas/xfaas/sdk/go"
	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

// run registers h and invokes it once with an empty body.
func run(t *testing.T, h xfaas.HandlerFunc) ([]byte, error) {
	t.Helper()
	xfaas.Handle(h)
	return xfaastest.Do(xfaastest.Request{})
}

// state runs f in a request and fails the test if the request fails.
func state(t *testing.T, f func(st *xfaas.State) error) {
	t.Helper()
	_, err := run(t, func(req *xfaas.Request) ([]byte, error) { return nil, f(req.State()) })
	if err != nil {
		t.Fatalf("request failed: %v", err)
	}
}

func TestGetSetDelete(t *testing.T) {
	xfaastest.Reset()
	state(t, func(st *xfaas.State) error {
		if val, ok, err := st.Get("k"); val != nil || ok || err != nil {
			t.Errorf("Get(absent) = %q, %v, %v; want nil, false, nil", val, ok, err)
		}
		if err := st.Set("k", []byte("v1")); err != nil {
			t.Fatal(err)
		}
		if val, ok, err := st.Get("k"); string(val) != "v1" || !ok || err != nil {
			t.Errorf("Get = %q, %v, %v; want v1, true, nil", val, ok, err)
		}
		if err := st.Set("empty", nil); err != nil {
			t.Fatal(err)
		}
		if val, ok, err := st.Get("empty"); len(val) != 0 || !ok || err != nil {
			t.Errorf("Get(empty value) = %q, %v, %v; want \"\", true, nil", val, ok, err)
		}
		if err := st.Delete("k"); err != nil {
			t.Fatal(err)
		}
		if err := st.Delete("k"); err != nil {
			t.Errorf("Delete(absent) = %v; want nil", err)
		}
		if _, ok, _ := st.Get("k"); ok {
			t.Error("k still present after Delete")
		}
		return nil
	})
}

func TestGetValuesOfEverySize(t *testing.T) {
	for _, size := range []int{0, 1, 16<<10 - 1, 16 << 10, 16<<10 + 1, 4<<20 - 1} {
		xfaastest.Reset()
		want := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		xfaastest.Set("k", want)
		state(t, func(st *xfaas.State) error {
			got, ok, err := st.Get("k")
			if !bytes.Equal(got, want) || !ok || err != nil {
				t.Errorf("Get(%d-byte value) = %d bytes, %v, %v", size, len(got), ok, err)
			}
			return st.Update("k", func(old []byte, ok bool) ([]byte, error) {
				if !bytes.Equal(old, want) || !ok {
					t.Errorf("Update(%d-byte value) saw %d bytes, %v", size, len(old), ok)
				}
				return append(old, '!'), nil
			})
		})
		if got, _ := xfaastest.Get("k"); !bytes.Equal(got, append(want, '!')) {
			t.Errorf("after Update of a %d-byte value: %d bytes", size, len(got))
		}
	}
}

// A read allocates its result and nothing else: the SDK reads into a
// reusable buffer.
func TestGetAllocatesOnlyTheResult(t *testing.T) {
	xfaastest.Reset()
	xfaastest.Set("k", []byte("small value"))
	var st xfaas.State
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := st.Get("k"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Errorf("Get allocates %v times; want 1", allocs)
	}
}

func TestUpdateCreatesAndIncrements(t *testing.T) {
	xfaastest.Reset()
	for i := range 3 {
		state(t, func(st *xfaas.State) error {
			return st.Update("n", func(old []byte, ok bool) ([]byte, error) {
				if ok != (i > 0) {
					t.Errorf("update %d: ok = %v", i, ok)
				}
				return append(old, 'x'), nil
			})
		})
	}
	if got, _ := xfaastest.Get("n"); string(got) != "xxx" {
		t.Errorf("n = %q; want xxx", got)
	}
}

// conflicting returns an Update function that appends "+" to the value, and
// makes the first n attempts conflict by changing the key behind its back.
func conflicting(key string, n int, attempts *int) func([]byte, bool) ([]byte, error) {
	return func(old []byte, _ bool) ([]byte, error) {
		*attempts++
		if *attempts <= n {
			xfaastest.Set(key, []byte(strings.Repeat("c", *attempts)))
		}
		return append(old, '+'), nil
	}
}

func TestUpdateRetriesConflicts(t *testing.T) {
	xfaastest.Reset()
	attempts := 0
	state(t, func(st *xfaas.State) error { return st.Update("k", conflicting("k", 3, &attempts)) })
	if attempts != 4 {
		t.Errorf("attempts = %d; want 4 (3 conflicts, then a commit)", attempts)
	}
	if got, _ := xfaastest.Get("k"); string(got) != "ccc+" {
		t.Errorf("k = %q; want ccc+ (built on the last concurrent write)", got)
	}
}

func TestUpdateGivesUpAfterUpdateAttempts(t *testing.T) {
	xfaastest.Reset()
	attempts := 0
	_, err := run(t, func(req *xfaas.Request) ([]byte, error) {
		err := req.State().Update("k", conflicting("k", 1000, &attempts))
		if !errors.Is(err, xfaas.ErrConflict) {
			t.Errorf("Update = %v; want ErrConflict", err)
		}
		var se *xfaas.StateError
		if !errors.As(err, &se) || se.Op != "write_state" || se.Key != "k" || se.Mode != 1 {
			t.Errorf("Update = %#v; want a *StateError of write_state(k, 1)", err)
		}
		return nil, err
	})
	if attempts != xfaas.UpdateAttempts {
		t.Errorf("attempts = %d; want %d", attempts, xfaas.UpdateAttempts)
	}
	want := `xfaas: write_state("k", 1): conflict`
	if err == nil || err.Error() != want {
		t.Errorf("function error = %v; want %q", err, want)
	}
}

// sectionClosed reports whether the request's critical section on key is
// closed, as the fake host, which is optimistic, shows it: after a
// concurrent write of key, a commit in the section conflicts, while a
// commit without one is a blind write and succeeds. The probe leaves key
// set.
func sectionClosed(t *testing.T, st *xfaas.State, key string) bool {
	t.Helper()
	xfaastest.Set(key, []byte("concurrent"))
	switch err := st.SetLinear(key, []byte("probe")); {
	case err == nil:
		return true
	case errors.Is(err, xfaas.ErrConflict):
		return false
	default:
		t.Fatalf("probe of the section on %q: %v", key, err)
		return false
	}
}

func TestUpdateSkipAndErrorsLeaveTheKeyAndCloseTheSection(t *testing.T) {
	errOwn := errors.New("own error")
	for _, tc := range []struct {
		name    string
		present bool
		err     error // returned by the update function
		want    error // returned by Update
	}{
		{"skip present", true, xfaas.ErrSkip, nil},
		{"skip absent", false, xfaas.ErrSkip, nil},
		{"error present", true, errOwn, errOwn},
		{"error absent", false, errOwn, errOwn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xfaastest.Reset()
			if tc.present {
				xfaastest.Set("k", []byte("old"))
			}
			state(t, func(st *xfaas.State) error {
				err := st.Update("k", func([]byte, bool) ([]byte, error) { return []byte("new"), tc.err })
				if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Errorf("Update = %v; want %v", err, tc.want)
				}
				got, ok := xfaastest.Get("k")
				if ok != tc.present || (tc.present && string(got) != "old") {
					t.Errorf("k = %q, %v; want it unchanged", got, ok)
				}
				if !sectionClosed(t, st, "k") {
					t.Error("the critical section is still open")
				}
				return nil
			})
		})
	}
}

// The probe tells an open section from a closed one.
func TestSectionClosedProbe(t *testing.T) {
	xfaastest.Reset()
	state(t, func(st *xfaas.State) error {
		if !sectionClosed(t, st, "k") {
			t.Error("a key never read in mode 1 has an open section")
		}
		if _, _, err := st.GetLinear("k"); err != nil {
			t.Fatal(err)
		}
		if sectionClosed(t, st, "k") {
			t.Error("the section GetLinear opened is closed")
		}
		return nil
	})
}

func TestUpdateDelete(t *testing.T) {
	xfaastest.Reset()
	xfaastest.Set("k", []byte("old"))
	state(t, func(st *xfaas.State) error {
		return st.Update("k", func([]byte, bool) ([]byte, error) { return nil, xfaas.ErrDelete })
	})
	if _, ok := xfaastest.Get("k"); ok {
		t.Error("k is still present")
	}
}

func TestUpdateDoesNotRetryDeadlocks(t *testing.T) {
	for _, e := range []xfaas.Errno{xfaas.ErrDeadlock, xfaas.ErrLockTimeout, xfaas.ErrUnavailable} {
		xfaastest.Reset()
		xfaastest.FailNext("read_state", e)
		calls := 0
		state(t, func(st *xfaas.State) error {
			err := st.Update("k", func([]byte, bool) ([]byte, error) { calls++; return nil, nil })
			if !errors.Is(err, e) {
				t.Errorf("Update = %v; want %v", err, e)
			}
			return nil
		})
		if calls != 0 {
			t.Errorf("%v: the update function ran %d times; want 0", e, calls)
		}
	}
}

func TestLinearCalls(t *testing.T) {
	xfaastest.Reset()
	state(t, func(st *xfaas.State) error {
		if _, ok, err := st.GetLinear("a"); ok || err != nil {
			t.Fatalf("GetLinear(absent) = %v, %v", ok, err)
		}
		if err := st.SetLinear("a", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if val, ok, err := st.GetLinear("a"); string(val) != "1" || !ok || err != nil {
			t.Fatalf("GetLinear = %q, %v, %v", val, ok, err)
		}
		return st.DeleteLinear("a")
	})
	if _, ok := xfaastest.Get("a"); ok {
		t.Error("a is still present after DeleteLinear")
	}
}

// A mode 1 commit of a key the request did not read in mode 1 is a blind
// write, as on the platform: nothing to validate, whatever changed.
func TestLinearCommitWithoutSectionIsBlind(t *testing.T) {
	xfaastest.Reset()
	state(t, func(st *xfaas.State) error {
		xfaastest.Set("a", []byte("concurrent"))
		if err := st.SetLinear("a", []byte("blind")); err != nil {
			t.Errorf("SetLinear without GetLinear = %v; want nil", err)
		}
		if val, _ := xfaastest.Get("a"); string(val) != "blind" {
			t.Errorf("a = %q; want blind", val)
		}
		xfaastest.Set("b", []byte("concurrent"))
		if err := st.DeleteLinear("b"); err != nil {
			t.Errorf("DeleteLinear without GetLinear = %v; want nil", err)
		}
		if _, ok := xfaastest.Get("b"); ok {
			t.Error("b is still present after DeleteLinear")
		}
		return nil
	})
}

// A deadlock or lock timeout aborts every open section, and the read that
// failed with it: a commit of one of those keys fails with the same error
// instead of writing blindly, until the request reads the key in mode 1
// again or ends. Other keys are still written blindly.
func TestAbortedSectionsRefuseTheirCommits(t *testing.T) {
	for _, e := range []xfaas.Errno{xfaas.ErrDeadlock, xfaas.ErrLockTimeout} {
		xfaastest.Reset()
		state(t, func(st *xfaas.State) error {
			for _, key := range []string{"a", "b"} {
				if _, _, err := st.GetLinear(key); err != nil {
					t.Fatal(err)
				}
			}
			xfaastest.FailNext("read_state", e)
			if _, _, err := st.GetLinear("c"); !errors.Is(err, e) {
				t.Fatalf("GetLinear with %v injected = %v", e, err)
			}
			for _, key := range []string{"a", "b", "c"} {
				if err := st.SetLinear(key, []byte("stale")); !errors.Is(err, e) {
					t.Errorf("%v: SetLinear(%s) of an aborted section = %v; want %v", e, key, err, e)
				}
			}
			if err := st.DeleteLinear("a"); !errors.Is(err, e) {
				t.Errorf("%v: DeleteLinear(a) of an aborted section = %v; want %v", e, err, e)
			}
			if err := st.SetLinear("d", []byte("blind")); err != nil {
				t.Errorf("%v: SetLinear(d), never read, = %v; want a blind write", e, err)
			}
			if _, _, err := st.GetLinear("a"); err != nil {
				t.Fatal(err)
			}
			if err := st.SetLinear("a", []byte("fresh")); err != nil {
				t.Errorf("%v: SetLinear(a) after a new GetLinear = %v", e, err)
			}
			return nil
		})
		state(t, func(st *xfaas.State) error {
			if err := st.SetLinear("b", []byte("next request")); err != nil {
				t.Errorf("%v: SetLinear(b) in the next request = %v; want a blind write", e, err)
			}
			return nil
		})
		for key, want := range map[string]string{"a": "fresh", "b": "next request", "d": "blind"} {
			if got, _ := xfaastest.Get(key); string(got) != want {
				t.Errorf("%v: %s = %q; want %q", e, key, got, want)
			}
		}
		if _, ok := xfaastest.Get("c"); ok {
			t.Errorf("%v: the aborted key c was written", e)
		}
	}
}

// On a secondary whose connection to the primary broke after the request
// made a mode 1 call, the sections are gone: every later mode 1 call of the
// request fails as unavailable, while mode 0 calls go on. The next request
// starts afresh.
func TestLostConnectionFailsLaterLinearCalls(t *testing.T) {
	xfaastest.Reset()
	state(t, func(st *xfaas.State) error {
		if _, _, err := st.GetLinear("a"); err != nil {
			t.Fatal(err)
		}
		xfaastest.FailNext("read_state", xfaas.ErrUnavailable)
		if _, _, err := st.Get("b"); !errors.Is(err, xfaas.ErrUnavailable) {
			t.Fatalf("Get with ErrUnavailable injected = %v", err)
		}
		if err := st.Set("b", []byte("mode 0")); err != nil {
			t.Errorf("Set after the loss = %v; want nil", err)
		}
		linear := map[string]func() error{
			"GetLinear(c)":    func() error { _, _, err := st.GetLinear("c"); return err },
			"SetLinear(a)":    func() error { return st.SetLinear("a", []byte("lost")) },
			"DeleteLinear(a)": func() error { return st.DeleteLinear("a") },
			"SetLinear(e)":    func() error { return st.SetLinear("e", []byte("blind")) },
			"Update(d)": func() error {
				return st.Update("d", func([]byte, bool) ([]byte, error) {
					t.Error("Update ran its function after the loss")
					return nil, nil
				})
			},
		}
		for name, call := range linear {
			if err := call(); !errors.Is(err, xfaas.ErrUnavailable) {
				t.Errorf("%s after the loss = %v; want ErrUnavailable", name, err)
			}
		}
		return nil
	})
	if val, _ := xfaastest.Get("b"); string(val) != "mode 0" {
		t.Errorf("b = %q; want the mode 0 write", val)
	}
	for _, key := range []string{"a", "e"} {
		if _, ok := xfaastest.Get(key); ok {
			t.Errorf("%s was written after the loss", key)
		}
	}
	state(t, func(st *xfaas.State) error {
		return st.Update("a", func([]byte, bool) ([]byte, error) { return []byte("next"), nil })
	})
}

// A failure to reach the primary in a request that made no mode 1 call
// loses no section: the request's later mode 1 calls reconnect.
func TestUnavailableBeforeLinearCallsIsOneCall(t *testing.T) {
	xfaastest.Reset()
	state(t, func(st *xfaas.State) error {
		xfaastest.FailNext("write_state", xfaas.ErrUnavailable)
		if err := st.Set("a", []byte("x")); !errors.Is(err, xfaas.ErrUnavailable) {
			t.Fatalf("Set with ErrUnavailable injected = %v", err)
		}
		return st.Update("a", func([]byte, bool) ([]byte, error) { return []byte("y"), nil })
	})
	if val, _ := xfaastest.Get("a"); string(val) != "y" {
		t.Errorf("a = %q; want y", val)
	}
}

// Keys and values are refused as the platform refuses them: an empty key
// is invalid, one past 1 KiB too large, in every call but a mode 0 read,
// which finds no such key; a value past 4 MiB is too large.
func TestKeyAndValueLimits(t *testing.T) {
	xfaastest.Reset()
	long := strings.Repeat("k", 1<<10+1)
	big := make([]byte, 4<<20+1)
	state(t, func(st *xfaas.State) error {
		for _, key := range []string{"", long} {
			if val, ok, err := st.Get(key); val != nil || ok || err != nil {
				t.Errorf("Get(%.8q...) = %q, %v, %v; want absent", key, val, ok, err)
			}
		}
		for _, tc := range []struct {
			name string
			err  error
			want xfaas.Errno
		}{
			{"GetLinear(empty)", second(st.GetLinear("")), xfaas.ErrInvalid},
			{"GetLinear(long)", second(st.GetLinear(long)), xfaas.ErrKeyTooLarge},
			{"Set(empty)", st.Set("", nil), xfaas.ErrInvalid},
			{"Set(long)", st.Set(long, nil), xfaas.ErrKeyTooLarge},
			{"Set(big value)", st.Set("k", big), xfaas.ErrValueTooLarge},
			{"SetLinear(empty)", st.SetLinear("", nil), xfaas.ErrInvalid},
			{"SetLinear(long)", st.SetLinear(long, nil), xfaas.ErrKeyTooLarge},
			{"SetLinear(big value)", st.SetLinear("k", big), xfaas.ErrValueTooLarge},
			{"Delete(empty)", st.Delete(""), xfaas.ErrInvalid},
			{"Delete(long)", st.Delete(long), xfaas.ErrKeyTooLarge},
			{"DeleteLinear(empty)", st.DeleteLinear(""), xfaas.ErrInvalid},
			{"DeleteLinear(long)", st.DeleteLinear(long), xfaas.ErrKeyTooLarge},
		} {
			if !errors.Is(tc.err, tc.want) {
				t.Errorf("%s = %v; want %v", tc.name, tc.err, tc.want)
			}
		}
		if err := st.Set(long[:1<<10], big[:4<<20]); err != nil {
			t.Errorf("Set of the largest key and value = %v", err)
		}
		return nil
	})
	if _, ok := xfaastest.Get("k"); ok {
		t.Error("a refused value was written")
	}
}

// second returns the error of a call that returns three values.
func second(_ []byte, _ bool, err error) error { return err }

// A refused key or value leaves the section open: the platform checks them
// before it reaches the section, so a later commit still validates the
// read.
func TestRefusedCommitKeepsTheSection(t *testing.T) {
	xfaastest.Reset()
	state(t, func(st *xfaas.State) error {
		if _, _, err := st.GetLinear("k"); err != nil {
			t.Fatal(err)
		}
		if err := st.SetLinear("k", make([]byte, 4<<20+1)); !errors.Is(err, xfaas.ErrValueTooLarge) {
			t.Fatalf("SetLinear(big value) = %v", err)
		}
		if sectionClosed(t, st, "k") {
			t.Error("a refused value closed the section")
		}
		return nil
	})
}

// The test helpers refuse what the platform refuses, saying why.
func TestSetPanicsOnWhatThePlatformRefuses(t *testing.T) {
	xfaastest.Reset()
	for _, tc := range []struct {
		name, key string
		val       []byte
		want      string
	}{
		{"empty key", "", nil, "an empty key"},
		{"long key", strings.Repeat("k", 1<<10+1), nil, "a key past 1 KiB"},
		{"big value", "k", make([]byte, 4<<20+1), "a value past 4 MiB"},
	} {
		for name, set := range map[string]func(){
			"Set":       func() { xfaastest.Set(tc.key, tc.val) },
			"SetRemote": func() { xfaastest.SetRemote("orders", otherSession, tc.key, tc.val) },
		} {
			func() {
				defer func() {
					if msg, _ := recover().(string); !strings.Contains(msg, tc.want) {
						t.Errorf("%s of %s: panic %q; want one saying %q", name, tc.name, msg, tc.want)
					}
				}()
				set()
			}()
		}
	}
	if _, ok := xfaastest.Get("k"); ok {
		t.Error("a refused value was set")
	}
}

func TestStateErrors(t *testing.T) {
	xfaastest.Reset()
	for _, tc := range []struct {
		call string
		err  xfaas.Errno
		op   func(st *xfaas.State) error
		want string
	}{
		{"read_state", xfaas.ErrUnavailable, func(st *xfaas.State) error { _, _, err := st.Get("k"); return err },
			`xfaas: read_state("k", 0): state unavailable`},
		{"write_state", xfaas.ErrValueTooLarge, func(st *xfaas.State) error { return st.Set("k", nil) },
			`xfaas: write_state("k", 0): value too large`},
		{"write_state", xfaas.ErrStateFull, func(st *xfaas.State) error { return st.Set("k", nil) },
			`xfaas: write_state("k", 0): state full`},
		{"delete_state", xfaas.ErrKeyTooLarge, func(st *xfaas.State) error { return st.Delete("k") },
			`xfaas: delete_state("k", 0): key too large`},
	} {
		xfaastest.FailNext(tc.call, tc.err)
		state(t, func(st *xfaas.State) error {
			if err := tc.op(st); !errors.Is(err, tc.err) || err.Error() != tc.want {
				t.Errorf("%s failing with %d: error %v; want %q", tc.call, tc.err, err, tc.want)
			}
			return nil
		})
	}
}

func TestErrnoMessages(t *testing.T) {
	for e, want := range map[xfaas.Errno]string{
		xfaas.ErrConflict: "conflict", xfaas.ErrDeadlock: "deadlock", xfaas.ErrLockTimeout: "lock timeout",
		xfaas.ErrInvalid: "invalid argument", -1: "absent", -42: "status -42",
	} {
		if got := e.Error(); got != want {
			t.Errorf("Errno(%d).Error() = %q; want %q", e, got, want)
		}
	}
}
