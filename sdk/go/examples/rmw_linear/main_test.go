//go:build !wasip1

package main

import (
	"encoding/binary"
	"testing"

	xfaas "github.com/xfaas/xfaas/sdk/go"
	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

func TestRMWLinear(t *testing.T) {
	xfaastest.Reset()
	for _, s := range []struct {
		in, out string
	}{
		{in: "", out: "1"},
		{in: "init 4096", out: "ok"},
		{in: "", out: "1"},
		{in: "", out: "2"},
	} {
		if out, err := xfaastest.Invoke(s.in); out != s.out || err != nil {
			t.Errorf("%q: %q, %v; want %q", s.in, out, err, s.out)
		}
	}
	val, _ := xfaastest.Get(key)
	if len(val) != 4096 || binary.LittleEndian.Uint64(val) != 2 {
		t.Errorf("value: %d bytes, counter %d; want 4096 bytes, counter 2", len(val), binary.LittleEndian.Uint64(val))
	}
}

func TestRMWLinearReportsDeadlocks(t *testing.T) {
	xfaastest.Reset()
	xfaastest.FailNext("read_state", xfaas.ErrDeadlock)
	if _, err := xfaastest.Invoke(""); err == nil {
		t.Error("a deadlock did not fail the request")
	}
	if _, ok := xfaastest.Get(key); ok {
		t.Error("the failed request wrote the key")
	}
}
