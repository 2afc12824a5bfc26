package xfaas

import (
	"bytes"
	"strings"
)

// HandlerFunc computes the output of one request, at most 6 MiB (a larger
// one fails the request). A non-nil error fails the request: the platform
// reports a function error whose message is the error's text.
type HandlerFunc func(req *Request) ([]byte, error)

// handler is the function registered with Handle.
var handler HandlerFunc

// Handle registers h as the function's handler, replacing any earlier one.
// Call it from an init function: a module built with -buildmode=c-shared
// runs package initialization when it is instantiated, but never main.
func Handle(h HandlerFunc) {
	if h == nil {
		panic("xfaas: Handle of a nil HandlerFunc")
	}
	handler = h
}

// A Request is one invocation of the function. It is valid only until the
// handler returns.
type Request struct {
	input     []byte
	inputRead bool
	state     State
}

// Input returns the request body. It is read from the host on the first
// call; later calls return the same slice.
func (r *Request) Input() []byte {
	if !r.inputRead {
		r.input = readInput(inputBody)
		r.inputRead = true
	}
	return r.input
}

// Session returns the id of the request's session: a hex pseudonym of the
// session hint, never the label the client sealed in it.
func (r *Request) Session() string { return string(readInput(inputSession)) }

// Function returns the name the function is deployed under.
func (r *Request) Function() string { return string(readInput(inputFunction)) }

// Header returns the first value of the request's HTTP header name (any
// case), for hook functions, which compute the session label from the
// request; other functions see no headers.
func (r *Request) Header(name string) string {
	return headerValue(readInput(inputHeaders), name)
}

// headerValue finds name in "Name: value" lines.
func headerValue(lines []byte, name string) string {
	for len(lines) > 0 {
		line := lines
		if i := bytes.IndexByte(lines, '\n'); i >= 0 {
			line, lines = lines[:i], lines[i+1:]
		} else {
			lines = nil
		}
		k, v, ok := bytes.Cut(line, []byte(": "))
		if ok && strings.EqualFold(string(k), name) {
			return string(v)
		}
	}
	return ""
}

// State returns the state of the request's session.
func (r *Request) State() *State { return &r.state }

// readInput returns input argument arg, or nil if it does not exist.
func readInput(arg int32) []byte {
	val, _ := readCopy(func(buf []byte) int32 { return hostReadInput(arg, buf) })
	return val
}

// invoke runs the handler for one request and reports the outcome as the
// handle export must: 0 with the output set, or 1 with the output set to the
// error's text. A panic is not recovered: it ends the instance with the
// panic's message and stack on stderr, which the platform reports as a trap,
// and the platform discards the instance rather than reusing its memory.
func invoke() int32 {
	if handler == nil {
		return fail("xfaas: no handler: call xfaas.Handle from an init function")
	}
	out, err := handler(&Request{})
	if err != nil {
		return fail(err.Error())
	}
	if st := hostSetOutput(out); st < 0 {
		return fail("xfaas: set_output: " + Errno(st).Error())
	}
	return 0
}

// fail sets the output to msg and returns the status of a function error.
func fail(msg string) int32 {
	hostSetOutput([]byte(msg))
	return 1
}
