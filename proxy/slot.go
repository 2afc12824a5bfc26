package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/xfaas/xfaas/internal/wire"
)

// slot is where a worker runs when CPU limits are enforced: a goroutine
// locked to an OS thread that sits in slot i's cgroup. Slots outlive
// workers, so a Fork never pays for a thread or a cgroup write.
//
// A slot runs the jobs posted to it (a fork, a request that took its
// worker from the pool, a close), and it may also own one invocation
// connection taken over from the wire server: it then waits in poll(2) for
// either, and serves the connection's requests itself with read(2) and
// writev(2). Such a request wakes the thread that runs it and nothing else;
// a posted job costs a wake-up there and another back (RATIONALE.md,
// "Workers and cgroups"). A slot without a connection waits on a channel
// instead: a thread blocked in a system call keeps its P until sysmon
// takes it back, a goroutine blocked on a channel gives it up at once.
type slot struct {
	pool *Pool         // set by the pool that adopts the slot, before its first job
	efd  int           // eventfd: a signal while the slot is in poll(2)
	wake chan struct{} // a signal otherwise; one pending at most

	mu      sync.Mutex
	jobs    []slotJob
	stopped bool
	polling bool // the slot is (about to be) in poll(2)

	// Guarded by Pool.mu.
	w       *worker // the worker that lives on this slot, idle or busy
	owned   bool    // a connection was given to this slot (stream, below)
	waiting bool    // the slot waits to claim its worker (Pool.claim)
	ready   bool    // the pool kept w, or with w nil its place, for that claim

	// The slot thread's own.
	stream   *wire.Stream
	serve    func(*slot, wire.Request) ([]byte, error)
	readable bool // poll(2) saw the stream's socket ready
}

type slotJob struct {
	fn   func()
	done chan struct{} // run: closed after fn
}

// slotSet is a set of running slot threads, each placed in its worker
// cgroup. A container starts its set while it waits unbound in the pool,
// so that a bind does not pay for the threads and the cgroup writes; the
// pool it binds adopts the set (Pool.slots).
type slotSet struct {
	placer ThreadPlacer
	slots  []*slot
	spare  []*slot        // set aside by resize, stopped with the set
	wg     sync.WaitGroup // the slot goroutines
}

// startSlots starts n slot threads placed by placer.
func startSlots(n int, placer ThreadPlacer) (*slotSet, error) {
	ss := &slotSet{placer: placer}
	if err := ss.grow(n); err != nil {
		ss.stop()
		return nil, err
	}
	return ss, nil
}

// grow starts slots until there are n.
func (ss *slotSet) grow(n int) error {
	for i := len(ss.slots); i < n; i++ {
		sl, err := startSlot(i, ss.placer, &ss.wg)
		if err != nil {
			return fmt.Errorf("start worker slot %d: %w", i, err)
		}
		ss.slots = append(ss.slots, sl)
	}
	return nil
}

// resize makes the set n slots long: it starts the missing ones, and
// sets the ones past n aside, parked on their channels until the set
// stops. Stopping them now would cost a thread wake-up and a cgroup write
// each while the bind's first request is on its way.
func (ss *slotSet) resize(n int) error {
	if len(ss.slots) > n {
		ss.spare = append(ss.spare, ss.slots[n:]...)
		ss.slots = ss.slots[:n]
	}
	return ss.grow(n)
}

// stop ends every slot once it has run the jobs posted before, and waits
// for their threads to leave their cgroups.
func (ss *slotSet) stop() {
	for _, sl := range ss.slots {
		sl.stop()
	}
	for _, sl := range ss.spare {
		sl.stop()
	}
	ss.wg.Wait()
}

func startSlot(i int, placer ThreadPlacer, wg *sync.WaitGroup) (*slot, error) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	sl := &slot{efd: efd, wake: make(chan struct{}, 1)}
	ready := make(chan error)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer unix.Close(efd)
		// Never unlocked, so that no other goroutine runs in the worker's
		// cgroup. The thread leaves the cgroup before the goroutine ends: Go
		// keeps a locked main thread alive instead of ending it.
		runtime.LockOSThread()
		tid := unix.Gettid()
		if err := placer.PlaceThread(i, tid); err != nil {
			ready <- err
			return
		}
		ready <- nil
		sl.loop()
		_ = placer.ReturnThread(i, tid)
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return sl, nil
}

// run runs fn on the slot's thread and returns when it has.
func (s *slot) run(fn func()) {
	done := make(chan struct{})
	s.post(slotJob{fn: fn, done: done})
	<-done
}

func (s *slot) post(j slotJob) {
	s.mu.Lock()
	s.jobs = append(s.jobs, j)
	polling := s.polling
	s.mu.Unlock()
	s.signal(polling)
}

// stop ends the slot once it has run the jobs posted before.
func (s *slot) stop() {
	s.mu.Lock()
	s.stopped = true
	polling := s.polling
	s.mu.Unlock()
	s.signal(polling)
}

// notify signals the slot (its worker or its place came free).
func (s *slot) notify() {
	s.mu.Lock()
	polling := s.polling
	s.mu.Unlock()
	s.signal(polling)
}

// signal wakes the slot: always through the channel, which keeps one
// pending signal for a slot not waiting yet, and through the eventfd too
// when the slot polls.
func (s *slot) signal(polling bool) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if !polling {
		return
	}
	var one [8]byte // the eventfd adds this native-endian 1
	binary.NativeEndian.PutUint64(one[:], 1)
	for {
		if _, err := unix.Write(s.efd, one[:]); err != unix.EINTR {
			return
		}
	}
}

// runJobs runs the jobs posted so far, one at a time: a job may wait on
// the slot for a later one (acquireOn). It reports whether it ran any and
// whether the slot must stop.
func (s *slot) runJobs() (ran, stopped bool) {
	for {
		s.mu.Lock()
		if len(s.jobs) == 0 {
			stopped = s.stopped
			s.mu.Unlock()
			return ran, stopped
		}
		j := s.jobs[0]
		s.jobs[0] = slotJob{}
		s.jobs = s.jobs[1:]
		s.mu.Unlock()
		j.fn()
		if j.done != nil {
			close(j.done)
		}
		ran = true
	}
}

// loop is the slot thread: jobs first, then the owned connection's
// requests, then sleep in poll(2) until either has more.
func (s *slot) loop() {
	for {
		ran, stopped := s.runJobs()
		if stopped {
			break
		}
		if ran {
			continue
		}
		if s.stream != nil && s.readable {
			s.readable = false
			s.serveStream()
			continue
		}
		if s.stream == nil {
			<-s.wake
			continue
		}
		s.readable = s.poll()
	}
	s.closeStream()
}

// closeStream closes the owned connection, if any; the slot may then be
// given another.
func (s *slot) closeStream() {
	if s.stream == nil {
		return
	}
	s.stream.Close()
	s.stream = nil
	s.pool.mu.Lock()
	s.owned = false
	s.pool.mu.Unlock()
}

// poll sleeps in poll(2) until the slot is signalled or the connection
// has input. It reports whether the connection's socket is ready.
func (s *slot) poll() bool {
	s.mu.Lock()
	s.polling = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.polling = false
		s.mu.Unlock()
	}()
	select {
	case <-s.wake: // a signal from before polling was set
		return false
	default:
	}
	fds := [2]unix.PollFd{{Fd: int32(s.efd), Events: unix.POLLIN}, {Fd: int32(s.stream.FD()), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds[:], -1); err != unix.EINTR {
			break
		}
	}
	if fds[0].Revents != 0 {
		var v [8]byte
		_, _ = unix.Read(s.efd, v[:])
	}
	return fds[1].Revents != 0
}

// serveStream serves the requests the connection holds, reading the
// socket once, and again only to complete a request: a SyncClient sends
// its next request after the answer, so poll(2) tells when to read again.
func (s *slot) serveStream() {
	read := false
	for {
		req, ok, err := s.stream.Next()
		if err == nil && !ok {
			if read && s.stream.Buffered() == 0 {
				return
			}
			read = true
			if err = s.stream.Fill(); errors.Is(err, wire.ErrWouldBlock) {
				return
			}
			if err == nil {
				continue
			}
		}
		if err != nil {
			s.closeStream()
			return
		}
		s.answer(req)
		if s.stream == nil {
			return
		}
	}
}

// answer serves one request of the owned connection and writes its answer.
func (s *slot) answer(req wire.Request) {
	out, err := s.serve(s, req)
	if werr := s.stream.Reply(req, out, err); werr != nil {
		s.closeStream()
	}
}

// adopt gives conn, taken over from the wire server, to a slot that owns
// none, which answers req and then serves the connection until it ends.
// serve answers one request on the slot's thread. It reports false, and
// leaves conn to the wire server, when every slot owns a connection.
func (p *Pool) adopt(conn *wire.Conn, req wire.Request, serve func(*slot, wire.Request) ([]byte, error)) bool {
	// All under p.mu: Close stops the slots only after it marked the pool
	// closed, so a job posted here runs before its slot stops.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	var sl *slot
	for _, c := range p.slots {
		if !c.owned {
			sl = c
			break
		}
	}
	if sl == nil {
		return false
	}
	st, err := conn.Take()
	if err != nil {
		return false
	}
	sl.owned = true
	sl.post(slotJob{fn: func() {
		sl.stream, sl.serve = st, serve
		sl.answer(req)
		sl.readable = true // ServeConn may have read ahead
	}})
	return true
}

// acquireOn returns sl's own worker for a request of the connection sl
// owns, on sl's thread. While the pool has lent that worker to another
// request, it runs that request's jobs and waits for the worker to come
// back: release keeps it for this request (ready) and signals the slot.
// It gives up when ctx ends, the caller's hang-up included.
func (p *Pool) acquireOn(ctx context.Context, sl *slot) (*worker, error) {
	w, err := p.claim(ctx, sl)
	for err == nil && w == nil {
		ran, stopped := sl.runJobs()
		if stopped {
			p.unclaim(sl)
			return nil, errShuttingDown
		}
		if !ran {
			select {
			case <-sl.wake:
			case <-ctx.Done():
			}
		}
		// Checked after each job too: the slot may run borrowers' jobs
		// for as long as they keep coming.
		if ctx.Err() != nil {
			p.unclaim(sl)
			return nil, queueTimeout(ctx)
		}
		w, err = p.claim(ctx, sl)
	}
	return w, err
}

// claim takes sl's worker for a request on sl's thread: the worker if it
// is idle, a new one forked here if sl has none. It returns nil, and marks
// sl waiting, while the worker (or the slot, for a fork) is another
// request's: whoever gives it back signals sl.
func (p *Pool) claim(ctx context.Context, sl *slot) (*worker, error) {
	p.mu.Lock()
	if sl.ready {
		// Kept for this request by release before any Close: it runs, as a
		// queued request granted a worker does.
		sl.ready = false
		w := sl.w
		p.mu.Unlock()
		if w != nil {
			return w, nil
		}
		return p.fork(ctx, sl, true) // live counts the place already
	}
	if p.closed {
		sl.waiting = false
		p.mu.Unlock()
		return nil, errShuttingDown
	}
	if w := sl.w; w != nil {
		for i, iw := range p.idle {
			if iw == w {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				sl.waiting = false
				p.mu.Unlock()
				return w, nil
			}
		}
	} else {
		for i, f := range p.free {
			if f == sl {
				p.free = append(p.free[:i], p.free[i+1:]...)
				p.live++
				sl.waiting = false
				p.mu.Unlock()
				return p.fork(ctx, sl, true)
			}
		}
	}
	sl.waiting = true
	p.mu.Unlock()
	return nil, nil
}

// unclaim: sl no longer waits for its worker. What release kept for it
// goes back to the pool, as an unused grant does. It runs on sl's thread.
func (p *Pool) unclaim(sl *slot) {
	p.mu.Lock()
	sl.waiting = false
	kept := sl.ready
	sl.ready = false
	w := sl.w
	p.mu.Unlock()
	switch {
	case kept && w != nil:
		p.release(w, true, true)
	case kept:
		p.mu.Lock()
		p.freeSlotLocked(sl)
		p.mu.Unlock()
	}
}

// keepForSlotLocked keeps sl's worker, or with sl.w nil its place, for
// the request of sl's own connection if it waits for it, and signals sl.
// That request goes before the queue: it can run on no other worker, is
// not counted in the queue, and without this a queue that never empties
// gets every release while it waits out its deadline. It reports whether
// it kept them.
func (p *Pool) keepForSlotLocked(sl *slot) bool {
	if sl == nil || !sl.waiting || p.closed {
		return false
	}
	sl.waiting, sl.ready = false, true
	sl.notify()
	return true
}

// wakeLocked signals sl if it waits to claim its worker or its place.
func (p *Pool) wakeLocked(sl *slot) {
	if sl != nil && sl.waiting {
		sl.notify()
	}
}
