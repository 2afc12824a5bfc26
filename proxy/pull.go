package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy/state"
)

// Resolver finds the primaries of other functions' sessions, for
// pull_state (pull mode, DESIGN.md "NATS"). `xfaas proxy --nats` wires a
// *bus.Table of package controlplane/bus, which implements it.
type Resolver interface {
	// Watch is called when a container is bound to a function that declares
	// dependencies, with its depends_on, before the container serves any
	// request: the resolver starts following those functions' addresses.
	Watch(ctx context.Context, functions []string) error
	// PrimaryAddr returns the wire address of the primary of (function,
	// session). It runs on every pull, so a hit must be cheap; on a miss it
	// may ask the network, within ctx.
	PrimaryAddr(ctx context.Context, function, session string) (addr string, ok bool)
}

// Bounds of pulls.
const (
	// pullDialTimeout bounds connecting to a primary and checking who it is.
	pullDialTimeout = 2 * time.Second
	// pullIdleTimeout is how long an unused connection to a primary stays.
	pullIdleTimeout = time.Minute
	// maxPullKey refuses keys far past any store's key limit (1 KiB by
	// default) before they reach the wire.
	maxPullKey = 64 << 10
)

// errTransport marks a pull that failed to reach the primary, as opposed to
// one the primary answered with a status: only the first kind is retried.
var errTransport = errors.New("primary not reached")

// puller runs the pull_state calls of one container's workers. A pull is
// a mode-0 read on the target primary, the state RPC a secondary uses
// (methodStateGet), over a wire.SyncClient: one call at a time on the
// caller's goroutine. Connections are pooled per target (address and the
// session it must serve), so there are at most max_workers idle per target,
// and they outlive the workers (which come and go) but not the container.
type puller struct {
	// deps maps each function of depends_on to itself, so that a lookup by
	// the guest's bytes yields the name without allocating.
	deps     map[string]string
	resolver Resolver
	maxIdle  int
	log      hclog.Logger

	mu     sync.Mutex
	pools  map[pullTarget]*wire.SyncPool
	closed bool
}

// pullTarget is the primary of (function, session) at addr. Its pool dials
// through dialPrimary, which checks who answers: a container serves one
// session in its life, so the check holds for the connection's life.
type pullTarget struct{ addr, function, session string }

// newPuller returns the puller of a function bound with dependencies, and
// has the resolver follow them. resolver may be nil: every pull of a
// declared function is then unavailable.
func newPuller(ctx context.Context, deps []string, resolver Resolver, maxIdle int, log hclog.Logger) (*puller, error) {
	p := &puller{deps: make(map[string]string, len(deps)), resolver: resolver, maxIdle: maxIdle, log: log,
		pools: map[pullTarget]*wire.SyncPool{}}
	for _, fn := range deps {
		p.deps[fn] = fn
	}
	if resolver == nil {
		log.Warn("function declares depends_on but the container has no address resolver: pulls are unavailable", "depends_on", deps)
		return p, nil
	}
	if err := resolver.Watch(ctx, deps); err != nil {
		return nil, fmt.Errorf("follow the addresses of %v: %w", deps, err)
	}
	return p, nil
}

// pull reads key in mode 0 from the primary of session of function fn. The
// errors are state errors, so that state.Code gives the ABI status.
func (p *puller) pull(ctx context.Context, fn, session, key []byte) ([]byte, bool, error) {
	if p == nil {
		return nil, false, fmt.Errorf("%w: pull_state from %q: the function declares no depends_on", state.ErrInvalid, fn)
	}
	function, declared := p.deps[string(fn)]
	switch {
	case !declared:
		return nil, false, fmt.Errorf("%w: pull_state from %q, which depends_on does not list", state.ErrInvalid, fn)
	case !hint.ValidSessionID(string(session)):
		return nil, false, fmt.Errorf("%w: pull_state: %q is not a session id", state.ErrInvalid, session)
	case len(key) > maxPullKey:
		return nil, false, state.ErrKeyTooLarge
	case p.resolver == nil:
		return nil, false, fmt.Errorf("%w: pull_state needs an address resolver (xfaas proxy --nats)", state.ErrUnavailable)
	}
	sess := string(session)
	var err error
	// A failure to reach the primary may mean it moved: resolve again, the
	// resolver may know the new one by now, and retry once.
	for range 2 {
		addr, ok := p.resolver.PrimaryAddr(ctx, function, sess)
		if !ok {
			return nil, false, fmt.Errorf("%w: no primary of %s/%s is known", state.ErrUnavailable, function, sess)
		}
		var val []byte
		var present bool
		val, present, err = p.get(ctx, addr, function, sess, key)
		if !errors.Is(err, errTransport) {
			return val, present, err
		}
		p.log.Debug("pull failed", "function", function, "session", sess, "addr", addr, "error", err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, false, fmt.Errorf("%w: %v", state.ErrUnavailable, err)
}

// get reads key from the primary at addr.
func (p *puller) get(ctx context.Context, addr, function, session string, key []byte) ([]byte, bool, error) {
	pool, err := p.pool(pullTarget{addr, function, session})
	if err != nil {
		return nil, false, err
	}
	sc, err := pool.Get(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s: %v", errTransport, addr, err)
	}
	reply, err := sc.Call(ctx, methodStateGet, stateOp{mode: abi.ModeCausal, key: key}.encode())
	var code int32
	var val []byte
	if err == nil {
		code, val, err = decodeStateReply(reply)
	}
	if err != nil {
		sc.Close()
		if ctx.Err() == nil {
			// Not the request's deadline: the connection or the container
			// failed (or no longer holds the state), so every connection
			// to this address is suspect.
			p.forget(addr)
		}
		return nil, false, fmt.Errorf("%w: %s: %v", errTransport, addr, err)
	}
	pool.Put(sc)
	switch {
	case code == abi.ErrAbsent:
		return nil, false, nil
	case code < 0:
		return nil, false, state.ErrorOf(code)
	}
	return val, true, nil
}

// pool returns the connection pool of t.
func (p *puller) pool(t pullTarget) (*wire.SyncPool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errShuttingDown
	}
	pool := p.pools[t]
	if pool == nil {
		pool = wire.NewSyncPool(t.addr, wire.SyncPoolOptions{MaxIdle: p.maxIdle, IdleTimeout: pullIdleTimeout,
			Dial: func(ctx context.Context) (*wire.SyncClient, error) { return dialPrimary(ctx, t) }})
		p.pools[t] = pool
	}
	return pool, nil
}

// dialPrimary connects to t.addr and checks that it is the primary of
// (t.function, t.session), so that a stale address never reads another
// session's state.
func dialPrimary(ctx context.Context, t pullTarget) (*wire.SyncClient, error) {
	ctx, cancel := context.WithTimeout(ctx, pullDialTimeout)
	defer cancel()
	sc, err := wire.DialSync(ctx, t.addr)
	if err != nil {
		return nil, err
	}
	reply, err := sc.Call(ctx, methodStatus, nil)
	var st Status
	if err == nil {
		err = json.Unmarshal(reply, &st)
	}
	if err == nil && (st.Function != t.function || st.Session != t.session || st.Role != RolePrimary) {
		err = fmt.Errorf("the container at %s is the %s of %s/%s, not the primary of %s/%s", t.addr, st.Role, st.Function, st.Session, t.function, t.session)
	}
	if err != nil {
		sc.Close()
		return nil, err
	}
	return sc, nil
}

// forget drops the pools of addr, after a connection to it failed.
func (p *puller) forget(addr string) {
	p.mu.Lock()
	var gone []*wire.SyncPool
	for t, pool := range p.pools {
		if t.addr == addr {
			gone = append(gone, pool)
			delete(p.pools, t)
		}
	}
	p.mu.Unlock()
	for _, pool := range gone {
		pool.Close()
	}
}

// close closes the idle connections; busy ones close when returned.
func (p *puller) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	pools := p.pools
	p.pools = nil
	p.mu.Unlock()
	for _, pool := range pools {
		pool.Close()
	}
}
