//go:build !wasip1

package main

import (
	"strings"
	"testing"

	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

func TestRO(t *testing.T) {
	xfaastest.Reset()
	for _, s := range []struct {
		in, out string
		fails   bool
	}{
		{in: "read", out: "0"},
		{in: "init 5", out: "ok"},
		{in: "read", out: "5"},
		{in: "value", out: "xxxxx"},
		{in: "init 1048576", out: "ok"},
		{in: "", out: "1048576"},
		{in: "init -1", fails: true},
		{in: "init 2147483648", fails: true},
	} {
		out, err := xfaastest.Invoke(s.in)
		if out != s.out || (err != nil) != s.fails {
			t.Errorf("%q: %q, %v; want %q (fails: %v)", s.in, out, err, s.out, s.fails)
		}
	}
	if out, _ := xfaastest.Invoke("value"); out != strings.Repeat("x", 1<<20) {
		t.Errorf("value of 1 MiB: %d bytes", len(out))
	}
}
