package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/xfaas/xfaas/internal/apierror"
)

// flagInline in a request's status field asks the server to handle the
// request on the connection's reader goroutine, in order, without starting
// a goroutine for it. SyncClient sets it on every call.
const flagInline = 1

// SyncClient makes one call at a time on the caller's goroutine: it writes
// a frame and reads the reply itself, with no goroutine hand-off on either
// side. It suits a caller whose calls are sequential anyway (a worker's
// state operations); it is not safe for concurrent use. After a failed call
// the connection is closed and every later call fails with ErrClosed.
type SyncClient struct {
	nc     net.Conn
	r      *bufio.Reader
	addr   string
	nextID uint64
	broken bool
	giveUp func() // ends the exchange in flight; made once, for context.AfterFunc

	deadline time.Time // the connection's, as the last call set it; zero: none
}

// DialSync connects to addr.
func DialSync(ctx context.Context, addr string) (*SyncClient, error) {
	nc, err := Dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &SyncClient{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), addr: addr}
	c.giveUp = func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) }
	return c, nil
}

// Addr is the address the client dialed.
func (c *SyncClient) Addr() string { return c.addr }

// Close closes the connection.
func (c *SyncClient) Close() error {
	c.broken = true
	return c.nc.Close()
}

// Call sends a request that the server handles inline, and reads its reply.
// ctx's deadline bounds both, and ctx's cancellation ends the exchange and
// closes the connection. The server reads nothing else while it handles the
// request.
func (c *SyncClient) Call(ctx context.Context, method uint8, payload []byte) ([]byte, error) {
	return c.call(ctx, method, payload, flagInline)
}

// CallMayBlock is Call for a request that may wait (for a lock, say): the
// server runs it in a goroutine of its own, which ends when the client
// hangs up. It costs a few microseconds more than Call.
func (c *SyncClient) CallMayBlock(ctx context.Context, method uint8, payload []byte) ([]byte, error) {
	return c.call(ctx, method, payload, 0)
}

func (c *SyncClient) call(ctx context.Context, method uint8, payload []byte, flags uint16) ([]byte, error) {
	if c.broken {
		return nil, ErrClosed
	}
	// A call without a deadline clears the last call's, which a pooled
	// client would otherwise carry into the next caller's exchange.
	if deadline, _ := ctx.Deadline(); !deadline.Equal(c.deadline) {
		_ = c.nc.SetDeadline(deadline)
		c.deadline = deadline
	}
	if ctx.Done() == nil {
		return c.exchange(ctx, method, payload, flags)
	}
	// A caller that gives up ends the exchange at once: the server sees
	// the hang-up and cancels the request (hangups). The connection is
	// then in an unknown state, so it is closed, even if the reply won.
	stop := context.AfterFunc(ctx, c.giveUp)
	body, err := c.exchange(ctx, method, payload, flags)
	if !stop() {
		c.Close()
	}
	return body, err
}

func (c *SyncClient) exchange(ctx context.Context, method uint8, payload []byte, flags uint16) ([]byte, error) {
	c.nextID++
	h := header{kind: kindRequest, method: method, status: flags, id: c.nextID}
	if err := writeFrame(c.nc, h, payload); err != nil {
		return nil, c.fail(ctx, err)
	}
	resp, body, err := readFrame(c.r)
	if err != nil {
		return nil, c.fail(ctx, err)
	}
	if resp.kind != kindResponse || resp.id != h.id {
		return nil, c.fail(ctx, fmt.Errorf("%w: reply %d of kind %d to call %d", ErrMalformed, resp.id, resp.kind, h.id))
	}
	if resp.status != statusOK {
		return nil, decodeError(body)
	}
	return body, nil
}

// fail handles a failed exchange. A payload refused before anything was
// sent leaves the connection usable; any other failure leaves it in an
// unknown state, so it is closed. A deadline is reported as ctx's error.
func (c *SyncClient) fail(ctx context.Context, err error) error {
	if ae, ok := errors.AsType[*apierror.Error](err); ok {
		return ae
	}
	c.Close()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return context.DeadlineExceeded
	}
	return ErrClosed
}
