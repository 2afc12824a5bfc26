package shim

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// readerWait is how long OpenLog waits for Nomad's log reader (logmon) to
// open a FIFO before the container starts; logmon opens it before the
// driver starts a task, so the wait is normally nil.
const readerWait = time.Second

// pipeSize is the FIFO buffer asked for, to absorb bursts while the reader
// is slow; the kernel caps it at fs.pipe-max-size.
const pipeSize = 1 << 20

// OpenLog returns the writer for one of the container's output streams:
// for a FIFO (Nomad's log pipes) a [FIFO] writer, for another path a file
// appended to, for "" a sink.
func OpenLog(path string) io.WriteCloser {
	if path == "" {
		return nopCloser{io.Discard}
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
		return NewFIFO(path, readerWait)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nopCloser{io.Discard}
	}
	return f
}

// FIFO writes to a named pipe without ever blocking the writer: it opens
// the pipe non-blocking, drops what does not fit while the reader lags,
// drops everything while there is no reader, and reopens the pipe on the
// next write after the reader went away (EPIPE), so that a restarted logmon
// gets the output again. It keeps the pipe open otherwise: closing it would
// be end-of-file to the reader. It uses the raw descriptor because an
// os.File would park the writing goroutine on a full pipe. Safe for
// concurrent use.
type FIFO struct {
	path string

	mu      sync.Mutex
	fd      int // -1 while there is no reader
	dropped uint64
}

// NewFIFO opens the FIFO at path for writing, waiting up to wait for a
// reader.
func NewFIFO(path string, wait time.Duration) *FIFO {
	f := &FIFO{path: path, fd: -1}
	deadline := time.Now().Add(wait)
	for !f.openLocked() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling open(2): a FIFO has no readiness event for readers
	}
	return f
}

// openLocked tries to open the FIFO and reports whether it is open.
func (f *FIFO) openLocked() bool {
	if f.fd >= 0 {
		return true
	}
	fd, err := unix.Open(f.path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false // ENXIO: no reader
	}
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, pipeSize)
	f.fd = fd
	return true
}

// Write writes what the pipe takes now and drops the rest; it never fails.
func (f *FIFO) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for rest := p; len(rest) > 0; {
		if !f.openLocked() {
			f.dropped += uint64(len(rest))
			break
		}
		n, err := unix.Write(f.fd, rest)
		if n > 0 {
			rest = rest[n:]
		}
		switch {
		case err == nil:
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			f.dropped += uint64(len(rest))
			return len(p), nil
		default: // EPIPE: the reader went away
			unix.Close(f.fd)
			f.fd = -1
			f.dropped += uint64(len(rest))
			return len(p), nil
		}
	}
	return len(p), nil
}

// Dropped is how many bytes were dropped so far.
func (f *FIFO) Dropped() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

// Close closes the pipe, which the reader sees as end-of-file.
func (f *FIFO) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return err
}
