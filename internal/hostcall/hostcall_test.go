package hostcall

import (
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/xfaas/xfaas/internal/abi"
)

// A runtime that leaves an import of the ABI unimplemented is refused at
// start, not when a guest first calls it.
func TestInstantiateNeedsEveryImport(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	fns := map[string]api.GoModuleFunc{}
	for name := range abi.Imports {
		if name != abi.PullState {
			fns[name] = func(context.Context, api.Module, []uint64) {}
		}
	}
	if err := Instantiate(ctx, rt, fns); err == nil || !strings.Contains(err.Error(), abi.PullState) {
		t.Fatalf("Instantiate without %s: %v", abi.PullState, err)
	}
	fns[abi.PullState] = func(context.Context, api.Module, []uint64) {}
	if err := Instantiate(ctx, rt, fns); err != nil {
		t.Fatal(err)
	}
}
