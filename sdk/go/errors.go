package xfaas

import (
	"errors"
	"strconv"
)

// Errno is a negative status code returned by an xfaas host call. The
// exported constants are the codes a function may want to branch on; compare
// with errors.Is, since state operations wrap them in a *StateError.
type Errno int32

// Status codes of the xfaas ABI, with the values of sdk/c/xfaas.h.
const (
	// ErrConflict: an optimistic commit found the key changed since it was
	// read; the critical section is closed and nothing was written.
	ErrConflict Errno = -2
	// ErrDeadlock: waiting for the key's lock would deadlock; every open
	// critical section of the request was aborted and its locks released.
	ErrDeadlock Errno = -3
	// ErrLockTimeout: the lock wait exceeded its bound; every open critical
	// section of the request was aborted and its locks released.
	ErrLockTimeout Errno = -4
	// ErrKeyTooLarge: the key exceeds the platform's key size limit (1 KiB;
	// for Pull, 64 KiB: a longer key is absent).
	ErrKeyTooLarge Errno = -5
	// ErrValueTooLarge: the value (or output) exceeds its size limit
	// (4 MiB for a value).
	ErrValueTooLarge Errno = -6
	// ErrInvalid: a bad mode, pointer or length, or an empty key (a mode 0
	// read finds no such key); for Pull, a function that depends_on does
	// not list or a malformed session id.
	ErrInvalid Errno = -7
	// ErrUnavailable: the session state cannot be reached (a secondary
	// container lost its primary, or Pull found no reachable primary).
	// A secondary that lost its connection to the primary with critical
	// sections open fails every later mode 1 call of the request with it.
	ErrUnavailable Errno = -8
	// ErrStateFull: the session's total state size limit (1 GiB of keys and
	// values) was reached.
	ErrStateFull Errno = -9
)

// Error describes the status code.
func (e Errno) Error() string {
	switch e {
	case statusAbsent:
		return "absent"
	case ErrConflict:
		return "conflict"
	case ErrDeadlock:
		return "deadlock"
	case ErrLockTimeout:
		return "lock timeout"
	case ErrKeyTooLarge:
		return "key too large"
	case ErrValueTooLarge:
		return "value too large"
	case ErrInvalid:
		return "invalid argument"
	case ErrUnavailable:
		return "state unavailable"
	case ErrStateFull:
		return "state full"
	}
	return "status " + strconv.Itoa(int(e))
}

// A StateError records a failed state operation.
type StateError struct {
	Op   string // the host call: "read_state", "write_state", "delete_state" or "pull_state"
	Key  string
	Mode int   // 0 (causal) or 1 (linearizable)
	Err  Errno // the status code the host returned
	// Function and Session name the session that pull_state read from.
	Function, Session string
}

// Error reads like "xfaas: write_state("count", 1): conflict", or for a
// pull "xfaas: pull_state(orders, default, "total"): state unavailable".
func (e *StateError) Error() string {
	if e.Op == opPullState {
		return "xfaas: " + e.Op + "(" + e.Function + ", " + e.Session + ", " + strconv.Quote(e.Key) + "): " + e.Err.Error()
	}
	return "xfaas: " + e.Op + "(" + strconv.Quote(e.Key) + ", " + strconv.Itoa(e.Mode) + "): " + e.Err.Error()
}

// Unwrap returns the status code, for errors.Is.
func (e *StateError) Unwrap() error { return e.Err }

// stateError wraps a negative status of a state operation.
func stateError(op, key string, mode int, st int32) error {
	return &StateError{Op: op, Key: key, Mode: mode, Err: Errno(st)}
}

// ErrSkip, returned by the function given to [State.Update], closes the
// critical section without changing the key; Update then returns nil.
var ErrSkip = errors.New("xfaas: skip update")

// ErrDelete, returned by the function given to [State.Update], deletes the
// key in the critical section (delete_state(key, 1)).
var ErrDelete = errors.New("xfaas: delete key")
