//go:build !wasip1

// Package fakehost is a FAKE xfaas host: an in-memory imitation of the host
// calls of the xfaas ABI, so that the SDK, and functions built with it, run
// under go test on the development machine. Package xfaas calls it instead of
// the real host off wasm; package xfaastest drives it.
//
// It is not the platform. It keeps one session and runs one request at a
// time, and its linearizable mode (mode 1) is optimistic only: a read
// records the key's version and the commit conflicts if the key changed
// since; nothing waits for a lock, so deadlocks and lock timeouts happen only
// when injected with FailNext. Other functions' sessions, which pull_state
// reads, are plain maps that the test fills with SetRemote.
package fakehost

import (
	"errors"
	"sync"
)

// Status codes of the xfaas ABI.
const (
	statusOK            = 0
	statusAbsent        = -1
	statusConflict      = -2
	statusDeadlock      = -3
	statusLockTimeout   = -4
	statusValueTooLarge = -6
	statusInvalid       = -7
	statusUnavailable   = -8
)

// MaxValueSize is the platform's limit on the size of a value: 4 MiB.
const MaxValueSize = 4 << 20

// Request is one invocation.
type Request struct {
	Body     []byte
	Session  string
	Function string
}

// LogLine is a line the function logged.
type LogLine struct {
	Level int32
	Msg   string
}

// ErrNoHandle means that no handle export was registered: package xfaas
// registers one when it is linked in.
var ErrNoHandle = errors.New("fakehost: no handle function registered")

// Host is a fake xfaas host. Its zero value is not ready; use New.
type Host struct {
	run sync.Mutex // held for a whole invocation: one request at a time

	mu      sync.Mutex // guards the fields below
	handle  func() int32
	input   [3][]byte // request body, session id, function name
	output  []byte
	values  map[string]entry
	version uint64            // the version of the last write
	open    map[string]uint64 // critical sections: key -> version read (0: absent)
	logs    []LogLine
	fail    map[string]int32 // host call name -> status of its next call
	deps    map[string]bool  // depends_on
	remote  map[remoteSession]map[string][]byte
}

// remoteSession is a session of another function, for pull_state.
type remoteSession struct{ function, session string }

type entry struct {
	val     []byte
	version uint64
}

// Default is the host that package xfaas calls off wasm.
var Default = New()

// New returns an empty host.
func New() *Host {
	h := &Host{}
	h.resetLocked()
	return h
}

// SetHandle registers the module's handle export.
func (h *Host) SetHandle(f func() int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.handle = f
}

// Invoke runs one request: it calls the handle export with req as input and
// returns the output and handle's result. Critical sections the request left
// open are dropped, applying nothing, as the platform does.
func (h *Host) Invoke(req Request) (out []byte, status int32, err error) {
	h.run.Lock()
	defer h.run.Unlock()

	h.mu.Lock()
	handle := h.handle
	h.input = [3][]byte{req.Body, []byte(req.Session), []byte(req.Function)}
	h.output = nil
	clear(h.open)
	h.mu.Unlock()
	if handle == nil {
		return nil, 0, ErrNoHandle
	}

	status = handle()

	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.open)
	return h.output, status, nil
}

// ReadInput implements the read_input host call.
func (h *Host) ReadInput(arg int32, buf []byte) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.injected("read_input"); ok {
		return st
	}
	if arg < 0 || int(arg) >= len(h.input) {
		return statusAbsent
	}
	return copyOut(buf, h.input[arg])
}

// SetOutput implements the set_output host call.
func (h *Host) SetOutput(buf []byte) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.injected("set_output"); ok {
		return st
	}
	h.output = append([]byte(nil), buf...)
	return statusOK
}

// ReadState implements the read_state host call. A mode 1 read of a key
// whose section is open reads it again and keeps the version first read.
func (h *Host) ReadState(key string, buf []byte, mode int32) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.injected("read_state"); ok {
		return st
	}
	if mode != 0 && mode != 1 {
		return statusInvalid
	}
	e, ok := h.values[key]
	if _, open := h.open[key]; mode == 1 && !open {
		h.open[key] = e.version
	}
	if !ok {
		return statusAbsent
	}
	return copyOut(buf, e.val)
}

// WriteState implements the write_state host call.
func (h *Host) WriteState(key string, val []byte, mode int32) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.commitLocked("write_state", key, mode, func() int32 {
		if len(val) > MaxValueSize {
			return statusValueTooLarge
		}
		h.version++
		h.values[key] = entry{val: append([]byte(nil), val...), version: h.version}
		return statusOK
	})
}

// DeleteState implements the delete_state host call.
func (h *Host) DeleteState(key string, mode int32) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.commitLocked("delete_state", key, mode, func() int32 {
		delete(h.values, key)
		return statusOK
	})
}

// commitLocked runs apply for a write or delete in mode: directly in mode 0;
// in mode 1 only within an open section of key, which it closes, and only if
// the key did not change since the section's read.
func (h *Host) commitLocked(call, key string, mode int32, apply func() int32) int32 {
	if mode != 0 && mode != 1 {
		return statusInvalid
	}
	read, open := h.open[key]
	if mode == 1 {
		if !open {
			return statusInvalid
		}
		delete(h.open, key)
	}
	if st, ok := h.injected(call); ok {
		return st
	}
	if mode == 1 && h.values[key].version != read {
		return statusConflict
	}
	return apply()
}

// PullState implements the pull_state host call: like the platform, it
// refuses a function not declared with DependsOn and a malformed session id
// (invalid), and a session that SetRemote never filled has no primary
// (unavailable).
func (h *Host) PullState(function, session, key string, buf []byte) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.injected("pull_state"); ok {
		return st
	}
	if !h.deps[function] || !validSessionID(session) {
		return statusInvalid
	}
	values, ok := h.remote[remoteSession{function, session}]
	if !ok {
		return statusUnavailable
	}
	val, ok := values[key]
	if !ok {
		return statusAbsent
	}
	return copyOut(buf, val)
}

// DependsOn sets the functions that pull_state may read from, as the
// depends_on config does.
func (h *Host) DependsOn(functions ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deps = make(map[string]bool)
	for _, fn := range functions {
		h.deps[fn] = true
	}
}

// SetRemote sets key to val in session of another function, which then has
// a primary for pull_state.
func (h *Host) SetRemote(function, session, key string, val []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := remoteSession{function, session}
	if h.remote[k] == nil {
		h.remote[k] = make(map[string][]byte)
	}
	h.remote[k][key] = append([]byte(nil), val...)
}

// validSessionID reports whether s is "default" or 32 lowercase hex digits.
func validSessionID(s string) bool {
	if s == "default" {
		return true
	}
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Log implements the log host call.
func (h *Host) Log(level int32, msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, LogLine{Level: level, Msg: msg})
}

// Get returns the value of key.
func (h *Host) Get(key string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.values[key]
	return append([]byte(nil), e.val...), ok
}

// Set sets key to val, as a concurrent request would: a section open on key
// will conflict.
func (h *Host) Set(key string, val []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version++
	h.values[key] = entry{val: append([]byte(nil), val...), version: h.version}
}

// Logs returns the lines logged since the last Reset.
func (h *Host) Logs() []LogLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]LogLine(nil), h.logs...)
}

// FailNext makes the next call of the host function named call (an import
// name of the ABI, such as "write_state") fail with status. Like the
// platform, a failure with the deadlock or lock timeout status aborts every
// open section, and a failed mode 1 commit closes its section.
func (h *Host) FailNext(call string, status int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail[call] = status
}

// Reset empties the state, the other sessions, the dependencies, the logs
// and the injected failures.
func (h *Host) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resetLocked()
}

func (h *Host) resetLocked() {
	h.values = make(map[string]entry)
	h.open = make(map[string]uint64)
	h.fail = make(map[string]int32)
	h.deps = make(map[string]bool)
	h.remote = make(map[remoteSession]map[string][]byte)
	h.logs = nil
	h.output = nil
}

// injected returns the failure injected for call, if any, consuming it.
func (h *Host) injected(call string) (int32, bool) {
	st, ok := h.fail[call]
	if !ok {
		return 0, false
	}
	delete(h.fail, call)
	if st == statusDeadlock || st == statusLockTimeout {
		clear(h.open)
	}
	return st, true
}

// copyOut copies up to len(buf) bytes of val to buf and returns val's full
// length, the contract of read_input and read_state.
func copyOut(buf, val []byte) int32 {
	copy(buf, val)
	return int32(len(val))
}
