// Package wire is xfaas's internal RPC: framed, multiplexed calls over one
// stream connection (TCP or Unix socket), used by the control plane to
// invoke session containers and by secondaries to reach their primary's
// state. See RATIONALE.md, "Wire protocol".
//
// A connection opens with the preface "XFW1" from the client. Then both
// sides exchange frames:
//
//	[len u32][kind u8][method u8][status u16][id u64][payload: len bytes]
//
// all big-endian. kind is request, response or one-way; a response carries
// the id of its request and a status (0 = ok, else the payload is an error).
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed wire payload")

// Encoder appends fields to a payload.
type Encoder struct{ b []byte }

// NewEncoder returns an encoder whose buffer starts with capacity n.
func NewEncoder(n int) *Encoder { return &Encoder{b: make([]byte, 0, n)} }

// Uint appends an unsigned varint.
func (e *Encoder) Uint(v uint64) *Encoder { e.b = binary.AppendUvarint(e.b, v); return e }

// Int appends a signed (zig-zag) varint.
func (e *Encoder) Int(v int64) *Encoder { e.b = binary.AppendVarint(e.b, v); return e }

// Bytes appends a length-prefixed byte string.
func (e *Encoder) Bytes(p []byte) *Encoder {
	e.b = binary.AppendUvarint(e.b, uint64(len(p)))
	e.b = append(e.b, p...)
	return e
}

// String appends a length-prefixed string.
func (e *Encoder) String(s string) *Encoder {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
	return e
}

// Bool appends a byte 0 or 1.
func (e *Encoder) Bool(v bool) *Encoder {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
	return e
}

// Payload is the encoded payload.
func (e *Encoder) Payload() []byte { return e.b }

// Decoder reads fields from a payload. The first error sticks: later reads
// return zero values, and Err reports it.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder reads p. Byte strings it returns alias p.
func NewDecoder(p []byte) *Decoder { return &Decoder{b: p} }

func (d *Decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrMalformed, what)
	}
	d.b = nil
}

// Uint reads an unsigned varint.
func (d *Decoder) Uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("unsigned varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Int reads a signed varint.
func (d *Decoder) Int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("signed varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Int32 reads a signed varint that must fit in an int32.
func (d *Decoder) Int32() int32 {
	v := d.Int()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("int32")
		return 0
	}
	return int32(v)
}

// Bytes reads a length-prefixed byte string, aliasing the payload.
func (d *Decoder) Bytes() []byte {
	n := d.Uint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("byte string length")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// String reads a length-prefixed string.
func (d *Decoder) String() string { return string(d.Bytes()) }

// Bool reads a byte 0 or 1.
func (d *Decoder) Bool() bool {
	if len(d.b) == 0 || d.b[0] > 1 {
		d.fail("bool")
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

// Err is the first decoding error, or one for trailing bytes.
func (d *Decoder) Err() error {
	if d.err == nil && len(d.b) > 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return d.err
}
