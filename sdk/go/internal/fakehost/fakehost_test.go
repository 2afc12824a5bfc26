//go:build !wasip1

package fakehost

import (
	"strings"
	"testing"
)

// The session's keys and values count against its total size as the
// platform's store counts them, and a write past the limit is refused with
// state full (here with a limit of 10 bytes rather than 1 GiB).
func TestStateFull(t *testing.T) {
	h := New()
	h.maxBytes = 10
	for i, step := range []struct {
		key  string
		val  string // "" with del
		del  bool
		mode int32
		want int32
	}{
		{key: "ab", val: "12345678", want: statusOK},          // 10 bytes
		{key: "c", val: "1", want: statusStateFull},           // 12
		{key: "ab", val: "1234567", want: statusOK},           // 9: shrinking is fine
		{key: "ab", val: "123456789", want: statusStateFull},  // 11
		{key: "ab", val: "12345678", mode: 1, want: statusOK}, // 10, blind
		{key: "ab", del: true, want: statusOK},                // 0
		{key: "c", val: "123456789", mode: 1, want: statusOK}, // 10
		{key: "c", del: true, mode: 1, want: statusOK},        // 0
		{key: "0123456789", val: "", want: statusOK},          // 10: a key counts too
		{key: "x", val: "", want: statusStateFull},            // 11
	} {
		var got int32
		if step.del {
			got = h.DeleteState(step.key, step.mode)
		} else {
			got = h.WriteState(step.key, []byte(step.val), step.mode)
		}
		if got != step.want {
			t.Fatalf("step %d: write %q=%q (delete %v, mode %d) = %d; want %d", i, step.key, step.val, step.del, step.mode, got, step.want)
		}
	}
}

// A mode 1 commit refused with state full closes its section, as the
// platform's does: it got past the section before the store refused it.
func TestStateFullClosesTheSection(t *testing.T) {
	h := New()
	h.maxBytes = 10
	if st := h.ReadState("k", nil, 1); st != statusAbsent {
		t.Fatalf("read_state = %d", st)
	}
	if st := h.WriteState("k", []byte(strings.Repeat("v", 10)), 1); st != statusStateFull {
		t.Fatalf("write_state past the limit = %d; want %d", st, statusStateFull)
	}
	h.Set("k", []byte("moved"))
	if st := h.WriteState("k", []byte("v"), 1); st != statusOK {
		t.Errorf("write_state after the refused commit = %d; want a blind write", st)
	}
	defer func() {
		if msg, _ := recover().(string); !strings.Contains(msg, "a session state past 1 GiB") {
			t.Errorf("Set past the limit: panic %q", msg)
		}
	}()
	h.Set("other", []byte("123456789"))
}
