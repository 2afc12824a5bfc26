package xfaas

import "errors"

// UpdateAttempts is how many times [State.Update] tries a read-modify-write
// whose commit conflicts before it gives up and returns the ErrConflict.
const UpdateAttempts = 32

// State is the state of one session: values under string keys, shared by
// every request of the session and kept by the platform between them. Get
// one from [Request.State]; the zero value is the state of the current
// request's session.
//
// Values are copied in and out of the function: a value returned by Get is
// the caller's, and Set keeps no reference to its argument.
type State struct{}

// Get returns the value of key (mode 0); ok is false when the key is absent.
func (s *State) Get(key string) (val []byte, ok bool, err error) {
	return s.get(key, modeCausal)
}

// Set sets key to val (mode 0).
func (s *State) Set(key string, val []byte) error {
	return s.set(key, val, modeCausal)
}

// Delete deletes key (mode 0). Deleting an absent key is not an error.
func (s *State) Delete(key string) error {
	return s.delete(key, modeCausal)
}

// GetLinear reads key and opens a critical section on it (mode 1), which
// [State.SetLinear] or [State.DeleteLinear] on the same key commits and
// closes. In between, the platform either holds the key's lock or, if the
// function is configured for optimistic locking, will fail the commit with
// ErrConflict when the key changed. A request that ends with a section open
// applies nothing of it. Prefer [State.Update], which pairs the calls and
// retries conflicts.
func (s *State) GetLinear(key string) (val []byte, ok bool, err error) {
	return s.get(key, modeLinearizable)
}

// SetLinear sets key to val and closes the critical section GetLinear opened
// on it (mode 1). On ErrConflict the section is closed and nothing was
// written; on ErrDeadlock or ErrLockTimeout every open section of the
// request was aborted. Committing an aborted section later fails with the
// same error, until GetLinear opens a new section on the key. On a key the
// request did not read with GetLinear, SetLinear is a blind linearizable
// write: it takes the key's lock for the write alone (pessimistic) or
// writes without validating anything (optimistic). ErrValueTooLarge leaves
// the section open: the platform refuses the value before the commit
// reaches the section.
func (s *State) SetLinear(key string, val []byte) error {
	return s.set(key, val, modeLinearizable)
}

// DeleteLinear deletes key and closes the critical section GetLinear opened
// on it (mode 1), or deletes it blindly as SetLinear writes, with the errors
// of SetLinear.
func (s *State) DeleteLinear(key string) error {
	return s.delete(key, modeLinearizable)
}

// Update replaces the value of key with fn's result, linearizably: it reads
// key opening a critical section (mode 1), calls fn with the value (ok is
// false when the key is absent), and commits what fn returns. When the
// commit conflicts, Update does it all again, up to UpdateAttempts times, so
// fn must have no effect but its result.
//
// fn may return ErrDelete to delete the key, ErrSkip to leave it as it is
// (Update returns nil), or another error to abandon the update (Update
// returns that error). When it leaves the key as it is, Update still closes
// the critical section, so that no lock is held for the rest of the request:
// it writes old back, or deletes the key if it was absent, which changes
// nothing.
//
// old is valid only during the call. fn may modify it and return it as the
// new value, which saves a copy of a large value, but must not modify it and
// then return an error, since closing the section writes old back.
//
// Update does not retry ErrDeadlock or ErrLockTimeout: they abort every open
// section of the request, and only the caller knows how to redo all of it.
// Nor does it retry ErrUnavailable: on a secondary that lost its connection
// to the primary, every mode 1 call fails with it until the request ends.
func (s *State) Update(key string, fn func(old []byte, ok bool) (val []byte, err error)) error {
	var err error
	for range UpdateAttempts {
		if err = s.update(key, fn); !errors.Is(err, ErrConflict) {
			break
		}
	}
	return err
}

// update is one attempt of Update.
func (s *State) update(key string, fn func(old []byte, ok bool) ([]byte, error)) error {
	sp := scratchPool.Get().(*[]byte)
	defer scratchPool.Put(sp)
	old, _, st := readValue(*sp, func(buf []byte) int32 {
		return hostReadState(key, buf, modeLinearizable)
	})
	if st < 0 && st != statusAbsent {
		return stateError("read_state", key, modeLinearizable, st)
	}
	ok := st >= 0
	val, err := fn(old, ok)
	switch {
	case err == nil:
		return s.SetLinear(key, val)
	case errors.Is(err, ErrDelete):
		return s.DeleteLinear(key)
	}
	// Closing the section cannot change the key; if it fails (a conflict,
	// say), the section is closed all the same or the host will close it at
	// the end of the request, and fn's error is the one that matters.
	if ok {
		_ = s.SetLinear(key, old)
	} else {
		_ = s.DeleteLinear(key)
	}
	if errors.Is(err, ErrSkip) {
		return nil
	}
	return err
}

func (s *State) get(key string, mode int) ([]byte, bool, error) {
	val, st := readCopy(func(buf []byte) int32 {
		return hostReadState(key, buf, int32(mode))
	})
	switch {
	case st == statusAbsent:
		return nil, false, nil
	case st < 0:
		return nil, false, stateError("read_state", key, mode, st)
	}
	return val, true, nil
}

func (s *State) set(key string, val []byte, mode int) error {
	if st := hostWriteState(key, val, int32(mode)); st < 0 {
		return stateError("write_state", key, mode, st)
	}
	return nil
}

func (s *State) delete(key string, mode int) error {
	if st := hostDeleteState(key, int32(mode)); st < 0 && st != statusAbsent {
		return stateError("delete_state", key, mode, st)
	}
	return nil
}
