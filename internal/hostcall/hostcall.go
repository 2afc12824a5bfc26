// Package hostcall is the mechanics shared by every runtime that
// implements the xfaas host module (internal/abi): registering the ABI's
// imports as api.GoModuleFunc (no reflection, no allocation per call), and
// reading and writing guest memory with the ABI's status codes. The session
// runtime (proxy) and the bench's Redis-backed baseline implement the same
// imports with it, so both present guests the same module.
package hostcall

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/xfaas/xfaas/internal/abi"
)

// Instantiate adds the host module to rt with fns, which must implement
// every import of abi.Imports.
func Instantiate(ctx context.Context, rt wazero.Runtime, fns map[string]api.GoModuleFunc) error {
	b := rt.NewHostModuleBuilder(abi.HostModule)
	for name, sig := range abi.Imports {
		fn := fns[name]
		if fn == nil {
			return fmt.Errorf("host module: no function for import %s", name)
		}
		b.NewFunctionBuilder().WithGoModuleFunction(fn, i32s(sig.Params), i32s(sig.Results)).Export(name)
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

// Status is an ABI status code as a result on the stack.
func Status(code int32) uint64 { return api.EncodeI32(code) }

// View returns guest memory [ptr, ptr+n) without copying; ok is false when
// n is negative or the range is out of bounds.
func View(mod api.Module, ptr, n uint64) ([]byte, bool) {
	if int32(n) < 0 {
		return nil, false
	}
	return mod.Memory().Read(uint32(ptr), uint32(n))
}

// CopyOut copies up to n bytes of src to guest memory at ptr and returns
// len(src) (the full length) as a result, or abi.ErrInvalid.
func CopyOut(mod api.Module, ptr, n uint64, src []byte) uint64 {
	if int32(n) < 0 {
		return Status(abi.ErrInvalid)
	}
	k := min(len(src), int(uint32(n)))
	if k > 0 && !mod.Memory().Write(uint32(ptr), src[:k]) {
		return Status(abi.ErrInvalid)
	}
	return Status(int32(len(src)))
}
