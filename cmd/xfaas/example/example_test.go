package example

import (
	"bytes"
	"testing"

	"github.com/xfaas/xfaas/internal/testwasm"
)

func TestEmbeddedCounterIsCurrent(t *testing.T) {
	if fresh := testwasm.Bytes(t, "c/counter"); !bytes.Equal(fresh, Counter) {
		t.Fatalf("cmd/xfaas/example/counter.wasm (%d bytes) differs from a fresh build of sdk/c/examples/counter.c (%d bytes): "+
			"run `go run ./internal/testwasm/cmd/buildwasm -out build/wasm && cp build/wasm/c/counter.wasm cmd/xfaas/example/`",
			len(Counter), len(fresh))
	}
}
