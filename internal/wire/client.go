package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/xfaas/xfaas/internal/apierror"
)

// ErrClosed is returned by calls on a closed or broken connection. It is of
// kind Unavailable: the peer is gone, and nothing says the call ran.
var ErrClosed = &apierror.Error{Kind: apierror.Unavailable, Message: "wire connection closed"}

// Client makes calls over one connection. It is safe for concurrent use;
// calls are multiplexed and may complete in any order.
type Client struct {
	conn net.Conn
	addr string

	wmu sync.Mutex // serializes frame writes

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan response
	err     error // why the connection ended; set once

	done chan struct{} // closed when the read loop ends
}

type response struct {
	status  uint16
	payload []byte
}

// NewClient dials addr and starts reading responses.
func NewClient(ctx context.Context, addr string) (*Client, error) {
	conn, err := Dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &Client{conn: conn, addr: addr, pending: make(map[uint64]chan response), done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

// Addr is the address the client dialed.
func (c *Client) Addr() string { return c.addr }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the connection ended, or nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection. Pending calls fail with ErrClosed.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

// Call sends a request and waits for its response. A response with an error
// status is returned as an *apierror.Error; a broken connection as ErrClosed.
func (c *Client) Call(ctx context.Context, method uint8, payload []byte) ([]byte, error) {
	ch := make(chan response, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	if err := c.write(header{kind: kindRequest, method: method, id: id}, payload); err != nil {
		c.forget(id)
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, ErrClosed
		}
		if r.status != statusOK {
			return nil, decodeError(r.payload)
		}
		return r.payload, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
	}
}

// Notify sends a one-way message: no response, no ordering with calls in
// flight.
func (c *Client) Notify(method uint8, payload []byte) error {
	return c.write(header{kind: kindOneWay, method: method}, payload)
}

func (c *Client) write(h header, payload []byte) error {
	c.wmu.Lock()
	err := writeFrame(c.conn, h, payload)
	c.wmu.Unlock()
	if err != nil {
		var ae *apierror.Error
		if errors.As(err, &ae) {
			return err // refused before anything was sent
		}
		c.conn.Close()
		return ErrClosed
	}
	return nil
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

func (c *Client) readLoop() {
	defer close(c.done)
	r := bufio.NewReaderSize(c.conn, 64<<10)
	var err error
	for {
		var h header
		var payload []byte
		if h, payload, err = readFrame(r); err != nil {
			break
		}
		if h.kind != kindResponse {
			err = fmt.Errorf("%w: client got frame kind %d", ErrMalformed, h.kind)
			break
		}
		c.mu.Lock()
		ch := c.pending[h.id]
		delete(c.pending, h.id)
		c.mu.Unlock()
		if ch != nil {
			ch <- response{status: h.status, payload: payload}
		}
	}
	c.conn.Close()
	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
}
