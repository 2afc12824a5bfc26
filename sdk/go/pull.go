package xfaas

// opPullState is the host call of Pull, as a StateError names it.
const opPullState = "pull_state"

// Pull reads key from the session of another function: session is a session
// id (32 lowercase hex digits, or "default"), as [Request.Session] returns
// it in that function. The read is mode 0, served directly by that
// session's primary container (pull mode); the platform finds the primary,
// also after the session moved. ok is false when the key is absent.
//
// function must be listed in the calling function's depends_on config:
// otherwise, or when session is not a session id, Pull fails with
// ErrInvalid. A key past 64 KiB is ErrKeyTooLarge. It fails with
// ErrUnavailable when no primary of the session is known or it cannot be
// reached. Errors are *StateError values.
//
// A pull costs a network round trip (tens of microseconds), where a read of
// the function's own state costs about 0.1 µs.
func Pull(function, session, key string) (val []byte, ok bool, err error) {
	val, st := readCopy(func(buf []byte) int32 {
		return hostPullState(function, session, key, buf)
	})
	switch {
	case st == statusAbsent:
		return nil, false, nil
	case st < 0:
		return nil, false, &StateError{Op: opPullState, Key: key, Err: Errno(st), Function: function, Session: session}
	}
	return val, true, nil
}
