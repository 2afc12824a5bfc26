package wire

import (
	"bufio"
	"context"
	"net"
	"sync"

	"github.com/xfaas/xfaas/internal/apierror"
)

// Handler serves the requests of a connection. ServeWire runs in its own
// goroutine per request, except requests marked inline (SyncClient.Call),
// which run on the connection's reader goroutine, in order. ctx is
// cancelled when the connection ends, and when the peer hangs up while an
// inline request runs (hangups). For a one-way message the result is
// dropped.
type Handler interface {
	ServeWire(ctx context.Context, conn *Conn, method uint8, payload []byte) ([]byte, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, conn *Conn, method uint8, payload []byte) ([]byte, error)

// ServeWire calls f.
func (f HandlerFunc) ServeWire(ctx context.Context, conn *Conn, method uint8, payload []byte) ([]byte, error) {
	return f(ctx, conn, method, payload)
}

// Conn is the server side of a connection. Handlers keep per-connection
// state in it (the state transactions of a secondary, say) and register
// what must happen when it ends.
type Conn struct {
	nc  net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
	fd  int          // the socket's descriptor, or -1 when nc is not a Unix or TCP socket
	hup *hangupWatch // cancels the connection's context on a hang-up; nil if unwatched

	mu      sync.Mutex
	values  map[any]any
	closers []func()
}

// Value returns the per-connection value stored under key.
func (c *Conn) Value(key any) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.values[key]
}

// SetValue stores a per-connection value.
func (c *Conn) SetValue(key, val any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.values == nil {
		c.values = make(map[any]any)
	}
	c.values[key] = val
}

// OnClose registers fn to run once the connection has ended and every
// request handler of it has returned.
func (c *Conn) OnClose(fn func()) {
	c.mu.Lock()
	c.closers = append(c.closers, fn)
	c.mu.Unlock()
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// ServeConn serves nc, whose preface has been read, until it ends or ctx is
// done. It returns after every handler has returned and every OnClose
// function has run.
func ServeConn(ctx context.Context, nc net.Conn, h Handler) {
	ctx, cancel := context.WithCancel(ctx)
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), fd: socketFD(nc)}
	c.hup = hangups.watch(c.fd, cancel)
	stop := context.AfterFunc(ctx, func() { c.close() })
	defer stop()
	var handlers sync.WaitGroup
	for {
		hdr, payload, err := readFrame(c.r)
		if err != nil || hdr.kind == kindResponse {
			break
		}
		if hdr.kind == kindRequest && hdr.status&flagInline != 0 {
			if th, ok := h.(TakeHandler); ok && th.TakeWire(c, Request{hdr: hdr, Payload: payload}) {
				// The taker answers this request and serves the rest.
				stop() // before cancel, which would close nc
				cancel()
				handlers.Wait()
				return
			}
			resp, err := h.ServeWire(ctx, c, hdr.method, payload)
			c.respond(hdr, resp, err)
			continue
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			resp, err := h.ServeWire(ctx, c, hdr.method, payload)
			if hdr.kind == kindOneWay {
				return
			}
			c.respond(hdr, resp, err)
		}()
	}
	c.close()
	cancel()
	handlers.Wait()
	c.runClosers()
}

// close closes the socket, after its hang-up watch.
func (c *Conn) close() {
	hangups.stop(c.hup)
	c.nc.Close()
}

func (c *Conn) runClosers() {
	c.mu.Lock()
	closers := c.closers
	c.closers = nil
	c.mu.Unlock()
	for _, fn := range closers {
		fn()
	}
}

func (c *Conn) respond(req header, resp []byte, err error) {
	h, resp := answerFrame(req, resp, err)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = writeFrame(c.nc, h, resp)
}

// answerFrame is the answer frame to req: resp, or err, or, when resp is too
// large to send, an error saying so.
func answerFrame(req header, resp []byte, err error) (header, []byte) {
	h := header{kind: kindResponse, method: req.method, id: req.id, status: statusOK}
	if err == nil && len(resp) > MaxFrame {
		err = apierror.New(apierror.TooLarge, "wire payload of %d bytes exceeds %d", len(resp), MaxFrame)
	}
	if err != nil {
		h.status, resp = statusError, encodeError(err)
	}
	h.size = uint32(len(resp))
	return h, resp
}
