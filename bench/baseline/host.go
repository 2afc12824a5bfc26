package baseline

import (
	"bytes"
	"context"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/xfaas/xfaas/internal/abi"
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
	b := rt.NewHostModuleBuilder(abi.HostModule)
	for name, sig := range abi.Imports {
		b.NewFunctionBuilder().WithGoModuleFunction(fns[name], i32s(sig.Params), i32s(sig.Results)).Export(name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

func i32s(n int) []api.ValueType {
	types := make([]api.ValueType, n)
	for i := range types {
		types[i] = api.ValueTypeI32
	}
	return types
}

func status(code int32) uint64 { return api.EncodeI32(code) }

func view(mod api.Module, ptr, n uint64) ([]byte, bool) {
	if int32(n) < 0 {
		return nil, false
	}
	return mod.Memory().Read(uint32(ptr), uint32(n))
}

// copyOut copies up to n bytes of src to guest memory at ptr and returns
// the full length, or ErrInvalid.
func copyOut(mod api.Module, ptr, n uint64, src []byte) uint64 {
	if int32(n) < 0 {
		return status(abi.ErrInvalid)
	}
	k := min(len(src), int(uint32(n)))
	if k > 0 && !mod.Memory().Write(uint32(ptr), src[:k]) {
		return status(abi.ErrInvalid)
	}
	return status(int32(len(src)))
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
		stack[0] = status(abi.ErrAbsent)
		return
	}
	stack[0] = copyOut(mod, stack[1], stack[2], src)
}

func (h *host) setOutput(_ context.Context, mod api.Module, stack []uint64) {
	if int(int32(stack[1])) > maxOutput {
		stack[0] = status(abi.ErrValueTooLarge)
		return
	}
	buf, ok := view(mod, stack[0], stack[1])
	if !ok {
		stack[0] = status(abi.ErrInvalid)
		return
	}
	h.c.output = append(h.c.output[:0], buf...)
	stack[0] = status(abi.OK)
}

func (h *host) readState(_ context.Context, mod api.Module, stack []uint64) {
	key, ok := view(mod, stack[0], stack[1])
	if !ok {
		stack[0] = status(abi.ErrInvalid)
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
			stack[0] = status(code(err))
			return
		}
	}
	if !present {
		stack[0] = status(abi.ErrAbsent)
		return
	}
	if len(val) > int(uint32(stack[3])) && int32(stack[3]) >= 0 {
		p.key, p.mode, p.val, p.ok = append(p.key[:0], key...), mode, val, true
	}
	stack[0] = copyOut(mod, stack[2], stack[3], val)
}

func (h *host) writeState(_ context.Context, mod api.Module, stack []uint64) {
	h.c.pending.val = nil
	key, ok1 := view(mod, stack[0], stack[1])
	val, ok2 := view(mod, stack[2], stack[3])
	if !ok1 || !ok2 {
		stack[0] = status(abi.ErrInvalid)
		return
	}
	stack[0] = status(code(h.st.put(h.c.ctx, key, val, api.DecodeI32(stack[4]))))
}

func (h *host) deleteState(_ context.Context, mod api.Module, stack []uint64) {
	h.c.pending.val = nil
	key, ok := view(mod, stack[0], stack[1])
	if !ok {
		stack[0] = status(abi.ErrInvalid)
		return
	}
	stack[0] = status(code(h.st.del(h.c.ctx, key, api.DecodeI32(stack[2]))))
}

// pullState: a traditional container has no sessions to pull from.
func (h *host) pullState(_ context.Context, _ api.Module, stack []uint64) {
	stack[0] = status(abi.ErrUnavailable)
}
