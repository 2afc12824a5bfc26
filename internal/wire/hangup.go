package wire

import (
	"context"
	"sync"

	"golang.org/x/sys/unix"
)

// hangups tells a connection's handlers that the peer hung up while they
// run: one epoll instance for the process, in which every served socket is
// registered once for EPOLLRDHUP (edge-triggered), and one goroutine that
// waits on it and cancels the connection's context. An inline request or a
// taken connection's request runs while nobody reads its socket, so without
// this a request whose caller gave up would run to its deadline. It costs a
// registration per connection and nothing per request (RATIONALE.md, "Wire
// protocol").
var hangups hangupWatcher

type hangupWatcher struct {
	start sync.Once
	epfd  int
	err   error

	mu      sync.Mutex
	next    uint64
	cancels map[uint64]context.CancelFunc
}

// hangupWatch is one socket's registration. stop removes it; it must run
// before the socket is closed, so that a new socket given the same number
// is never removed instead.
type hangupWatch struct {
	id   uint64
	fd   int
	once sync.Once
}

// watch registers the socket fd to cancel on its peer's hang-up. It
// returns nil when fd cannot be watched (-1: not a socket); the connection
// then works as before, without the early cancellation.
func (w *hangupWatcher) watch(fd int, cancel context.CancelFunc) *hangupWatch {
	w.start.Do(w.run)
	if w.err != nil || fd < 0 {
		return nil
	}
	w.mu.Lock()
	w.next++
	hw := &hangupWatch{id: w.next, fd: fd}
	w.cancels[hw.id] = cancel
	w.mu.Unlock()
	// The event's 64 data bits (Fd and Pad) carry the id.
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(hw.id)), Pad: int32(uint32(hw.id >> 32))}
	if unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev) != nil {
		w.forget(hw.id)
		return nil
	}
	return hw
}

// retarget makes a hang-up cancel with cancel from now on.
func (w *hangupWatcher) retarget(hw *hangupWatch, cancel context.CancelFunc) {
	if hw == nil {
		return
	}
	w.mu.Lock()
	if _, ok := w.cancels[hw.id]; ok {
		w.cancels[hw.id] = cancel
	}
	w.mu.Unlock()
}

// stop removes hw's registration, once; nil does nothing.
func (w *hangupWatcher) stop(hw *hangupWatch) {
	if hw == nil {
		return
	}
	hw.once.Do(func() {
		w.forget(hw.id)
		_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, hw.fd, nil)
	})
}

func (w *hangupWatcher) forget(id uint64) {
	w.mu.Lock()
	delete(w.cancels, id)
	w.mu.Unlock()
}

func (w *hangupWatcher) run() {
	w.epfd, w.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if w.err != nil {
		return
	}
	w.cancels = make(map[uint64]context.CancelFunc)
	go func() {
		events := make([]unix.EpollEvent, 64)
		for {
			n, err := unix.EpollWait(w.epfd, events, -1)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return // not expected: the descriptor is never closed; connections lose early cancellation only
			}
			for _, ev := range events[:n] {
				id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
				w.mu.Lock()
				cancel := w.cancels[id]
				w.mu.Unlock()
				if cancel != nil {
					cancel()
				}
			}
		}
	}()
}
