package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/apierror"
)

const (
	mEcho  = 1
	mFail  = 2
	mBlock = 3
	mNote  = 4
	mBig   = 5
)

// testServer serves a small handler on a "unix" or "tcp" address and
// returns the address, a counter of one-way notes and one of OnClose runs.
func testServer(t *testing.T, network string) (string, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	var notes, closed atomic.Int64
	h := HandlerFunc(func(ctx context.Context, c *Conn, method uint8, p []byte) ([]byte, error) {
		c.OnClose(func() { closed.Add(1) })
		switch method {
		case mEcho:
			return p, nil
		case mFail:
			return nil, &apierror.Error{Kind: apierror.Overloaded, Message: "busy", RetryAfter: 3}
		case mBlock:
			<-ctx.Done()
			return nil, ctx.Err()
		case mNote:
			notes.Add(1)
			return nil, nil
		case mBig:
			return make([]byte, MaxFrame+1), nil
		}
		return nil, fmt.Errorf("unknown method %d", method)
	})
	web := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "web ok") })
	return serve(t, network, h, web), &notes, &closed
}

func serve(tb testing.TB, network string, h Handler, web http.Handler) string {
	tb.Helper()
	addr := "tcp://127.0.0.1:0"
	if network == "unix" {
		addr = "unix://" + filepath.Join(tb.TempDir(), "s.sock")
	}
	ln, err := Listen(addr)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Serve(ctx, ln, h, web) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	return AddrOf(ln.Addr())
}

func TestCallsAndErrors(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr, notes, _ := testServer(t, network)
			c, err := NewClient(context.Background(), addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			var wg sync.WaitGroup
			for i := range 64 {
				wg.Go(func() {
					want := bytes.Repeat([]byte{byte(i)}, i*100)
					got, err := c.Call(ctx, mEcho, want)
					if err != nil || !bytes.Equal(got, want) {
						t.Errorf("echo %d: %d bytes, %v", i, len(got), err)
					}
				})
			}
			wg.Wait()
			_, err = c.Call(ctx, mFail, nil)
			var ae *apierror.Error
			if !errors.As(err, &ae) || ae.Kind != apierror.Overloaded || ae.Message != "busy" || ae.RetryAfter != 3 {
				t.Fatalf("error response: %#v", err)
			}
			_, err = c.Call(ctx, mBig, nil)
			if apierror.KindOf(err) != apierror.TooLarge {
				t.Fatalf("oversized response: %v", err)
			}
			if _, err := c.Call(ctx, mEcho, make([]byte, MaxFrame+1)); apierror.KindOf(err) != apierror.TooLarge {
				t.Fatalf("oversized request: %v", err)
			}
			for range 10 {
				if err := c.Notify(mNote, nil); err != nil {
					t.Fatal(err)
				}
			}
			// The connection still works after all of that.
			if got, err := c.Call(ctx, mEcho, []byte("x")); err != nil || string(got) != "x" {
				t.Fatalf("after errors: %q %v", got, err)
			}
			waitUntil(t, func() bool { return notes.Load() == 10 })
		})
	}
}

func TestCancelAndClose(t *testing.T) {
	addr, _, closed := testServer(t, "unix")
	c, err := NewClient(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, mBlock, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled call: %v", err)
	}
	blocked := make(chan error)
	go func() { _, err := c.Call(context.Background(), mBlock, nil); blocked <- err }()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	if err := <-blocked; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending call on close: %v", err)
	}
	if _, err := c.Call(context.Background(), mEcho, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
	// The server ends the connection's handlers, then runs OnClose.
	waitUntil(t, func() bool { return closed.Load() >= 2 })
}

func TestHTTPSharesThePort(t *testing.T) {
	addr, _, _ := testServer(t, "tcp")
	_, hostport := SplitAddr(addr)
	resp, err := http.Get("http://" + hostport + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "web ok" {
		t.Fatalf("HTTP body %q", body)
	}
	c, err := NewClient(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.Call(context.Background(), mEcho, []byte("wire ok")); err != nil || string(got) != "wire ok" {
		t.Fatalf("wire after HTTP: %q %v", got, err)
	}
}

func TestGarbageConnectionIsDropped(t *testing.T) {
	addr, _, _ := testServer(t, "tcp")
	_, hostport := SplitAddr(addr)
	nc, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A valid preface then a frame of an impossible kind: the server hangs up.
	nc.Write([]byte(Preface))
	var b [headerSize]byte
	header{kind: 9}.put(&b)
	nc.Write(b[:])
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil {
		t.Fatal("server answered a malformed frame")
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := Listen("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: the file stays, nobody listens.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = Listen("unix://" + path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	ln.Close()
}

func TestCodecRoundTrip(t *testing.T) {
	p := NewEncoder(0).Uint(1 << 40).Int(-5).Bytes([]byte("key")).String("val").Bool(true).Payload()
	d := NewDecoder(p)
	if d.Uint() != 1<<40 || d.Int() != -5 || string(d.Bytes()) != "key" || d.String() != "val" || !d.Bool() || d.Err() != nil {
		t.Fatalf("round trip failed: %v", d.Err())
	}
	d = NewDecoder(append(p, 0))
	_, _, _, _, _ = d.Uint(), d.Int(), d.Bytes(), d.String(), d.Bool()
	if !errors.Is(d.Err(), ErrMalformed) {
		t.Fatal("trailing byte not reported")
	}
	if d := NewDecoder([]byte{5, 'a'}); d.Bytes() != nil || !errors.Is(d.Err(), ErrMalformed) {
		t.Fatal("short byte string not reported")
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add(NewEncoder(0).Uint(7).Bytes([]byte("k")).Int(-1).Payload())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		d := NewDecoder(p)
		_ = d.Uint()
		b := d.Bytes()
		_ = d.Int32()
		_ = d.Bool()
		if d.Err() == nil && len(b) > len(p) {
			t.Fatal("decoded more bytes than given")
		}
		_ = decodeError(p)
	})
}

func FuzzReadFrame(f *testing.F) {
	var b [headerSize]byte
	header{kind: kindRequest, method: 1, id: 9, size: 3}.put(&b)
	f.Add(append(b[:], "abc"...))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, p []byte) {
		h, payload, err := readFrame(bufio.NewReader(bytes.NewReader(p)))
		if err == nil && (int(h.size) != len(payload) || len(payload) > len(p)) {
			t.Fatalf("frame of size %d with %d payload bytes from %d input bytes", h.size, len(payload), len(p))
		}
	})
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkRoundTrip is the floor under a secondary's state read: one small
// call and its response.
func BenchmarkRoundTrip(b *testing.B) {
	for _, network := range []string{"unix", "tcp"} {
		b.Run(network, func(b *testing.B) {
			echo := HandlerFunc(func(ctx context.Context, c *Conn, method uint8, p []byte) ([]byte, error) { return p, nil })
			addr := serve(b, network, echo, http.NotFoundHandler())
			c, err := NewClient(context.Background(), addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			payload := make([]byte, 16)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Call(ctx, mEcho, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSyncClient(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr, _, closed := testServer(t, network)
			c, err := DialSync(context.Background(), addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for i := range 100 {
				want := bytes.Repeat([]byte{byte(i)}, i)
				if got, err := c.Call(ctx, mEcho, want); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("echo %d: %q %v", i, got, err)
				}
			}
			if _, err := c.Call(ctx, mFail, nil); apierror.KindOf(err) != apierror.Overloaded {
				t.Fatalf("error reply: %v", err)
			}
			if _, err := c.Call(ctx, mEcho, make([]byte, MaxFrame+1)); apierror.KindOf(err) != apierror.TooLarge {
				t.Fatalf("oversized request: %v", err)
			}
			if got, err := c.Call(ctx, mEcho, []byte("still up")); err != nil || string(got) != "still up" {
				t.Fatalf("after a refused payload: %q %v", got, err)
			}
			short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancelShort()
			if _, err := c.CallMayBlock(short, mBlock, nil); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("blocked inline call: %v", err)
			}
			if _, err := c.Call(ctx, mEcho, nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("call after a timed-out exchange: %v", err)
			}
			// Closing the connection ended the blocked handler, then OnClose ran.
			waitUntil(t, func() bool { return closed.Load() > 0 })
		})
	}
}

// A pooled client passes from caller to caller: a call without a deadline
// must not inherit the last caller's.
func TestSyncClientDropsAnEarlierDeadline(t *testing.T) {
	addr, _, _ := testServer(t, "unix")
	c, err := DialSync(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := c.Call(short, mEcho, []byte("a")); err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(100 * time.Millisecond) // past the first call's deadline
	if got, err := c.Call(context.Background(), mEcho, []byte("b")); err != nil || string(got) != "b" {
		t.Fatalf("a call without a deadline after one with: %q %v", got, err)
	}
}

func BenchmarkSyncRoundTrip(b *testing.B) {
	for _, network := range []string{"unix", "tcp"} {
		b.Run(network, func(b *testing.B) {
			echo := HandlerFunc(func(ctx context.Context, c *Conn, method uint8, p []byte) ([]byte, error) { return p, nil })
			c, err := DialSync(context.Background(), serve(b, network, echo, http.NotFoundHandler()))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			payload := make([]byte, 16)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Call(ctx, mEcho, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// failingListener fails its first n accepts with err, then accepts.
type failingListener struct {
	net.Listener
	n   atomic.Int32
	err error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

func TestServeRidesOutExhaustionAndReportsFailure(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, c *Conn, method uint8, p []byte) ([]byte, error) { return p, nil })
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}

	t.Run("out of descriptors", func(t *testing.T) {
		ln, err := Listen("tcp://127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fl := &failingListener{Listener: ln, err: emfile}
		fl.n.Store(3)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Serve(ctx, fl, h, http.NotFoundHandler()) }()
		c, err := NewClient(context.Background(), AddrOf(ln.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		callCtx, callCancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer callCancel()
		if got, err := c.Call(callCtx, mEcho, []byte("after EMFILE")); err != nil || string(got) != "after EMFILE" {
			t.Fatalf("call after three EMFILE accepts: %q %v", got, err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Serve after its context ended: %v, want nil", err)
		}
	})

	t.Run("listener fails", func(t *testing.T) {
		ln, err := Listen("tcp://127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		broken := errors.New("listener is broken")
		fl := &failingListener{Listener: ln, err: broken}
		fl.n.Store(1)
		done := make(chan error, 1)
		go func() { done <- Serve(context.Background(), fl, h, http.NotFoundHandler()) }()
		select {
		case err := <-done:
			if !errors.Is(err, broken) {
				t.Fatalf("Serve returned %v, want the listener's error", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after its listener failed")
		}
	})
}
