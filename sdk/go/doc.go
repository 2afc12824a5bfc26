// Package xfaas is the Go SDK for xfaas functions: WebAssembly modules that
// serve requests of a session and keep the session's state in the platform.
//
// A function registers its handler from an init function and has an empty
// main, because a module built with -buildmode=c-shared runs package
// initialization when it is instantiated but never calls main:
//
//	package main
//
//	import "github.com/xfaas/xfaas/sdk/go"
//
//	func init() {
//		xfaas.Handle(func(req *xfaas.Request) ([]byte, error) {
//			return append([]byte("hello, "), req.Input()...), nil
//		})
//	}
//
//	func main() {}
//
// Build it with Go 1.24 or newer:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fn.wasm .
//
// # State
//
// [Request.State] is the state of the request's session: byte values under
// string keys, shared by all requests of the session. Plain operations
// ([State.Get], [State.Set], [State.Delete]) are mode 0: each is atomic and
// one request's operations apply in program order, but concurrent requests
// interleave between them, so a read-modify-write made of them can lose
// updates. [State.Update] is a linearizable read-modify-write (mode 1): the
// platform either locks the key for its duration (pessimistic) or checks at
// the write that nobody changed it (optimistic), as configured per function;
// Update retries conflicts itself. [State.GetLinear], [State.SetLinear] and
// [State.DeleteLinear] are the raw mode 1 calls Update is made of.
//
// Failed state operations return a [*StateError] wrapping one of the [Errno]
// values, so callers can branch with errors.Is(err, xfaas.ErrConflict).
//
// # Testing
//
// On any GOOS but wasip1 the host calls go to an in-memory fake host, and
// package [github.com/xfaas/xfaas/sdk/go/xfaastest] invokes the registered
// handler against it, so functions can be unit tested with go test.
//
// The ABI under this package is documented in sdk/c/xfaas.h.
package xfaas
