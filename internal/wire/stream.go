package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// TakeHandler is a Handler that may take a connection over: the proxy's
// worker slots serve invocation connections from their own locked threads
// with blocking system calls, so that a request wakes the thread that runs
// it and nothing else (RATIONALE.md, "Workers and cgroups"). ServeConn
// offers it every inline request (SyncClient.Call). When TakeWire returns
// true, ServeConn stops reading, returns, and leaves the connection, its
// OnClose functions and the answer to req to the taker (Conn.Take).
// TakeWire runs on the connection's reader goroutine and must not block.
type TakeHandler interface {
	Handler
	TakeWire(conn *Conn, req Request) bool
}

// Request is one request read from a connection.
type Request struct {
	hdr     header
	Payload []byte
}

// Method is the request's method.
func (r Request) Method() uint8 { return r.hdr.method }

// Stream is a connection taken over from ServeConn, served with plain
// system calls on its socket: it neither uses Go's network poller nor
// blocks in Go; the caller waits for it with poll(2) on FD. It is not safe
// for concurrent use.
type Stream struct {
	c      *Conn
	fd     int
	buf    []byte // read but not yet consumed: buf[off:]
	off    int
	ctx    context.Context
	cancel context.CancelFunc
}

const streamBuf = 64 << 10

// ErrWouldBlock is Stream.Fill finding nothing to read: poll FD for input.
var ErrWouldBlock = errors.New("wire: would block")

// Take takes c over, from TakeWire before it returns true. The bytes
// ServeConn had read ahead stay in the stream. It fails when c is not a
// Unix or TCP socket.
func (c *Conn) Take() (*Stream, error) {
	if c.fd < 0 {
		return nil, fmt.Errorf("wire: a %T cannot be taken over", c.nc)
	}
	s := &Stream{c: c, fd: c.fd, buf: make([]byte, 0, streamBuf)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	hangups.retarget(c.hup, s.cancel) // the connection's watch is the stream's now
	if n := c.r.Buffered(); n > 0 {
		ahead, _ := c.r.Peek(n)
		s.buf = append(s.buf, ahead...)
	}
	return s, nil
}

// Context is cancelled when the peer hangs up, even while nobody reads the
// socket (a request running), and at Close.
func (s *Stream) Context() context.Context { return s.ctx }

// socketFD is nc's descriptor, or -1 when nc is not a Unix or TCP socket.
func socketFD(nc net.Conn) int {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil {
		return -1
	}
	return fd
}

// FD is the socket, for poll(2). It stays valid until Close.
func (s *Stream) FD() int { return s.fd }

// Next returns the next complete request read so far; ok is false when
// there is none yet (Fill). Only inline requests may arrive on a taken
// connection: anything else is ErrMalformed.
func (s *Stream) Next() (req Request, ok bool, err error) {
	avail := s.buf[s.off:]
	if len(avail) < headerSize {
		return Request{}, false, nil
	}
	h, err := parseHeader(avail)
	if err != nil {
		return Request{}, false, err
	}
	if h.kind != kindRequest || h.status&flagInline == 0 {
		return Request{}, false, fmt.Errorf("%w: frame kind %d on a taken connection", ErrMalformed, h.kind)
	}
	if len(avail) < headerSize+int(h.size) {
		return Request{}, false, nil
	}
	payload := make([]byte, h.size)
	copy(payload, avail[headerSize:])
	s.off += headerSize + int(h.size)
	return Request{hdr: h, Payload: payload}, true, nil
}

// Buffered is how many bytes were read but not yet returned by Next: a
// partial request when Next has none.
func (s *Stream) Buffered() int { return len(s.buf) - s.off }

// Fill reads what the socket holds, with one read(2). It returns
// ErrWouldBlock when there is nothing, io.EOF when the peer hung up.
func (s *Stream) Fill() error {
	if s.off == len(s.buf) {
		s.buf, s.off = s.buf[:0], 0
		if cap(s.buf) > 4*streamBuf {
			s.buf = make([]byte, 0, streamBuf) // do not keep a large frame's room
		}
	}
	if s.off > 0 && cap(s.buf)-len(s.buf) < cap(s.buf)/4 {
		n := copy(s.buf, s.buf[s.off:])
		s.buf, s.off = s.buf[:n], 0
	}
	if len(s.buf) == cap(s.buf) {
		s.buf = append(s.buf, make([]byte, len(s.buf))...)[:len(s.buf)]
	}
	for {
		n, err := unix.Read(s.fd, s.buf[len(s.buf):cap(s.buf)])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return ErrWouldBlock
		case err != nil:
			return err
		case n == 0:
			return io.EOF
		}
		s.buf = s.buf[:len(s.buf)+n]
		return nil
	}
}

// Reply answers req, waiting in poll(2) while the socket's buffer is full.
func (s *Stream) Reply(req Request, resp []byte, err error) error {
	h, resp := answerFrame(req.hdr, resp, err)
	var b [headerSize]byte
	h.put(&b)
	s.c.wmu.Lock()
	defer s.c.wmu.Unlock()
	bufs := [][]byte{b[:], resp}
	for len(bufs[0])+len(bufs[1]) > 0 {
		n, err := unix.Writev(s.fd, bufs)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
				return err
			}
			continue
		case err != nil:
			return err
		}
		for i := range bufs {
			k := min(n, len(bufs[i]))
			bufs[i], n = bufs[i][k:], n-k
		}
	}
	return nil
}

// Close closes the connection and runs its OnClose functions.
func (s *Stream) Close() {
	s.c.close()
	s.cancel()
	s.c.runClosers()
}
