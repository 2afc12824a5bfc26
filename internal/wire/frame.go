package wire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/xfaas/xfaas/internal/apierror"
)

// Preface opens every wire connection; a listener shared with HTTP tells the
// two apart by it.
const Preface = "XFW1"

// MaxFrame bounds a frame's payload. A larger frame closes the connection.
const MaxFrame = 64 << 20

const headerSize = 16

// Frame kinds.
const (
	kindRequest  = 1
	kindResponse = 2
	kindOneWay   = 3
)

type header struct {
	size   uint32
	kind   uint8
	method uint8
	status uint16
	id     uint64
}

func (h header) put(b *[headerSize]byte) {
	binary.BigEndian.PutUint32(b[0:4], h.size)
	b[4], b[5] = h.kind, h.method
	binary.BigEndian.PutUint16(b[6:8], h.status)
	binary.BigEndian.PutUint64(b[8:16], h.id)
}

// parseHeader decodes and checks a frame's header.
func parseHeader(b []byte) (header, error) {
	h := header{
		size:   binary.BigEndian.Uint32(b[0:4]),
		kind:   b[4],
		method: b[5],
		status: binary.BigEndian.Uint16(b[6:8]),
		id:     binary.BigEndian.Uint64(b[8:16]),
	}
	if h.size > MaxFrame {
		return header{}, fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrMalformed, h.size, MaxFrame)
	}
	if h.kind < kindRequest || h.kind > kindOneWay {
		return header{}, fmt.Errorf("%w: frame kind %d", ErrMalformed, h.kind)
	}
	return h, nil
}

func readFrame(r *bufio.Reader) (header, []byte, error) {
	var b [headerSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return header{}, nil, err
	}
	h, err := parseHeader(b[:])
	if err != nil {
		return header{}, nil, err
	}
	payload := make([]byte, h.size)
	if _, err := io.ReadFull(r, payload); err != nil {
		return header{}, nil, err
	}
	return h, payload, nil
}

// writeFrame writes one frame with a single writev. The caller serializes
// writers.
func writeFrame(w net.Conn, h header, payload []byte) error {
	if len(payload) > MaxFrame {
		return apierror.New(apierror.TooLarge, "wire payload of %d bytes exceeds %d", len(payload), MaxFrame)
	}
	h.size = uint32(len(payload))
	var b [headerSize]byte
	h.put(&b)
	bufs := net.Buffers{b[:], payload}
	_, err := bufs.WriteTo(w)
	return err
}

// Error statuses of a response frame.
const (
	statusOK    = 0
	statusError = 1
)

// encodeError is the payload of an error response: kind, message, retry-after.
func encodeError(err error) []byte {
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		ae = &apierror.Error{Kind: apierror.KindOf(err), Message: err.Error()}
	}
	return NewEncoder(len(ae.Message) + 32).String(string(ae.Kind)).String(ae.Message).Uint(uint64(ae.RetryAfter)).Payload()
}

func decodeError(p []byte) error {
	d := NewDecoder(p)
	e := &apierror.Error{Kind: apierror.Kind(d.String()), Message: d.String(), RetryAfter: int(d.Uint())}
	if err := d.Err(); err != nil {
		return apierror.New(apierror.Internal, "undecodable error response: %v", err)
	}
	return e
}

// Dial connects to addr and sends the preface. addr is "unix:///path",
// "unix:/path", "tcp://host:port" or "host:port".
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	network, address := SplitAddr(addr)
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte(Preface)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// SplitAddr splits an xfaas address into a network and an address for net.Dial.
func SplitAddr(addr string) (network, address string) {
	switch {
	case strings.HasPrefix(addr, "unix://"):
		return "unix", strings.TrimPrefix(addr, "unix://")
	case strings.HasPrefix(addr, "unix:"):
		return "unix", strings.TrimPrefix(addr, "unix:")
	case strings.HasPrefix(addr, "tcp://"):
		return "tcp", strings.TrimPrefix(addr, "tcp://")
	}
	return "tcp", addr
}

// Listen listens on an xfaas address (see Dial). A Unix socket path that
// exists is removed first: it is left over from a process that died.
func Listen(addr string) (net.Listener, error) {
	network, address := SplitAddr(addr)
	if network == "unix" {
		removeStaleSocket(address)
	}
	return net.Listen(network, address)
}

// AddrOf formats a listener's address in xfaas form.
func AddrOf(a net.Addr) string {
	if a.Network() == "unix" {
		return "unix://" + a.String()
	}
	return "tcp://" + a.String()
}
