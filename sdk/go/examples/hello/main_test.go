//go:build !wasip1

package main

import (
	"testing"

	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

func TestHello(t *testing.T) {
	if out, err := xfaastest.Invoke("anything"); out != "hello" || err != nil {
		t.Errorf("hello = %q, %v", out, err)
	}
}
