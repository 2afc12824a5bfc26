//go:build !wasip1

package main

import (
	"testing"

	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

func TestKV(t *testing.T) {
	xfaastest.Reset()
	for _, s := range []struct {
		in, out string
		fails   bool
	}{
		{in: "get a", out: "", fails: true},
		{in: "set a hello world", out: "ok"},
		{in: "get a", out: "hello world"},
		{in: "set b", out: "ok"},
		{in: "get b", out: ""},
		{in: "del a", out: "ok"},
		{in: "del a", out: "ok"},
		{in: "get a", fails: true},
		{in: "get a b", fails: true},
		{in: "put a b", fails: true},
		{in: "set", fails: true},
	} {
		out, err := xfaastest.Invoke(s.in)
		if out != s.out || (err != nil) != s.fails {
			t.Errorf("%q: %q, %v; want %q (fails: %v)", s.in, out, err, s.out, s.fails)
		}
	}
}
