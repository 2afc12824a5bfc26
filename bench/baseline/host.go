package baseline

import (
	"bytes"
	"context"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/hostcall"
)

// call is the request the worker's instance is running.
type call struct {
	ctx    context.Context
	input  []byte
	output []byte
	// pending is a value that did not fit the guest's buffer: the SDKs then
	// read it again with a larger one (xfaas_read_all), and a Redis-backed
	// runtime answers that second read from the first answer instead of
	// fetching the value again. Any write or delete drops it.
	pending struct {
		key  []byte
		mode int32
		val  []byte
		ok   bool
	}
}

// host is the xfaas host module implemented against Redis: the same
// imports, signatures and status codes as proxy's, for the one instance of
// a traditional container.
type host struct {
	st       *store
	c        *call
	function string
}

const maxOutput = 6 << 20

// instantiate adds module xfaas to rt, every function an api.GoModuleFunc
// bound to h.
func (h *host) instantiate(ctx context.Context, rt wazero.Runtime) error {
	fns := map[string]api.GoModuleFunc{
		abi.ReadInput:   h.readInput,
		abi.SetOutput:   h.setOutput,
		abi.ReadState:   h.readState,
		abi.WriteState:  h.writeState,
		abi.DeleteState: h.deleteState,
		abi.Log:         func(context.Context, api.Module, []uint64) {},
		abi.PullState:   h.pullState,
	}
	return hostcall.Instantiate(ctx, rt, fns)
}

func (h *host) readInput(_ context.Context, mod api.Module, stack []uint64) {
	var src []byte
	switch api.DecodeI32(stack[0]) {
	case abi.InputBody:
		src = h.c.input
	case abi.InputSession:
		src = []byte("default")
	case abi.InputFunction:
		src = []byte(h.function)
	default:
		stack[0] = hostcall.Status(abi.ErrAbsent)
		return
	}
	stack[0] = hostcall.CopyOut(mod, stack[1], stack[2], src)
}

func (h *host) setOutput(_ context.Context, mod api.Module, stack []uint64) {
	if int(int32(stack[1])) > maxOutput {
		stack[0] = hostcall.Status(abi.ErrValueTooLarge)
		return
	}
	buf, ok := hostcall.View(mod, stack[0], stack[1])
	if !ok {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	h.c.output = append(h.c.output[:0], buf...)
	stack[0] = hostcall.Status(abi.OK)
}

func (h *host) readState(_ context.Context, mod api.Module, stack []uint64) {
	key, ok := hostcall.View(mod, stack[0], stack[1])
	if !ok {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	mode := api.DecodeI32(stack[4])
	p := &h.c.pending
	var val []byte
	var present bool
	if p.val != nil && p.mode == mode && bytes.Equal(p.key, key) {
		val, present = p.val, p.ok
		p.val = nil
	} else {
		var err error
		if val, present, err = h.st.get(h.c.ctx, key, mode); err != nil {
			stack[0] = hostcall.Status(code(err))
			return
		}
	}
	if !present {
		stack[0] = hostcall.Status(abi.ErrAbsent)
		return
	}
	if len(val) > int(uint32(stack[3])) && int32(stack[3]) >= 0 {
		p.key, p.mode, p.val, p.ok = append(p.key[:0], key...), mode, val, true
	}
	stack[0] = hostcall.CopyOut(mod, stack[2], stack[3], val)
}

func (h *host) writeState(_ context.Context, mod api.Module, stack []uint64) {
	h.c.pending.val = nil
	key, ok1 := hostcall.View(mod, stack[0], stack[1])
	val, ok2 := hostcall.View(mod, stack[2], stack[3])
	if !ok1 || !ok2 {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	stack[0] = hostcall.Status(code(h.st.put(h.c.ctx, key, val, api.DecodeI32(stack[4]))))
}

func (h *host) deleteState(_ context.Context, mod api.Module, stack []uint64) {
	h.c.pending.val = nil
	key, ok := hostcall.View(mod, stack[0], stack[1])
	if !ok {
		stack[0] = hostcall.Status(abi.ErrInvalid)
		return
	}
	stack[0] = hostcall.Status(code(h.st.del(h.c.ctx, key, api.DecodeI32(stack[2]))))
}

// pullState: a traditional container has no sessions to pull from.
func (h *host) pullState(_ context.Context, _ api.Module, stack []uint64) {
	stack[0] = hostcall.Status(abi.ErrUnavailable)
}
