package state

import (
	"context"
	"errors"

	"github.com/xfaas/xfaas/internal/abi"
)

var codes = []struct {
	err  error
	code int32
}{
	{ErrConflict, abi.ErrConflict},
	{ErrDeadlock, abi.ErrDeadlock},
	{ErrLockTimeout, abi.ErrLockTimeout},
	{ErrKeyTooLarge, abi.ErrKeyTooLarge},
	{ErrValueTooLarge, abi.ErrValueTooLarge},
	{ErrInvalid, abi.ErrInvalid},
	{ErrUnavailable, abi.ErrUnavailable},
	{ErrStateFull, abi.ErrStateFull},
}

// Code maps an error of a state operation to its ABI status. A context
// error (the request timed out or was cancelled while waiting) is a lock
// timeout; anything unknown means the state could not be reached.
func Code(err error) int32 {
	if err == nil {
		return abi.OK
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return abi.ErrLockTimeout
	}
	return abi.ErrUnavailable
}

// ErrorOf is the inverse of Code: the sentinel error of an ABI status, nil
// for OK and for non-negative values.
func ErrorOf(code int32) error {
	if code >= 0 {
		return nil
	}
	for _, c := range codes {
		if c.code == code {
			return c.err
		}
	}
	return ErrUnavailable
}
