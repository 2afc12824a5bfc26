//go:build !wasip1

// Package fakehost is a FAKE xfaas host: an in-memory imitation of the host
// calls of the xfaas ABI, so that the SDK, and functions built with it, run
// under go test on the development machine. Package xfaas calls it instead of
// the real host off wasm; package xfaastest drives it.
//
// It is not the platform, but its state calls answer as the platform's do
// (proxy/host.go and proxy/state in the xfaas repository): the same status
// for the same call, with the platform's key, value and total size limits.
// It keeps one session and runs one request at a time, and its
// linearizable mode (mode 1) is optimistic only: a read records the key's
// version and the commit conflicts if the key changed since; a commit
// without a section is a blind write. Nothing waits for a lock, so
// deadlocks, lock timeouts and lost connections to a primary happen only
// when injected with FailNext, which then has the consequences the
// platform's would. Other functions' sessions, which pull_state reads, are
// plain maps that the test fills with SetRemote.
package fakehost

import (
	"errors"
	"strconv"
	"sync"
)

// Status codes of the xfaas ABI.
const (
	statusOK            = 0
	statusAbsent        = -1
	statusConflict      = -2
	statusDeadlock      = -3
	statusLockTimeout   = -4
	statusKeyTooLarge   = -5
	statusValueTooLarge = -6
	statusInvalid       = -7
	statusUnavailable   = -8
	statusStateFull     = -9
)

// State modes of the xfaas ABI.
const (
	modeCausal       = 0
	modeLinearizable = 1
)

// The platform's limits (the defaults of proxy/state.Options, which the
// platform uses).
const (
	// MaxKeySize bounds a key: 1 KiB.
	MaxKeySize = 1 << 10
	// MaxValueSize bounds a value: 4 MiB.
	MaxValueSize = 4 << 20
	// MaxStateSize bounds the total size of a session's keys and values:
	// 1 GiB.
	MaxStateSize = 1 << 30
	// maxPullKey is the longest key pull_state sends to a primary; a longer
	// one is too large (proxy's maxPullKey). A key between MaxKeySize and
	// this is absent, as no session holds one.
	maxPullKey = 64 << 10
	// MaxOutputSize bounds the response body: 6 MiB.
	MaxOutputSize = 6 << 20
	// MaxLogLine bounds a log line: the platform drops the bytes past 4 KiB.
	MaxLogLine = 4 << 10
)

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

	mu       sync.Mutex // guards the fields below
	handle   func() int32
	input    [3][]byte // request body, session id, function name
	output   []byte
	values   map[string]entry
	version  uint64 // the version of the last write
	bytes    int64  // the total size of the keys and values
	maxBytes int64  // MaxStateSize; smaller in this package's tests
	logs     []LogLine
	fail     map[string]int32 // host call name -> status of its next call
	deps     map[string]bool  // depends_on
	remote   map[remoteSession]map[string][]byte

	// The running request's linearizable work, as the platform keeps it
	// (proxy/state.Txn, and proxy's remoteState on a secondary).
	open    map[string]uint64 // critical sections: key -> version read (0: absent)
	aborted map[string]int32  // keys whose sections a deadlock or lock timeout aborted
	linear  bool              // the request made a mode 1 call
	lost    bool              // its connection to the primary broke after that
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
	h.endLocked()
	h.mu.Unlock()
	if handle == nil {
		return nil, 0, ErrNoHandle
	}

	status = handle()

	h.mu.Lock()
	defer h.mu.Unlock()
	h.endLocked()
	return h.output, status, nil
}

// endLocked forgets the request's linearizable work: its open sections
// apply nothing.
func (h *Host) endLocked() {
	clear(h.open)
	clear(h.aborted)
	h.linear, h.lost = false, false
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

// SetOutput implements the set_output host call. An output past
// MaxOutputSize is refused and leaves the earlier one.
func (h *Host) SetOutput(buf []byte) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.injected("set_output"); ok {
		return st
	}
	if len(buf) > MaxOutputSize {
		return statusValueTooLarge
	}
	h.output = append([]byte(nil), buf...)
	return statusOK
}

// ReadState implements the read_state host call. In mode 0 it only reads:
// a key the platform would refuse is absent, as no session holds one. In
// mode 1 it opens a section on key, or continues the open one (which keeps
// the version first read), and ends key's abort.
func (h *Host) ReadState(key string, buf []byte, mode int32) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.injectedState("read_state", key, mode); ok {
		return st
	}
	switch mode {
	case modeCausal:
	case modeLinearizable:
		if st := h.linearLocked(); st != statusOK {
			return st
		}
		if st := checkKey(key); st != statusOK {
			return st
		}
		if _, open := h.open[key]; !open {
			h.open[key] = h.values[key].version
		}
		delete(h.aborted, key)
	default:
		return statusInvalid
	}
	e, ok := h.values[key]
	if !ok {
		return statusAbsent
	}
	return copyOut(buf, e.val)
}

// WriteState implements the write_state host call.
func (h *Host) WriteState(key string, val []byte, mode int32) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.injectedState("write_state", key, mode); ok {
		return st
	}
	return h.commitLocked(key, val, mode, func() int32 { return h.putLocked(key, val) })
}

// DeleteState implements the delete_state host call. Deleting an absent
// key succeeds.
func (h *Host) DeleteState(key string, mode int32) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.injectedState("delete_state", key, mode); ok {
		return st
	}
	return h.commitLocked(key, nil, mode, func() int32 { h.deleteLocked(key); return statusOK })
}

// commitLocked runs apply for a write (of val) or a delete of key in mode,
// after the platform's checks in their order (proxy/state.Txn.commit). In
// mode 1 it fails with the error that aborted key's section if one did;
// else it closes key's open section, conflicting if the key changed since
// its read, and without a section it is a blind write. A refused key or
// value leaves the section open.
func (h *Host) commitLocked(key string, val []byte, mode int32, apply func() int32) int32 {
	switch mode {
	case modeCausal:
	case modeLinearizable:
		if st := h.linearLocked(); st != statusOK {
			return st
		}
	default:
		return statusInvalid
	}
	if st := checkWrite(key, val); st != statusOK {
		return st
	}
	if mode == modeLinearizable {
		if st, ok := h.aborted[key]; ok {
			return st
		}
		if read, open := h.open[key]; open {
			delete(h.open, key)
			if h.values[key].version != read {
				return statusConflict
			}
		}
	}
	return apply()
}

// linearLocked records that the request makes a mode 1 call, and refuses
// it once the request lost its connection to the primary.
func (h *Host) linearLocked() int32 {
	h.linear = true
	if h.lost {
		return statusUnavailable
	}
	return statusOK
}

// putLocked sets key to val within the total size limit, as the
// platform's store counts it: the keys and values present.
func (h *Host) putLocked(key string, val []byte) int32 {
	delta := int64(len(val))
	if old, ok := h.values[key]; ok {
		delta -= int64(len(old.val))
	} else {
		delta += int64(len(key))
	}
	if delta > 0 && h.bytes+delta > h.maxBytes {
		return statusStateFull
	}
	h.bytes += delta
	h.version++
	h.values[key] = entry{val: append([]byte(nil), val...), version: h.version}
	return statusOK
}

func (h *Host) deleteLocked(key string) {
	if old, ok := h.values[key]; ok {
		h.bytes -= int64(len(key) + len(old.val))
		delete(h.values, key)
	}
}

// checkKey returns the status of a key that a write, a delete or a mode 1
// read refuses, or statusOK.
func checkKey(key string) int32 {
	switch {
	case key == "":
		return statusInvalid
	case len(key) > MaxKeySize:
		return statusKeyTooLarge
	}
	return statusOK
}

// checkWrite returns the status of a key or value (nil for a delete) that
// a write or delete refuses, or statusOK.
func checkWrite(key string, val []byte) int32 {
	if st := checkKey(key); st != statusOK {
		return st
	}
	if len(val) > MaxValueSize {
		return statusValueTooLarge
	}
	return statusOK
}

// PullState implements the pull_state host call: like the platform, it
// refuses a function not declared with DependsOn and a malformed session id
// (invalid), then a key past 64 KiB (too large); a session that SetRemote
// never filled has no primary (unavailable).
func (h *Host) PullState(function, session, key string, buf []byte) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st, ok := h.injected("pull_state"); ok {
		return st
	}
	switch {
	case !h.deps[function] || !validSessionID(session):
		return statusInvalid
	case len(key) > maxPullKey:
		return statusKeyTooLarge
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
// a primary for pull_state. Like Set, it panics if the platform would
// refuse the write.
func (h *Host) SetRemote(function, session, key string, val []byte) {
	mustWrite("SetRemote", key, checkWrite(key, val))
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

// Log implements the log host call: it keeps the first MaxLogLine bytes of
// msg.
func (h *Host) Log(level int32, msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, LogLine{Level: level, Msg: msg[:min(len(msg), MaxLogLine)]})
}

// Get returns the value of key.
func (h *Host) Get(key string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.values[key]
	return append([]byte(nil), e.val...), ok
}

// Set sets key to val, as a concurrent request would: a section open on key
// will conflict. It panics if the platform would refuse the write, since
// no session could hold the result: an empty key, a key past MaxKeySize, a
// value past MaxValueSize, or a state past MaxStateSize.
func (h *Host) Set(key string, val []byte) {
	mustWrite("Set", key, checkWrite(key, val))
	h.mu.Lock()
	defer h.mu.Unlock()
	mustWrite("Set", key, h.putLocked(key, val))
}

// mustWrite panics, saying why, if st is a refused write of key by the
// test helper named op.
func mustWrite(op, key string, st int32) {
	why := map[int32]string{
		statusInvalid:       "an empty key",
		statusKeyTooLarge:   "a key past 1 KiB",
		statusValueTooLarge: "a value past 4 MiB",
		statusStateFull:     "a session state past 1 GiB",
	}[st]
	if st != statusOK {
		panic("fakehost: " + op + "(" + strconv.Quote(key) + "): the platform refuses " + why)
	}
}

// Logs returns the lines logged since the last Reset.
func (h *Host) Logs() []LogLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]LogLine(nil), h.logs...)
}

// FailNext makes the next call of the host function named call (an import
// name of the ABI, such as "write_state") fail with status. A failed state
// call has the consequences the platform's failure has:
//   - deadlock or lock timeout aborts every open section, and a failed mode
//     1 read aborts the section it was to open: a later commit of one of
//     those keys fails with the same status, until the request reads the
//     key in mode 1 again;
//   - unavailable, in a request that made a mode 1 call (this one
//     included), is a secondary's connection to the primary breaking: the
//     request's sections are lost and every later mode 1 call of the
//     request fails as unavailable; mode 0 calls go on;
//   - key too large, value too large and invalid leave the sections as
//     they are, since the platform refuses the arguments first;
//   - any other status of a mode 1 commit closes its section.
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
	h.bytes, h.maxBytes = 0, MaxStateSize
	h.open = make(map[string]uint64)
	h.aborted = make(map[string]int32)
	h.linear, h.lost = false, false
	h.fail = make(map[string]int32)
	h.deps = make(map[string]bool)
	h.remote = make(map[remoteSession]map[string][]byte)
	h.logs = nil
	h.output = nil
}

// injected returns the failure injected for call, if any, consuming it.
func (h *Host) injected(call string) (int32, bool) {
	st, ok := h.fail[call]
	if ok {
		delete(h.fail, call)
	}
	return st, ok
}

// injectedState returns the failure injected for a state call on key in
// mode, if any, consuming it, and gives it the consequences that FailNext
// describes.
func (h *Host) injectedState(call, key string, mode int32) (int32, bool) {
	st, ok := h.injected(call)
	if !ok {
		return 0, false
	}
	linear := mode == modeLinearizable
	if linear {
		h.linear = true
	}
	switch st {
	case statusDeadlock, statusLockTimeout:
		for k := range h.open {
			h.aborted[k] = st
		}
		clear(h.open)
		if linear && call == "read_state" {
			h.aborted[key] = st // the read that was to open a section failed
		}
	case statusUnavailable:
		if h.linear {
			h.lost = true
			clear(h.open)
		}
	case statusKeyTooLarge, statusValueTooLarge, statusInvalid:
		// The platform refuses these arguments before it reaches a section.
	default:
		if linear && call != "read_state" {
			delete(h.open, key) // a failed commit closes its section
		}
	}
	return st, true
}

// copyOut copies up to len(buf) bytes of val to buf and returns val's full
// length, the contract of read_input and read_state.
func copyOut(buf, val []byte) int32 {
	copy(buf, val)
	return int32(len(val))
}
