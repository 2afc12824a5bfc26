package wire

import (
	"context"
	"sync"
	"time"
)

// SyncPool keeps idle SyncClients to one address for callers that make one
// call per connection at a time and want neither a dial per call nor a
// goroutine hand-off (SyncClient). It is safe for concurrent use.
type SyncPool struct {
	dial        func(ctx context.Context) (*SyncClient, error)
	maxIdle     int
	idleTimeout time.Duration

	mu        sync.Mutex
	idle      []idleSync // the most recently used last
	closed    bool
	nextSweep time.Time
}

type idleSync struct {
	sc       *SyncClient
	lastUsed time.Time
}

// SyncPoolOptions configure a SyncPool.
type SyncPoolOptions struct {
	// Dial makes a new connection; the default is DialSync(ctx, addr). A
	// caller that must check whom it reached does it here.
	Dial func(ctx context.Context) (*SyncClient, error)
	// MaxIdle bounds the idle connections kept. The default is 16.
	MaxIdle int
	// IdleTimeout closes connections unused for longer. The default, 0,
	// keeps them until Close.
	IdleTimeout time.Duration
}

// NewSyncPool returns a pool of connections to addr.
func NewSyncPool(addr string, o SyncPoolOptions) *SyncPool {
	if o.Dial == nil {
		o.Dial = func(ctx context.Context) (*SyncClient, error) { return DialSync(ctx, addr) }
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = 16
	}
	return &SyncPool{dial: o.Dial, maxIdle: o.MaxIdle, idleTimeout: o.IdleTimeout}
}

// Get takes an idle connection, or dials one. A closed pool answers
// ErrClosed.
func (p *SyncPool) Get(ctx context.Context) (*SyncClient, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(p.idle); n > 0 {
		sc := p.idle[n-1].sc
		p.idle[n-1] = idleSync{}
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return sc, nil
	}
	p.mu.Unlock()
	return p.dial(ctx)
}

// Put returns a connection after its call. One that broke (SyncClient
// closes itself on a failed exchange; an error answer leaves it usable)
// is dropped, as is one past MaxIdle or returned to a closed pool.
func (p *SyncPool) Put(sc *SyncClient) {
	if sc.broken {
		return
	}
	now := time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		sc.Close()
		return
	}
	p.idle = append(p.idle, idleSync{sc: sc, lastUsed: now})
	var stale []idleSync
	if p.idleTimeout > 0 && now.After(p.nextSweep) {
		p.nextSweep = now.Add(p.idleTimeout / 2)
		cutoff := now.Add(-p.idleTimeout)
		i := 0
		for i < len(p.idle) && p.idle[i].lastUsed.Before(cutoff) {
			i++
		}
		stale = append(stale, p.idle[:i]...)
		p.idle = append(p.idle[:0], p.idle[i:]...)
	}
	p.mu.Unlock()
	closeIdle(stale)
}

// Close closes the idle connections; busy ones close when they are Put.
func (p *SyncPool) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	closeIdle(idle)
}

func closeIdle(list []idleSync) {
	for _, s := range list {
		s.sc.Close()
	}
}
