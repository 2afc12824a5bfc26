package proxy

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/hostcall"
	"github.com/xfaas/xfaas/proxy/state"
)

// Accessor is one request's access to the session state: a *state.Txn on
// the primary, an RPC client of the primary on a secondary. Both give the
// same semantics (DESIGN.md, "State semantics").
type Accessor interface {
	Get(ctx context.Context, key []byte, mode int32) (val []byte, ok bool, err error)
	Put(ctx context.Context, key, val []byte, mode int32) error
	Delete(ctx context.Context, key []byte, mode int32) error
	// End aborts the request's open sections and releases its locks.
	End()
	// Close releases what the accessor holds beyond a request (a
	// secondary's connection to the primary): its worker retired.
	Close()
}

var _ Accessor = (*state.Txn)(nil)

// call is the request a worker is running. Host functions find it in their
// context (the invocation context's outermost value), so no host call
// allocates or takes a lock to reach it.
type call struct {
	input     []byte
	session   string
	function  string
	state     Accessor
	maxOutput int
	logf      func(level int32, msg []byte)
	pull      *puller // pull_state; nil without depends_on

	output []byte
	// outputErr is set when set_output refused an output past the limit, and
	// kept even if a later, smaller output succeeds: when the function then
	// fails, the refusal is why (413).
	outputErr error
	// outputOK is whether the latest set_output succeeded.
	outputOK bool
	stateErr error // the last conflict, deadlock or unavailability a host call saw

	// stop holds the context.CancelFunc of the running request, a nil one
	// between requests: Pool.invoke sets it, Pool.halt calls it from
	// another goroutine. (An atomic.Value holds a func without allocating.)
	stop atomic.Value
}

type callKey struct{}

func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

func callOf(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// instantiateHost adds the xfaas host module to rt. Every function is an
// api.GoModuleFunc: no reflection and no allocation on the hot path.
func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	fns := map[string]api.GoModuleFunc{
		abi.ReadInput:   readInput,
		abi.SetOutput:   setOutput,
		abi.ReadState:   readState,
		abi.WriteState:  writeState,
		abi.DeleteState: deleteState,
		abi.Log:         logLine,
		abi.PullState:   pullState,
	}
	return hostcall.Instantiate(ctx, rt, fns)
}

// read_input(arg, buf, len) -> i32
func readInput(ctx context.Context, mod api.Module, stack []uint64) {
	c := callOf(ctx)
	if c == nil {
		stack[0] = hostcall.Status(abi.ErrAbsent)
		return
	}
	var src []byte
	switch api.DecodeI32(stack[0]) {
	case abi.InputBody:
		src = c.input
	case abi.InputSession:
		src = []byte(c.session)
	case abi.InputFunction:
		src = []byte(c.function)
	case abi.InputHeaders:
		if src = headersOf(ctx); src == nil {
			stack[0] = hostcall.Status(abi.ErrAbsent)
			return
		}
	default:
		stack[0] = hostcall.Status(abi.ErrAbsent)
		return
	}
	stack[0] = hostcall.CopyOut(mod, stack[1], stack[2], src)
}

// set_output(buf, len) -> i32
func setOutput(ctx context.Context, mod api.Module, stack []uint64) {
	c := callOf(ctx)
	if c == nil {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	c.outputOK = false
	if n := int(int32(stack[1])); n > c.maxOutput {
		c.outputErr = fmt.Errorf("output of %d bytes exceeds the %d byte limit", n, c.maxOutput)
		stack[0] = hostcall.Status(abi.ErrValueTooLarge)
		return
	}
	buf, ok := hostcall.View(mod, stack[0], stack[1])
	if !ok {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	c.output = append(c.output[:0], buf...)
	c.outputOK = true
	stack[0] = hostcall.Status(abi.OK)
}

// read_state(key, key_len, buf, len, mode) -> i32
func readState(ctx context.Context, mod api.Module, stack []uint64) {
	c := callOf(ctx)
	if c == nil {
		stack[0] = hostcall.Status(abi.ErrUnavailable)
		return
	}
	key, ok := hostcall.View(mod, stack[0], stack[1])
	if !ok {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	val, present, err := c.state.Get(ctx, key, api.DecodeI32(stack[4]))
	switch {
	case err != nil:
		stack[0] = c.fail(err)
	case !present:
		stack[0] = hostcall.Status(abi.ErrAbsent)
	default:
		stack[0] = hostcall.CopyOut(mod, stack[2], stack[3], val)
	}
}

// write_state(key, key_len, val, val_len, mode) -> i32
func writeState(ctx context.Context, mod api.Module, stack []uint64) {
	c := callOf(ctx)
	if c == nil {
		stack[0] = hostcall.Status(abi.ErrUnavailable)
		return
	}
	key, ok1 := hostcall.View(mod, stack[0], stack[1])
	val, ok2 := hostcall.View(mod, stack[2], stack[3])
	if !ok1 || !ok2 {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	stack[0] = c.result(c.state.Put(ctx, key, val, api.DecodeI32(stack[4])))
}

// delete_state(key, key_len, mode) -> i32
func deleteState(ctx context.Context, mod api.Module, stack []uint64) {
	c := callOf(ctx)
	if c == nil {
		stack[0] = hostcall.Status(abi.ErrUnavailable)
		return
	}
	key, ok := hostcall.View(mod, stack[0], stack[1])
	if !ok {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	stack[0] = c.result(c.state.Delete(ctx, key, api.DecodeI32(stack[2])))
}

// pull_state(fn, fn_len, session, session_len, key, key_len, buf, len) -> i32
func pullState(ctx context.Context, mod api.Module, stack []uint64) {
	c := callOf(ctx)
	if c == nil {
		stack[0] = hostcall.Status(abi.ErrUnavailable)
		return
	}
	fn, ok1 := hostcall.View(mod, stack[0], stack[1])
	session, ok2 := hostcall.View(mod, stack[2], stack[3])
	key, ok3 := hostcall.View(mod, stack[4], stack[5])
	if !ok1 || !ok2 || !ok3 {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	val, present, err := c.pull.pull(ctx, fn, session, key)
	switch {
	case err != nil:
		stack[0] = c.fail(err)
	case !present:
		stack[0] = hostcall.Status(abi.ErrAbsent)
	default:
		stack[0] = hostcall.CopyOut(mod, stack[6], stack[7], val)
	}
}

// maxLogLine bounds one log line from a guest.
const maxLogLine = 4 << 10

// log(level, buf, len)
func logLine(ctx context.Context, mod api.Module, stack []uint64) {
	c := callOf(ctx)
	msg, ok := hostcall.View(mod, stack[1], stack[2])
	if c == nil || c.logf == nil || !ok {
		return
	}
	if len(msg) > maxLogLine {
		msg = msg[:maxLogLine]
	}
	c.logf(api.DecodeI32(stack[0]), msg)
}

func (c *call) result(err error) uint64 {
	if err != nil {
		return c.fail(err)
	}
	return hostcall.Status(abi.OK)
}

// fail maps a state error to its ABI status and remembers the errors that
// decide the request's error kind should the function then give up.
func (c *call) fail(err error) uint64 {
	code := state.Code(err)
	switch code {
	case abi.ErrConflict, abi.ErrDeadlock, abi.ErrLockTimeout, abi.ErrUnavailable:
		c.stateErr = err
	}
	return hostcall.Status(code)
}

type headersKey struct{}

// WithHeaders gives the request's HTTP headers to the function it invokes
// (read_input argument 3), as the control plane does for hook functions.
func WithHeaders(ctx context.Context, h http.Header) context.Context {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	var b []byte
	for _, name := range names {
		for _, v := range h[name] {
			b = append(append(append(append(b, http.CanonicalHeaderKey(name)...), ": "...), v...), '\n')
		}
	}
	if b == nil {
		b = []byte{}
	}
	return context.WithValue(ctx, headersKey{}, b)
}

func headersOf(ctx context.Context) []byte {
	b, _ := ctx.Value(headersKey{}).([]byte)
	return b
}
