package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xfaas/xfaas/internal/wire"
)

// Client is a handle on one container: what the control plane uses to bind
// and invoke it. It is safe for concurrent use. Management calls are
// multiplexed on one connection, which also tells when the container goes
// (Done). Invocations each take a connection of their own from an idle
// list (wire.SyncClient): the request is written and its answer read on
// the caller's goroutine, and the container runs it on the connection's
// reader goroutine, so neither side hands the request to another goroutine
// (see RATIONALE.md, "Wire protocol"). The scheduler never has more
// requests in flight on a container than its max_workers, which bounds the
// connections.
type Client struct {
	wc  *wire.Client
	inv *wire.SyncPool // invocation connections
}

// maxIdleInvokeConns bounds the idle invocation connections kept per
// container.
const maxIdleInvokeConns = 64

// Dial connects to the container at addr.
func Dial(ctx context.Context, addr string) (*Client, error) {
	wc, err := wire.NewClient(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &Client{wc: wc, inv: wire.NewSyncPool(addr, wire.SyncPoolOptions{MaxIdle: maxIdleInvokeConns})}, nil
}

// Addr is the container's address.
func (c *Client) Addr() string { return c.wc.Addr() }

// Done is closed when the connection to the container ends.
func (c *Client) Done() <-chan struct{} { return c.wc.Done() }

// Close closes the connections.
func (c *Client) Close() error {
	c.inv.Close()
	return c.wc.Close()
}

// Invoke runs one request. The container stops the request when ctx's
// deadline passes, even if this side has gone. A connection that breaks
// (the container went away) is wire.ErrClosed, as is a call on a closed
// Client. A connection that cannot be made is the dial's error, or ctx's
// when ctx is done: a caller that gave up says nothing about the container,
// so it must not read like one that went away.
func (c *Client) Invoke(ctx context.Context, input []byte) ([]byte, error) {
	var timeout time.Duration
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
	}
	sc, err := c.inv.Get(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	out, err := sc.Call(ctx, methodInvoke, encodeInvoke(input, timeout))
	c.inv.Put(sc)
	return out, err
}

// Bind binds a pool container to a session.
func (c *Client) Bind(ctx context.Context, b Binding) error {
	p, err := b.encode()
	if err != nil {
		return err
	}
	_, err = c.wc.Call(ctx, methodBind, p)
	return err
}

// Status asks the container for its status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	p, err := c.wc.Call(ctx, methodStatus, nil)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(p, &s)
}

// Serve serves the container's wire protocol and HTTP endpoints on ln until
// ctx is done. Shutdown is graceful: the container refuses new requests,
// lets running ones finish within grace, closes, and only then are the
// connections closed.
func (c *Container) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	serveCtx, stop := context.WithCancel(context.Background())
	defer stop()
	closed := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
		case <-serveCtx.Done(): // the listener failed
		}
		closeCtx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		closed <- c.Close(closeCtx)
		stop()
	}()
	err := wire.Serve(serveCtx, ln, c, c.HTTPHandler())
	stop()
	return errors.Join(err, <-closed)
}

// Checkpoint has a primary checkpoint its session now; the session serves
// on.
func (c *Client) Checkpoint(ctx context.Context) (CheckpointInfo, error) {
	return c.checkpoint(ctx, false)
}

// Seal has a primary take the last checkpoint of its session before the
// control plane releases it (Container.Seal): from then on it refuses
// requests and state writes. When Seal fails, the primary serves on. The
// primary is given a little less than ctx's time (sealMargin), so that
// its answer, failure included, arrives before this side gives up: a seal
// that succeeded unseen would leave the session refusing every request.
func (c *Client) Seal(ctx context.Context) (CheckpointInfo, error) {
	return c.checkpoint(ctx, true)
}

// sealMargin is how much of the caller's remaining time a sealing
// checkpoint leaves for its answer to travel back.
func sealMargin(timeout time.Duration) time.Duration { return min(timeout/10, time.Second) }

func (c *Client) checkpoint(ctx context.Context, seal bool) (CheckpointInfo, error) {
	var timeout time.Duration
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
		if seal {
			timeout -= sealMargin(timeout)
		}
		// Not sent when it is over: a timeout of 0 is no bound.
		if timeout < time.Microsecond {
			return CheckpointInfo{}, context.DeadlineExceeded
		}
	}
	out, err := c.wc.Call(ctx, methodCheckpoint, encodeCheckpoint(seal, timeout))
	if err != nil {
		return CheckpointInfo{}, err
	}
	var info CheckpointInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return CheckpointInfo{}, fmt.Errorf("checkpoint reply: %w", err)
	}
	return info, nil
}
