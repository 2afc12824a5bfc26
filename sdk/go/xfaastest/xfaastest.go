//go:build !wasip1

// Package xfaastest runs xfaas functions on the development machine, for
// unit tests: it invokes the handler registered with xfaas.Handle against a
// FAKE in-memory host and lets the test read and write the session state.
//
//	func TestIncr(t *testing.T) {
//		xfaastest.Reset()
//		out, err := xfaastest.Invoke("incr")
//		if err != nil || out != "1" {
//			t.Fatalf("incr = %q, %v; want 1", out, err)
//		}
//	}
//
// The fake host answers every state call with the status the platform
// would, within the platform's limits (1 KiB keys, 4 MiB values, 1 GiB of
// state). It keeps one session and runs one request at a time, so tests
// that use it must not run in parallel. Its linearizable mode is optimistic
// only: a mode 1 read records the key's version and the commit fails with
// xfaas.ErrConflict when the key changed since, which a test can provoke by
// calling Set from inside an xfaas.State.Update function; a commit of a key
// the request did not read in mode 1 is a blind write, as on the platform.
// Nothing waits for a lock and there is no connection to lose: deadlocks,
// lock timeouts and lost connections happen only when injected with
// FailNext. The platform itself is tested with the real modules.
//
// The package does not exist for GOOS=wasip1.
package xfaastest

import (
	xfaas "github.com/xfaas/xfaas/sdk/go"
	"github.com/xfaas/xfaas/sdk/go/internal/fakehost"
)

// The session id and function name of a Request that leaves them empty.
const (
	DefaultSession  = "00000000000000000000000000000000"
	DefaultFunction = "test"
)

// Request is one invocation.
type Request struct {
	Body     []byte
	Session  string // the session id; DefaultSession when empty
	Function string // the function name; DefaultFunction when empty
}

// FunctionError is the failure of a request whose handle export returned
// non-zero: the platform reports the output as the error's message.
type FunctionError struct {
	Status  int32  // what handle returned
	Message string // the output
}

// Error returns the message.
func (e *FunctionError) Error() string { return e.Message }

// Do runs the registered handler for req, as the platform runs one request,
// and returns its output, or a *FunctionError when the handler failed.
// Critical sections the handler left open are dropped, applying nothing.
func Do(req Request) ([]byte, error) {
	if req.Session == "" {
		req.Session = DefaultSession
	}
	if req.Function == "" {
		req.Function = DefaultFunction
	}
	out, status, err := fakehost.Default.Invoke(fakehost.Request(req))
	if err != nil {
		return nil, err
	}
	if status != 0 {
		return nil, &FunctionError{Status: status, Message: string(out)}
	}
	return out, nil
}

// Invoke runs the registered handler with body as the request body, like
// Do, and returns the output as a string.
func Invoke(body string) (string, error) {
	out, err := Do(Request{Body: []byte(body)})
	return string(out), err
}

// Get returns the value of key in the session state.
func Get(key string) (val []byte, ok bool) { return fakehost.Default.Get(key) }

// Set sets key to val in the session state, as a concurrent request would.
// It panics, saying why, if the platform would refuse the write: an empty
// key, a key past 1 KiB, a value past 4 MiB, or a state past 1 GiB.
func Set(key string, val []byte) { fakehost.Default.Set(key, val) }

// DependsOn sets the functions that xfaas.Pull may read from, as the
// function's depends_on config does; Reset clears them.
func DependsOn(functions ...string) { fakehost.Default.DependsOn(functions...) }

// SetRemote sets key to val in session (a session id) of another function,
// for xfaas.Pull to read. A session that SetRemote never filled has no
// primary: pulling from it fails with xfaas.ErrUnavailable. Like Set, it
// panics if the platform would refuse the write.
func SetRemote(function, session, key string, val []byte) {
	fakehost.Default.SetRemote(function, session, key, val)
}

// LogLine is a line that the function logged with xfaas.Log.
type LogLine struct {
	Level xfaas.Level
	Msg   string
}

// Logs returns the lines logged since the last Reset, each cut to its first
// 4 KiB as the platform cuts it.
func Logs() []LogLine {
	var lines []LogLine
	for _, l := range fakehost.Default.Logs() {
		lines = append(lines, LogLine{Level: xfaas.Level(l.Level), Msg: l.Msg})
	}
	return lines
}

// FailNext makes the next call of the host function named call (an import
// name of the ABI: "read_input", "set_output", "read_state", "write_state",
// "delete_state", "pull_state") fail with err. A failed state call has the
// consequences the platform's failure has:
//   - ErrDeadlock or ErrLockTimeout aborts every open critical section, and
//     a failed mode 1 read the section it was to open: committing one of
//     those keys then fails with the same error, until the request reads
//     the key in mode 1 again;
//   - ErrUnavailable in a request that made a mode 1 call (this one
//     included) is a secondary losing its connection to the primary: the
//     request's sections are gone and every later mode 1 call of the
//     request fails with ErrUnavailable, while mode 0 calls go on;
//   - ErrKeyTooLarge, ErrValueTooLarge and ErrInvalid leave the sections as
//     they are;
//   - any other error of a mode 1 commit closes its section.
func FailNext(call string, err xfaas.Errno) { fakehost.Default.FailNext(call, int32(err)) }

// Reset empties the session state, the other functions' sessions, the
// dependencies, the logs and the injected failures.
func Reset() { fakehost.Default.Reset() }
