// Package linearcheck records concurrent histories of key/value operations
// and checks them for linearizability with porcupine. Tests of every layer use
// it: the state store directly, the session runtime through wasm guests, and
// the control plane across primary and secondary containers.
package linearcheck

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is an operation of the model.
type Kind int

const (
	// Get reads a key; Output.Value is what it read ("" when absent).
	Get Kind = iota
	// Put writes Input.Value.
	Put
	// Append writes the old value followed by Input.Value; Output.Value is
	// the old value.
	Append
	// Incr treats the value as a decimal integer ("" is 0), adds one, and
	// returns the new value in Output.Value.
	Incr
)

// Input is what an operation was asked to do.
type Input struct {
	Kind  Kind
	Key   string
	Value string
}

// Output is what an operation returned. Unknown marks an operation whose
// outcome the client could not observe (a timeout, a lost connection): it
// may or may not have taken effect, and its output is not checked.
type Output struct {
	Value   string
	Unknown bool
}

// Model is the sequential specification: a map of keys to string values,
// partitioned by key.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		parts := make([][]porcupine.Operation, 0, len(order))
		for _, k := range order {
			parts = append(parts, byKey[k])
		}
		return parts
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(Input), output.(Output)
		next, want := step(st, in)
		return out.Unknown || out.Value == want, next
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
		names := [...]string{"get", "put", "append", "incr"}
		return fmt.Sprintf("%s(%q, %q) -> %q unknown=%v", names[in.Kind], in.Key, in.Value, out.Value, out.Unknown)
	},
}

// step applies in to state st and returns the next state and the output a
// correct system returns.
func step(st string, in Input) (next, out string) {
	switch in.Kind {
	case Put:
		return in.Value, ""
	case Append:
		return st + in.Value, st
	case Incr:
		n, _ := strconv.ParseInt(st, 10, 64) // "" reads as 0
		s := strconv.FormatInt(n+1, 10)
		return s, s
	}
	return st, st
}

// History records operations from many goroutines.
type History struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

// NewHistory returns an empty history whose clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the history's clock: nanoseconds since it started. Take it right
// before calling an operation and right after it returns.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records one operation. For an Unknown output, the return time is
// infinite: the operation may take effect at any point after its call.
func (h *History) Add(client int, in Input, call int64, out Output, ret int64) {
	if out.Unknown {
		ret = math.MaxInt64
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
}

// Len is the number of recorded operations.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Check fails t unless the history is linearizable. A check that does not
// finish within timeout fails too: an unknown verdict is not a pass.
func (h *History) Check(t testing.TB, timeout time.Duration) {
	t.Helper()
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	if len(ops) == 0 {
		t.Fatal("linearizability check of an empty history")
	}
	switch res := porcupine.CheckOperationsTimeout(Model, ops, timeout); res {
	case porcupine.Ok:
		t.Logf("history of %d operations is linearizable", len(ops))
	case porcupine.Illegal:
		t.Fatalf("history of %d operations is NOT linearizable", len(ops))
	default:
		t.Fatalf("linearizability check of %d operations gave %q within %v", len(ops), res, timeout)
	}
}
