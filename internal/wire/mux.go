package wire

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// prefaceTimeout bounds how long a new connection may take to send its
// first four bytes before it is dropped.
const prefaceTimeout = 10 * time.Second

// Serve serves the wire protocol with h and HTTP with web on the same
// listener, telling connections apart by their first four bytes. It returns
// when ctx is done (nil) or ln fails (the error), after every connection it
// accepted has ended. Running out of file descriptors or memory is not a
// failure: Serve waits and accepts again, as net/http does.
func Serve(parent context.Context, ln net.Listener, h Handler, web http.Handler) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	hl := &chanListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{Handler: web, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(hl) })
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var err error
	var backoff time.Duration
	for {
		var nc net.Conn
		if nc, err = ln.Accept(); err != nil {
			if ctx.Err() == nil && exhausted(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
				continue
			}
			break
		}
		backoff = 0
		wg.Go(func() { route(ctx, nc, h, hl) })
	}
	cancel()
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(shutdown)
	done()
	hl.Close()
	wg.Wait()
	if parent.Err() != nil {
		return nil
	}
	return err
}

// exhausted reports whether an accept failed for want of a resource that
// ending connections give back.
func exhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// route reads a connection's first four bytes and serves it as wire or HTTP.
func route(ctx context.Context, nc net.Conn, h Handler, hl *chanListener) {
	var first [len(Preface)]byte
	_ = nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	if _, err := io.ReadFull(nc, first[:]); err != nil {
		nc.Close()
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	if string(first[:]) == Preface {
		ServeConn(ctx, nc, h)
		return
	}
	hl.push(&prefixConn{Conn: nc, prefix: first[:]})
}

// prefixConn replays bytes already read from a connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// chanListener is a net.Listener fed by route.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// removeStaleSocket removes a Unix socket file nobody listens on.
func removeStaleSocket(path string) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	c, err := net.DialTimeout("unix", path, 100*time.Millisecond)
	if err == nil {
		c.Close()
		return
	}
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	_ = os.Remove(path)
}
