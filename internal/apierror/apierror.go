// Package apierror defines the error kinds of the xfaas public API and their
// HTTP statuses. Every layer (session runtime, wire protocol, control plane)
// reports failures as an *Error with one of these kinds, so a trap in a worker
// reaches the HTTP client as the same kind and status it started as.
//
// The kinds and statuses are the public contract of DESIGN.md: errors are JSON
// {"error": "...", "kind": "..."}.
package apierror

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Kind names a class of failure. Its string is what clients see in "kind".
type Kind string

// The kinds of DESIGN.md, with the status each maps to.
const (
	BadRequest    Kind = "bad_request"    // 400: malformed input, invalid module or config
	Unauthorized  Kind = "unauthorized"   // 401: management call without a valid token
	BadHint       Kind = "bad_hint"       // 403: forged, tampered or foreign session hint
	NotFound      Kind = "not_found"      // 404: unknown function or session
	Conflict      Kind = "conflict"       // 409: optimistic transaction conflict
	Deadlock      Kind = "deadlock"       // 409: lock wait would deadlock or timed out
	TooLarge      Kind = "too_large"      // 413: payload, module, key, value or output too large
	Overloaded    Kind = "overloaded"     // 429: queue full; retry after a pause
	Trap          Kind = "trap"           // 500: the function trapped (the trap message)
	FunctionError Kind = "function_error" // 500: handle() returned non-zero
	Internal      Kind = "internal"       // 500: a platform fault
	Unavailable   Kind = "unavailable"    // 503: no capacity, or the session state is unreachable
	Timeout       Kind = "timeout"        // 504: the request ran past timeout_ms
)

var statuses = map[Kind]int{
	BadRequest:    http.StatusBadRequest,
	Unauthorized:  http.StatusUnauthorized,
	BadHint:       http.StatusForbidden,
	NotFound:      http.StatusNotFound,
	Conflict:      http.StatusConflict,
	Deadlock:      http.StatusConflict,
	TooLarge:      http.StatusRequestEntityTooLarge,
	Overloaded:    http.StatusTooManyRequests,
	Trap:          http.StatusInternalServerError,
	FunctionError: http.StatusInternalServerError,
	Internal:      http.StatusInternalServerError,
	Unavailable:   http.StatusServiceUnavailable,
	Timeout:       http.StatusGatewayTimeout,
}

// Status is the HTTP status of the kind; unknown kinds are 500.
func (k Kind) Status() int {
	if s, ok := statuses[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Known reports whether k is one of the kinds above.
func (k Kind) Known() bool {
	_, ok := statuses[k]
	return ok
}

// Error is a failure with a kind. Message is safe to show to the caller: it
// never contains a session label or another session's data.
type Error struct {
	Kind    Kind
	Message string
	// RetryAfter, in seconds, accompanies Overloaded and Unavailable.
	RetryAfter int
}

func (e *Error) Error() string { return e.Message }

// New returns an *Error of kind k with a formatted message.
func New(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err: the kind of the first *Error in its chain,
// Timeout for context deadlines, Internal otherwise.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Timeout
	}
	return Internal
}
