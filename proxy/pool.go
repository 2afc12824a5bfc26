package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/apierror"
)

// ThreadPlacer puts a worker thread into the cgroup of worker slot i, whose
// CPU quota is the function's worker_cpu_millicores, and takes it out again
// before the slot ends. See RATIONALE.md, "Workers and cgroups".
type ThreadPlacer interface {
	PlaceThread(slot, tid int) error
	ReturnThread(slot, tid int) error
}

// PoolOptions configure a Pool.
type PoolOptions struct {
	// Function and Session attribute the pool's logs and fill read_input.
	Function, Session string
	// MaxWorkers bounds the live workers (max_workers). The default is 10.
	MaxWorkers int
	// MaxQueue bounds the requests waiting for a worker; past it a request
	// is Overloaded at once. The default is 4 × MaxWorkers.
	MaxQueue int
	// IdleTimeout is how long a warm worker may stay idle before it is
	// closed; one warm worker is always kept. The default is 60 s.
	IdleTimeout time.Duration
	// Timeout bounds one request, its queueing included (timeout_ms).
	// The default is 30 s.
	Timeout time.Duration
	// MaxInput and MaxOutput bound the request and response bodies. The
	// defaults are 6 MiB.
	MaxInput, MaxOutput int
	// NewAccessor returns a worker's handle on the session state.
	NewAccessor func() Accessor
	// Placer, when set, runs each worker on its own OS thread placed in a
	// CPU-limited cgroup. When nil, workers run unlimited on the caller's
	// goroutine.
	Placer ThreadPlacer
	Logger hclog.Logger

	// pull serves the workers' pull_state calls (functions with
	// depends_on); nil refuses them.
	pull *puller
	// slots, when set, are MaxWorkers slot threads started by Placer
	// already; the pool adopts them and stops them at Close.
	slots *slotSet
}

func (o *PoolOptions) fill() error {
	if o.MaxWorkers <= 0 {
		o.MaxWorkers = 10
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 4 * o.MaxWorkers
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxInput <= 0 {
		o.MaxInput = 6 << 20
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = 6 << 20
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.NewAccessor == nil {
		return errors.New("pool needs a state accessor")
	}
	return nil
}

// Pool runs a module's workers: a request takes an idle worker, else forks
// a new one while below MaxWorkers, else waits in a bounded queue. Warm
// workers are reused (most recently used first) and trimmed when idle; a
// worker that trapped or timed out is discarded, never reused.
type Pool struct {
	engine *Engine
	module *Module
	opts   PoolOptions
	log    hclog.Logger

	mu     sync.Mutex
	idle   []*worker // LIFO: the warmest worker is last
	live   int       // idle + busy + being forked; always MaxWorkers - len(free)
	free   []*slot   // slots without a worker (nil entries when unlimited)
	slots  []*slot   // every slot (none when unlimited)
	set    *slotSet  // the slots' threads (nil when unlimited)
	queue  []*waiter // FIFO, including waiters that gave up (gone)
	queued int       // waiters in queue that are neither gone nor granted
	closed bool
	// workers holds every live instance, idle or busy, so that a Close
	// whose grace period ran out can stop the busy ones (halt). It changes
	// at forks and discards only, never per request.
	workers map[*worker]struct{}
	halted  atomic.Bool // Close stopped the requests still running
	// sealed refuses new requests while a retire checkpoints the session
	// (seal); entered counts the requests admitted before, queued or
	// running, which seal waits for.
	sealed  atomic.Bool
	entered atomic.Int64

	stats   poolCounters
	stop    chan struct{}
	stopped sync.WaitGroup // the trimmer
}

// waiter is a request queued for a worker. Its fields are guarded by
// Pool.mu; ch has room for the one grant it can get, and is closed instead
// when the pool shuts down.
type waiter struct {
	ch      chan grant
	gone    bool // gave up before a grant
	granted bool // got a grant or was closed
}

// grant hands a queued request either an idle worker or a reserved place
// (live already counts it) with its slot, to fork a worker on.
type grant struct {
	w  *worker
	sl *slot
}

type poolCounters struct {
	forks, discards, trims, overloads, requests atomic.Uint64
	forkNanos                                   atomic.Uint64
	inflight                                    atomic.Int64
}

// NewPool starts a pool of workers for m. With a Placer it starts
// MaxWorkers slot threads first (or adopts opts.slots) and fails if any
// cannot be placed. The pool owns opts.slots even when NewPool fails.
func NewPool(e *Engine, m *Module, opts PoolOptions) (*Pool, error) {
	if err := opts.fill(); err != nil {
		if opts.slots != nil {
			opts.slots.stop()
		}
		return nil, err
	}
	p := &Pool{engine: e, module: m, opts: opts, log: opts.Logger, stop: make(chan struct{}), workers: map[*worker]struct{}{}}
	p.free = make([]*slot, opts.MaxWorkers)
	if opts.Placer != nil {
		p.set = opts.slots
		if p.set == nil {
			var err error
			if p.set, err = startSlots(opts.MaxWorkers, opts.Placer); err != nil {
				return nil, err
			}
		}
		if len(p.set.slots) != opts.MaxWorkers {
			p.set.stop()
			return nil, fmt.Errorf("pool of %d workers given %d slots", opts.MaxWorkers, len(p.set.slots))
		}
		for i, sl := range p.set.slots {
			sl.pool = p
			p.free[i] = sl
		}
		p.slots = p.set.slots
	}
	p.stopped.Add(1)
	go p.trimLoop()
	return p, nil
}

// Invoke runs one request on a worker and returns its output. Errors are
// *apierror.Error values of the kinds in DESIGN.md.
func (p *Pool) Invoke(ctx context.Context, input []byte) ([]byte, error) {
	return p.invoke(ctx, input, nil)
}

// invoke is Invoke, and with sl the request of a connection sl owns, on
// sl's thread: it then runs on sl's own worker (acquireOn).
func (p *Pool) invoke(ctx context.Context, input []byte, sl *slot) ([]byte, error) {
	if len(input) > p.opts.MaxInput {
		return nil, apierror.New(apierror.TooLarge, "input of %d bytes exceeds the %d byte limit", len(input), p.opts.MaxInput)
	}
	// Counted before sealed is read, as seal sets sealed before it reads
	// entered: either seal waits for this request or the request is
	// refused.
	p.entered.Add(1)
	defer p.entered.Add(-1)
	if p.sealed.Load() {
		return nil, errSealed
	}
	p.stats.requests.Add(1)
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	var w *worker
	var err error
	if sl == nil {
		w, err = p.acquire(ctx)
	} else {
		w, err = p.acquireOn(ctx, sl)
	}
	if err != nil {
		return nil, err
	}
	onSlot := sl != nil
	if ctx.Err() != nil {
		// The caller gave up, or the deadline passed, while the request
		// waited for its worker. Run, the guest would only have the
		// runtime close its instance at the call's start, and the worker
		// would be discarded and forked again for nothing.
		p.release(w, true, onSlot)
		return nil, queueTimeout(ctx)
	}
	p.stats.inflight.Add(1)
	// Published before halted is read, as halt sets halted before it
	// reads stop: either halt cancels this request or it sees halted.
	w.c.stop.Store(cancel)
	if p.halted.Load() {
		cancel()
	}
	out, healthy, err := w.invoke(ctx, input, onSlot)
	w.c.stop.Store(context.CancelFunc(nil))
	p.stats.inflight.Add(-1)
	p.release(w, healthy, onSlot)
	if !healthy && p.halted.Load() {
		// Close cancelled the request, which the worker reports as a
		// deadline: say why instead.
		err = errHalted
	}
	return out, err
}

// acquire returns an idle worker, forks one, or waits for one.
func (p *Pool) acquire(ctx context.Context) (*worker, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errShuttingDown
	}
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return w, nil
	}
	if p.live < p.opts.MaxWorkers {
		sl := p.takeSlotLocked()
		p.mu.Unlock()
		return p.fork(ctx, sl, false)
	}
	if p.queued >= p.opts.MaxQueue {
		p.mu.Unlock()
		p.stats.overloads.Add(1)
		return nil, &apierror.Error{Kind: apierror.Overloaded, RetryAfter: 1,
			Message: fmt.Sprintf("all %d workers are busy and %d requests are queued", p.opts.MaxWorkers, p.opts.MaxQueue)}
	}
	wt := &waiter{ch: make(chan grant, 1)}
	p.queue = append(p.queue, wt)
	p.queued++
	p.mu.Unlock()
	return p.wait(ctx, wt)
}

// wait blocks until wt is granted a worker or a place, the pool closes, or
// ctx is done.
func (p *Pool) wait(ctx context.Context, wt *waiter) (*worker, error) {
	select {
	case g, ok := <-wt.ch:
		if !ok {
			return nil, errShuttingDown
		}
		return p.granted(ctx, g)
	case <-ctx.Done():
	}
	p.mu.Lock()
	if !wt.granted {
		wt.gone = true
		p.queued--
		p.mu.Unlock()
		return nil, queueTimeout(ctx)
	}
	p.mu.Unlock()
	// A grant raced with the deadline: pass it on rather than lose it.
	if g, ok := <-wt.ch; ok {
		p.pass(g)
	}
	return nil, queueTimeout(ctx)
}

var (
	errShuttingDown = apierror.New(apierror.Unavailable, "the container is shutting down")
	// errSealed is retryable: the request did not run, and the control
	// plane routes its retry to the session's next primary.
	errSealed = &apierror.Error{Kind: apierror.Unavailable, RetryAfter: 1,
		Message: "the session is being checkpointed to stop or move; retry the request"}
	errHalted = apierror.New(apierror.Unavailable, "the container is shutting down and stopped the request at the end of its grace period")
)

func queueTimeout(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return apierror.New(apierror.Timeout, "no worker became free before the deadline")
	}
	return apierror.New(apierror.Unavailable, "request cancelled while queued")
}

func (p *Pool) granted(ctx context.Context, g grant) (*worker, error) {
	if g.w != nil {
		return g.w, nil
	}
	return p.fork(ctx, g.sl, false)
}

// pass returns an unused grant: a worker goes back, a place is freed.
func (p *Pool) pass(g grant) {
	if g.w != nil {
		p.release(g.w, true, false)
		return
	}
	p.mu.Lock()
	p.freeSlotLocked(g.sl)
	p.mu.Unlock()
}

// takeSlotLocked reserves a live worker's place and its slot.
func (p *Pool) takeSlotLocked() *slot {
	p.live++
	n := len(p.free) - 1
	sl := p.free[n]
	p.free = p.free[:n]
	return sl
}

// freeSlotLocked gives back a place and its slot, and offers the place to
// the slot's own waiting request, else to the longest-waiting one.
func (p *Pool) freeSlotLocked(sl *slot) {
	if p.keepForSlotLocked(sl) {
		return // the place stays counted in live: the slot forks on it
	}
	p.live--
	p.free = append(p.free, sl)
	if !p.handOffLocked(nil) {
		p.wakeLocked(sl)
	}
}

// fork instantiates a worker on sl (Fork in the paper's terms) and makes
// it sl's worker. onSlot says the caller is sl's thread.
func (p *Pool) fork(ctx context.Context, sl *slot, onSlot bool) (*worker, error) {
	start := time.Now()
	w, err := p.newWorker(ctx, sl, onSlot)
	p.mu.Lock()
	if err != nil {
		p.freeSlotLocked(sl)
		p.mu.Unlock()
		return nil, err
	}
	if sl != nil {
		sl.w = w
	}
	p.workers[w] = struct{}{}
	p.mu.Unlock()
	p.stats.forks.Add(1)
	p.stats.forkNanos.Add(uint64(time.Since(start)))
	return w, nil
}

// release returns w to the pool, or discards it when it is unhealthy.
// onSlot says the caller is w's slot thread. A discarded worker closes
// before its slot is freed: a closing pool stops its free slots.
func (p *Pool) release(w *worker, healthy, onSlot bool) {
	w.lastUsed = time.Now()
	p.mu.Lock()
	if !healthy || p.closed {
		p.stats.discards.Add(1)
		p.mu.Unlock()
		w.close(onSlot)
		p.mu.Lock()
		p.dropLocked(w)
		p.freeSlotLocked(w.slot)
		p.mu.Unlock()
		return
	}
	if !p.keepForSlotLocked(w.slot) && !p.handOffLocked(w) {
		p.idle = append(p.idle, w)
	}
	p.mu.Unlock()
}

// handOffLocked gives w, or with w nil a free place, to the longest-waiting
// request. It reports whether it did.
func (p *Pool) handOffLocked(w *worker) bool {
	if p.closed || (w == nil && p.live >= p.opts.MaxWorkers) {
		return false
	}
	for len(p.queue) > 0 {
		wt := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		if wt.gone {
			continue
		}
		g := grant{w: w}
		if w == nil {
			g.sl = p.takeSlotLocked()
		}
		wt.granted = true
		p.queued--
		wt.ch <- g
		return true
	}
	return false
}

// trimLoop closes workers idle for longer than IdleTimeout, keeping one.
func (p *Pool) trimLoop() {
	defer p.stopped.Done()
	tick := time.NewTicker(max(p.opts.IdleTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
			for _, w := range p.trimmable() {
				w.close(false)
			}
		}
	}
}

func (p *Pool) trimmable() []*worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := time.Now().Add(-p.opts.IdleTimeout)
	var out []*worker
	// idle is LIFO: the coldest workers are first. Keep the warmest one.
	for len(p.idle) > 1 && p.idle[0].lastUsed.Before(cutoff) {
		w := p.idle[0]
		p.idle = p.idle[1:]
		p.dropLocked(w)
		p.live--
		p.free = append(p.free, w.slot)
		p.stats.trims.Add(1) // nobody can be queued while a worker is idle
		out = append(out, w)
	}
	return out
}

// seal refuses new requests from now on and waits until the requests
// already admitted have returned, or ctx is done. A retire seals the pool
// before its last checkpoint, so that no request runs, or is answered,
// after the snapshot (see RATIONALE.md, "Who retires a namespace"). The
// pool stays sealed when seal fails; unseal opens it again.
func (p *Pool) seal(ctx context.Context) error {
	p.sealed.Store(true)
	if n, err := waitZero(ctx, time.Millisecond, func() int { return int(p.entered.Load()) }); err != nil {
		return apierror.New(apierror.Timeout, "%d requests still running: %v", n, err)
	}
	return nil
}

// unseal admits requests again.
func (p *Pool) unseal() { p.sealed.Store(false) }

// haltWait bounds how long Close waits, once its grace period is over, for
// the requests it stopped to return. A guest stops at its next function
// call or loop iteration; a host call that waits (a lock, a pull, the
// primary) ends with its context.
const haltWait = time.Second

// Close stops the pool: queued requests fail, idle workers close at once,
// busy ones when their request returns. It waits for busy workers until ctx
// is done; then it stops them (their requests fail as Unavailable), waits
// for them up to haltWait, and returns ctx's error. In either case the slot
// threads have ended when it returns, so their cgroups can go.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	for _, w := range idle {
		p.dropLocked(w)
	}
	p.live -= len(idle)
	p.free = append(p.free, slotsOf(idle)...)
	for _, wt := range p.queue {
		if !wt.gone && !wt.granted {
			wt.granted = true
			close(wt.ch)
		}
	}
	p.queue, p.queued = nil, 0
	p.mu.Unlock()
	close(p.stop)
	for _, w := range idle {
		w.close(false)
	}
	err := p.drain(ctx)
	if err != nil {
		p.halt()
		hctx, cancel := context.WithTimeout(context.Background(), haltWait)
		if herr := p.drain(hctx); herr != nil {
			p.log.Warn("requests stopped at the end of the grace period are still running", "error", herr)
		}
		cancel()
	}
	p.stopped.Wait()
	if p.set != nil {
		// A slot ends once its current job has. A stopped request's job
		// ends at the guest's next call or loop iteration, or when the
		// host call it is in returns; a fork under way, when it is done
		// (by its request's deadline at the latest).
		p.set.stop()
	}
	return err
}

// drain waits until no worker is live, or ctx is done.
func (p *Pool) drain(ctx context.Context) error {
	live := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.live
	}
	if n, err := waitZero(ctx, 5*time.Millisecond, live); err != nil {
		return fmt.Errorf("%d workers still busy: %w", n, err)
	}
	return nil
}

// waitZero polls count every interval until it is zero, or ctx is done;
// then it returns the count it saw last and ctx's error. Seal and drain
// wait for requests that end on their own, so a poll keeps the request
// path free of the wake-ups a notification would add to every return.
func waitZero(ctx context.Context, every time.Duration, count func() int) (int, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n := count()
		if n == 0 {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-t.C:
		}
	}
}

// halt stops the requests that still run after the grace period: it
// cancels their contexts, and they fail with errHalted. The runtime then
// closes the instance at the guest's next call or loop iteration
// (WithCloseOnContextDone) from the guest's own side. Closing the instance
// from here instead would free its WASI state under a running guest. A
// request that takes its worker after this is cancelled at once (invoke).
func (p *Pool) halt() {
	p.halted.Store(true)
	var stops []context.CancelFunc
	p.mu.Lock()
	for w := range p.workers {
		if stop, _ := w.c.stop.Load().(context.CancelFunc); stop != nil {
			stops = append(stops, stop)
		}
	}
	p.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

func slotsOf(ws []*worker) []*slot {
	out := make([]*slot, len(ws))
	for i, w := range ws {
		out[i] = w.slot
	}
	return out
}

// dropLocked forgets w as its slot's worker and as a live instance: it
// is closing.
func (p *Pool) dropLocked(w *worker) {
	delete(p.workers, w)
	if w.slot != nil && w.slot.w == w {
		w.slot.w = nil
	}
}

func (p *Pool) guestLogf(level int32, msg []byte) {
	args := []any{"function", p.opts.Function, "session", p.opts.Session, "msg", string(msg)}
	switch level {
	case abi.LevelDebug:
		p.log.Debug("guest", args...)
	case abi.LevelWarn:
		p.log.Warn("guest", args...)
	case abi.LevelError:
		p.log.Error("guest", args...)
	default:
		p.log.Info("guest", args...)
	}
}
