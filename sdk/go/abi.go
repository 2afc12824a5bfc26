package xfaas

import "sync"

// The numbers of the xfaas ABI (internal/abi in the xfaas repository and
// sdk/c/xfaas.h) that are not exported as Errno or Level values.
const (
	modeCausal       = 0
	modeLinearizable = 1

	inputBody     = 0
	inputSession  = 1
	inputFunction = 2
	inputHeaders  = 3

	statusOK     = 0
	statusAbsent = -1
)

// scratchSize is the size of the reusable read buffers. A value that fits is
// read with one host call; a larger one with two.
const scratchSize = 16 << 10

// scratchPool holds reusable read buffers, so that a read allocates nothing
// but its result. A pool rather than one buffer because the fake host lets
// goroutines of a test use the SDK at once.
var scratchPool = sync.Pool{New: func() any {
	b := make([]byte, scratchSize)
	return &b
}}

// readValue reads a value with read, which copies up to len(buf) bytes and
// returns the value's full length or a negative status (the contract of
// read_input and read_state). It tries scratch first and, while the value
// does not fit, a new buffer of the value's length. It returns the value,
// whether it aliases scratch, and the status (the length, or negative).
func readValue(scratch []byte, read func(buf []byte) int32) (val []byte, aliased bool, st int32) {
	buf, aliased := scratch, true
	for {
		n := read(buf)
		if n < 0 {
			return nil, false, n
		}
		if int(n) <= len(buf) {
			return buf[:n], aliased, n
		}
		buf, aliased = make([]byte, n), false // too small (or the value grew): read again
	}
}

// readCopy is readValue with a pooled scratch buffer, returning a value that
// the caller owns.
func readCopy(read func(buf []byte) int32) ([]byte, int32) {
	sp := scratchPool.Get().(*[]byte)
	defer scratchPool.Put(sp)
	val, aliased, st := readValue(*sp, read)
	if aliased {
		val = append([]byte(nil), val...)
	}
	return val, st
}
