package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/xfaas/xfaas/internal/wire"
)

// Invoke tells why it got no invocation connection: the caller's context
// ending and a failed dial are not wire.ErrClosed, which the control plane
// reads as the container gone (and drops the session with it).
func TestInvokeSaysWhyItHasNoConnection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, conn); conn.Close() }()
		}
	}()
	c, err := Dial(context.Background(), "unix://"+path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Invoke(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Invoke after the caller gave up: %v; want context.Canceled", err)
	}
	ln.Close() // no new connections; the management connection stays
	if _, err := c.Invoke(context.Background(), nil); err == nil || errors.Is(err, wire.ErrClosed) {
		t.Errorf("Invoke with no listener: %v; want the dial's error", err)
	}
	c.Close()
	if _, err := c.Invoke(context.Background(), nil); !errors.Is(err, wire.ErrClosed) {
		t.Errorf("Invoke on a closed client: %v; want wire.ErrClosed", err)
	}
}
