//go:build !wasip1

package main

import (
	"encoding/binary"
	"testing"

	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

func TestRMW(t *testing.T) {
	xfaastest.Reset()
	for _, s := range []struct {
		in, out string
	}{
		{in: "", out: "1"},
		{in: "", out: "2"},
		{in: "init 100", out: "ok"},
		{in: "", out: "1"},
		{in: "go", out: "2"},
	} {
		if out, err := xfaastest.Invoke(s.in); out != s.out || err != nil {
			t.Errorf("%q: %q, %v; want %q", s.in, out, err, s.out)
		}
	}
	val, _ := xfaastest.Get(key)
	if len(val) != 100 || binary.LittleEndian.Uint64(val) != 2 {
		t.Errorf("value: %d bytes, counter %d; want 100 bytes, counter 2", len(val), binary.LittleEndian.Uint64(val))
	}
	xfaastest.Set(key, []byte{0xff, 1})
	if out, err := xfaastest.Invoke(""); out != "512" || err != nil {
		t.Errorf("bump of a 2-byte value = %q, %v; want 512", out, err)
	}
}
