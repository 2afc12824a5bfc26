//go:build !wasip1

package main

import (
	"testing"

	xfaas "github.com/xfaas/xfaas/sdk/go"
	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

func TestCounter(t *testing.T) {
	xfaastest.Reset()
	for _, s := range []struct {
		in, out string
		fails   bool
	}{
		{in: "get", out: "0"},
		{in: "", out: "1"},
		{in: "incr\n", out: "2"},
		{in: "incr 40", out: "42"},
		{in: "incr -50", out: "-8"},
		{in: " get ", out: "-8"},
		{in: "incr x", fails: true},
		{in: "decr", fails: true},
	} {
		out, err := xfaastest.Invoke(s.in)
		if out != s.out || (err != nil) != s.fails {
			t.Errorf("%q: %q, %v; want %q (fails: %v)", s.in, out, err, s.out, s.fails)
		}
	}
}

func TestCounterRetriesAConflict(t *testing.T) {
	xfaastest.Reset()
	xfaastest.Set(key, []byte("10"))
	xfaastest.FailNext("write_state", xfaas.ErrConflict)
	if out, err := xfaastest.Invoke("incr"); out != "11" || err != nil {
		t.Errorf("incr after a conflict = %q, %v; want 11", out, err)
	}
}

func TestCounterKeepsABadStoredValue(t *testing.T) {
	xfaastest.Reset()
	xfaastest.Set(key, []byte("not a number"))
	if _, err := xfaastest.Invoke("incr"); err == nil || err.Error() != errStored.Error() {
		t.Errorf("incr of a bad value = %v; want %v", err, errStored)
	}
	if val, _ := xfaastest.Get(key); string(val) != "not a number" {
		t.Errorf("the bad value became %q", val)
	}
}
