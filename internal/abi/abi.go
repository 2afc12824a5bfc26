// Package abi holds the numbers of the xfaas WebAssembly ABI that the host
// runtime and every SDK must agree on: the host module name, the import and
// export names, state modes, input argument indices, log levels and the
// negative status codes that host calls return.
//
// The table of imports is the public contract of DESIGN.md ("WebAssembly ABI");
// sdk/c/xfaas.h is the reference header for guest authors and repeats these
// values. Changing a value here is a breaking change for every deployed module.
package abi

// HostModule is the import module name of every xfaas host call.
const HostModule = "xfaas"

// Import and export names.
const (
	ReadInput   = "read_input"
	SetOutput   = "set_output"
	ReadState   = "read_state"
	WriteState  = "write_state"
	DeleteState = "delete_state"
	Log         = "log"
	// PullState reads a key of another function's session from that
	// session's primary (pull mode): pull_state(fn, fn_len, session,
	// session_len, key, key_len, buf, len) -> i32, a mode-0 read that
	// returns the value's length, ErrAbsent, ErrUnavailable when no primary
	// is known or reachable, ErrInvalid for a function the caller's
	// depends_on does not list, a malformed session id or a bad pointer.
	PullState = "pull_state"

	// Handle is the function every module exports: handle() -> i32, where 0
	// is success and anything else a function error.
	Handle = "handle"
)

// Signature is the shape of a host import: how many i32 parameters and
// results it has (every xfaas import takes and returns only i32).
type Signature struct{ Params, Results int }

// Imports are the host functions of module xfaas and their signatures.
var Imports = map[string]Signature{
	ReadInput:   {3, 1},
	SetOutput:   {2, 1},
	ReadState:   {5, 1},
	WriteState:  {5, 1},
	DeleteState: {3, 1},
	Log:         {3, 0},
	PullState:   {8, 1},
}

// State modes, the last argument of read_state, write_state and delete_state.
const (
	// ModeCausal (0): each operation on a key is atomic; one request's
	// operations apply in program order; concurrent requests interleave per
	// operation.
	ModeCausal = 0
	// ModeLinearizable (1): read_state opens a critical section on the key,
	// the matching write_state or delete_state commits and closes it.
	ModeLinearizable = 1
)

// Input arguments of read_input.
const (
	InputBody     = 0 // the request body
	InputSession  = 1 // the session id (hex pseudonym, never the label)
	InputFunction = 2 // the function name
	// InputHeaders is the HTTP request's headers, one "Name: value" line
	// each, names canonical and sorted: for hook functions, which compute
	// a session label from the request. Absent for other functions.
	InputHeaders = 3
)

// Log levels of the log host call.
const (
	LevelDebug = 0
	LevelInfo  = 1
	LevelWarn  = 2
	LevelError = 3
)

// Status codes returned by host calls. Non-negative values are successes
// (lengths for reads); every negative value is one of these.
const (
	OK = 0
	// ErrAbsent: the key (or input argument) does not exist.
	ErrAbsent = -1
	// ErrConflict: an optimistic commit found the key moved since its
	// read_state(k, 1); the section is closed, nothing was written.
	ErrConflict = -2
	// ErrDeadlock: waiting for the key's lock would deadlock; every open
	// section of the request was aborted and its locks released.
	ErrDeadlock = -3
	// ErrLockTimeout: the lock wait exceeded its bound; every open section
	// of the request was aborted and its locks released.
	ErrLockTimeout = -4
	// ErrKeyTooLarge: the key exceeds the platform's key size limit.
	ErrKeyTooLarge = -5
	// ErrValueTooLarge: the value (or output) exceeds its size limit.
	ErrValueTooLarge = -6
	// ErrInvalid: a bad mode, pointer or length (for pull_state also a
	// function not in depends_on or a malformed session id).
	ErrInvalid = -7
	// ErrUnavailable: the session state cannot be reached (a secondary lost
	// its primary, or pull_state found no reachable primary).
	ErrUnavailable = -8
	// ErrStateFull: the session's total state size limit was reached.
	ErrStateFull = -9
)
