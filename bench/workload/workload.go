// Package workload holds the WebAssembly functions that `xfaas bench` runs
// on both systems, so that xfaas and the Redis-backed baseline execute the
// very same modules: the paper's read-only (RO), read-modify-write (RMW)
// and linearizable read-modify-write (RMW-Linear) workloads of
// sdk/c/examples, and two guests of internal/testwasm/testdata: stateloop
// (repeats one state read, to time a single host call) and spin (busy for
// a given number of milliseconds, for the burst and scaling experiments).
//
// The modules are built with the recipe of internal/testwasm and embedded,
// so the benchmark needs no C toolchain; a test rebuilds them and fails
// when a copy is stale:
//
//	go run ./internal/testwasm/cmd/buildwasm -out build/wasm c/ro c/rmw c/rmw_linear test/stateloop test/spin
//	cp build/wasm/c/{ro,rmw,rmw_linear}.wasm build/wasm/test/{stateloop,spin}.wasm bench/workload/
package workload

import (
	_ "embed"
	"fmt"
	"strconv"
)

var (
	//go:embed ro.wasm
	roWasm []byte
	//go:embed rmw.wasm
	rmwWasm []byte
	//go:embed rmw_linear.wasm
	rmwLinearWasm []byte
	//go:embed stateloop.wasm
	stateloopWasm []byte
	//go:embed spin.wasm
	spinWasm []byte
)

// Workload is one of the paper's state workloads.
type Workload struct {
	// Name is the key in results: "ro", "rmw" or "rmw_linear".
	Name string
	// Title is the paper's name: "RO", "RMW", "RMW-Linear".
	Title string
	// Guest is the testwasm name of the module's source.
	Guest string
	// Module is the wasm module.
	Module []byte
}

// Init is the request body that writes a value of size bytes to the
// workload's key; every workload accepts it.
func Init(size int) []byte { return []byte("init " + strconv.Itoa(size)) }

// Request is the body of one measured request: the workloads ignore it
// (anything but "init ..." runs the workload and answers a short number).
var Request = []byte("run")

// All returns the three state workloads in the paper's order.
func All() []Workload {
	return []Workload{
		{Name: "ro", Title: "RO", Guest: "c/ro", Module: roWasm},
		{Name: "rmw", Title: "RMW", Guest: "c/rmw", Module: rmwWasm},
		{Name: "rmw_linear", Title: "RMW-Linear", Guest: "c/rmw_linear", Module: rmwLinearWasm},
	}
}

// ByName returns the workload called name.
func ByName(name string) (Workload, error) {
	for _, w := range All() {
		if w.Name == name {
			return w, nil
		}
	}
	return Workload{}, fmt.Errorf("unknown workload %q (ro, rmw, rmw_linear)", name)
}

// StateLoop is the stateloop guest: "r KEY N" reads KEY (mode 0) N times,
// "w KEY SIZE N" writes a SIZE-byte value N times; it answers N.
func StateLoop() []byte { return stateloopWasm }

// Spin is the spin guest: the body N keeps the worker busy for N
// milliseconds of wall time.
func Spin() []byte { return spinWasm }

// Embedded maps testwasm guest names to the embedded modules, for the test
// that checks they are current.
func Embedded() map[string][]byte {
	m := map[string][]byte{"test/stateloop": stateloopWasm, "test/spin": spinWasm}
	for _, w := range All() {
		m[w.Guest] = w.Module
	}
	return m
}
