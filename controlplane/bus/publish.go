package bus

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Clock is a hybrid clock: Next returns max(unix nanoseconds, last + 1), so
// its values increase strictly within a process, even when the wall clock
// steps back, and follow wall time across processes. The zero value is
// ready; it is safe for concurrent use.
type Clock struct{ last atomic.Uint64 }

// Next returns the next sequence number.
func (c *Clock) Next() uint64 {
	for {
		last := c.last.Load()
		next := max(uint64(time.Now().UnixNano()), last+1)
		if c.last.CompareAndSwap(last, next) {
			return next
		}
	}
}

// processClock stamps every update published by this process, so that two
// Publishers of one process never reorder each other's updates.
var processClock Clock

// Publisher publishes address updates.
//
// Publishing is core NATS, fire and forget: Publish returns once the update
// is in the connection's buffer. That is enough because an update is a
// statement of the latest state, not a command: a newer seq supersedes it,
// a subscriber that misses it asks a lookup responder on its next miss, and
// the registry stays the source of truth. Waiting for an acknowledgement
// (JetStream) would put a replicated disk write on every placement without
// making subscribers any less eventually consistent.
type Publisher struct {
	nc    *nats.Conn
	clock *Clock
}

// NewPublisher returns a publisher on nc.
func NewPublisher(nc *nats.Conn) *Publisher {
	return &Publisher{nc: nc, clock: &processClock}
}

// Publish stamps u with the next sequence number, validates it and publishes
// it on its subject. It returns the update as published. An invalid update
// (a malformed function name or session id, say) is an error wrapping
// ErrInvalid and is not published.
func (p *Publisher) Publish(u Update) (Update, error) {
	u.Seq = p.clock.Next()
	if err := u.Validate(); err != nil {
		return Update{}, err
	}
	if err := p.nc.Publish(Subject(u.Function, u.Session), u.Encode()); err != nil {
		return Update{}, fmt.Errorf("publish address of %s/%s: %w", u.Function, u.Session, err)
	}
	return u, nil
}
