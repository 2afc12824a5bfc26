package wire

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// takingHandler takes over every connection whose first request is mEcho
// and serves it the way a proxy's worker slot does: poll(2), Fill, Next,
// Reply, from a goroutine of its own. Other requests stay with ServeConn.
type takingHandler struct {
	taken, closed atomic.Int64
	served        atomic.Int64
}

func (h *takingHandler) ServeWire(ctx context.Context, c *Conn, method uint8, p []byte) ([]byte, error) {
	return append([]byte("wire:"), p...), nil
}

func (h *takingHandler) TakeWire(c *Conn, req Request) bool {
	if req.Method() != mEcho {
		return false
	}
	s, err := c.Take()
	if err != nil {
		return false
	}
	h.taken.Add(1)
	c.OnClose(func() { h.closed.Add(1) })
	go h.serveStream(s, req)
	return true
}

func (h *takingHandler) serveStream(s *Stream, first Request) {
	defer s.Close()
	if s.Reply(first, append([]byte("taken:"), first.Payload...), nil) != nil {
		return
	}
	for {
		req, ok, err := s.Next()
		if err != nil {
			return
		}
		if !ok {
			switch err := s.Fill(); {
			case errors.Is(err, ErrWouldBlock):
				fds := []unix.PollFd{{Fd: int32(s.FD()), Events: unix.POLLIN}}
				_, _ = unix.Poll(fds, -1)
				continue
			case err != nil:
				return
			}
			continue
		}
		h.served.Add(1)
		var rerr error
		if req.Method() == mFail {
			rerr = errors.New("refused on the stream")
		}
		if s.Reply(req, append([]byte("taken:"), req.Payload...), rerr) != nil {
			return
		}
	}
}

func TestTakenConnections(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			h := &takingHandler{}
			addr := serve(t, network, h, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			// A connection whose first call is not mEcho stays with ServeConn.
			plain, err := DialSync(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := plain.Call(ctx, mNote, []byte("x")); err != nil || string(out) != "wire:x" {
				t.Fatalf("plain call = %q, %v", out, err)
			}

			sc, err := DialSync(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range []string{"a", "bb", string(make([]byte, 200<<10))} {
				out, err := sc.Call(ctx, mEcho, []byte(p))
				if err != nil || string(out) != "taken:"+p {
					t.Fatalf("call %d: %d bytes, %v", i, len(out), err)
				}
			}
			if _, err := sc.Call(ctx, mFail, nil); err == nil || err.Error() != "refused on the stream" {
				t.Fatalf("error answer = %v", err)
			}
			if h.taken.Load() != 1 || h.served.Load() != 3 {
				t.Fatalf("taken %d, served %d; want 1, 3", h.taken.Load(), h.served.Load())
			}
			// A frame that is not an inline request ends the stream, and
			// with it the connection and its OnClose functions.
			sc2, err := DialSync(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sc2.Call(ctx, mEcho, nil); err != nil {
				t.Fatal(err)
			}
			sc2.nc.Write([]byte{0, 0, 0, 0, kindOneWay, mEcho, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9})
			if _, err := sc2.r.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("after a one-way frame on a taken connection: read %v; want EOF", err)
			}
			sc.Close()
			plain.Close()
			deadline := time.Now().Add(5 * time.Second)
			for h.closed.Load() != 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if h.closed.Load() != 2 {
				t.Errorf("OnClose ran for %d taken connections; want 2", h.closed.Load())
			}
		})
	}
}
