package wire

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// waitingHandler answers mEcho inline after its context ends (or after 10
// s), and reports on cancelled how long that took. When take is set it
// takes the connection over and waits on the stream's context instead, as
// a worker slot does.
type waitingHandler struct {
	take      bool
	started   chan struct{}
	cancelled chan time.Duration
}

func (h *waitingHandler) wait(ctx context.Context) {
	h.started <- struct{}{}
	start := time.Now()
	select {
	case <-ctx.Done():
		h.cancelled <- time.Since(start)
	case <-time.After(10 * time.Second):
		h.cancelled <- -1
	}
}

func (h *waitingHandler) ServeWire(ctx context.Context, c *Conn, method uint8, p []byte) ([]byte, error) {
	h.wait(ctx)
	return nil, nil
}

func (h *waitingHandler) TakeWire(c *Conn, req Request) bool {
	if !h.take {
		return false
	}
	s, err := c.Take()
	if err != nil {
		return false
	}
	go func() {
		defer s.Close()
		h.wait(s.Context())
		_ = s.Reply(req, nil, nil)
	}()
	return true
}

// A caller that gives up on an inline call hangs up, and the handler's
// context ends at once, on the wire server's path and on a taken
// connection, though nobody reads those sockets while the request runs.
func TestGivingUpCancelsTheRequest(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		for _, take := range []bool{false, true} {
			name := network + "/served"
			if take {
				name = network + "/taken"
			}
			t.Run(name, func(t *testing.T) {
				h := &waitingHandler{take: take, started: make(chan struct{}, 1), cancelled: make(chan time.Duration, 1)}
				addr := serve(t, network, h, nil)
				sc, err := DialSync(context.Background(), addr)
				if err != nil {
					t.Fatal(err)
				}
				defer sc.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				go func() {
					<-h.started
					cancel()
				}()
				start := time.Now()
				if _, err := sc.Call(ctx, mEcho, nil); !errors.Is(err, context.Canceled) {
					t.Fatalf("call given up: %v; want context.Canceled", err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("the given-up call returned after %v", d)
				}
				if d := <-h.cancelled; d < 0 {
					t.Fatal("the handler's context did not end within 10s of the hang-up")
				}
				if _, err := sc.Call(context.Background(), mEcho, nil); !errors.Is(err, ErrClosed) {
					t.Errorf("call after giving up: %v; want ErrClosed", err)
				}
			})
		}
	}
}

// A call that completes leaves its connection usable, and its watch in
// place: many calls on one connection keep working.
func TestWatchedConnectionStaysUsable(t *testing.T) {
	addr, _, _ := testServer(t, "unix")
	sc, err := DialSync(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for i := range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if out, err := sc.Call(ctx, mEcho, []byte("x")); err != nil || string(out) != "x" {
			t.Fatalf("call %d = %q, %v", i, out, err)
		}
		cancel() // after the call: the connection must not be closed for it
	}
}

// takeRefused records the error of taking over a connection that is not a
// socket, and lets ServeConn serve the request.
type takeRefused struct{ err chan error }

func (h takeRefused) ServeWire(ctx context.Context, c *Conn, method uint8, p []byte) ([]byte, error) {
	return p, nil
}

func (h takeRefused) TakeWire(c *Conn, req Request) bool {
	_, err := c.Take()
	h.err <- err
	return err == nil
}

// A connection that is not a socket is served without a hang-up watch, and
// refuses to be taken over with the reason.
func TestUnwatchedConnection(t *testing.T) {
	srv, cli := net.Pipe()
	defer cli.Close()
	h := takeRefused{err: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeConn(ctx, srv, h)
	if err := writeFrame(cli, header{kind: kindRequest, method: mEcho, status: flagInline, id: 1}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	resp, body, err := readFrame(bufio.NewReader(cli))
	if err != nil || resp.id != 1 || string(body) != "x" {
		t.Fatalf("reply = %+v %q, %v", resp, body, err)
	}
	if err := <-h.err; err == nil || !strings.Contains(err.Error(), "cannot be taken over") {
		t.Fatalf("Take on a pipe: %v", err)
	}
}
