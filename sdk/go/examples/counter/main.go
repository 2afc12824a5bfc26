// Command counter is a linearizable counter in key "count", stored in
// decimal.
//
//	incr     (or an empty body) adds 1 and outputs the new value
//	incr N   adds N (a signed decimal) and outputs the new value
//	get      outputs the current value, 0 when absent (a mode 0 read)
//
// Increments are State.Update calls: read_state(count, 1) ...
// write_state(count, 1), redone on a conflict. The body is trimmed of
// surrounding white space.
package main

import (
	"errors"
	"strconv"
	"strings"

	xfaas "github.com/xfaas/xfaas/sdk/go"
)

const key = "count"

var (
	errUsage     = errors.New("usage: incr [N] | get")
	errBadNumber = errors.New("counter: bad number")
	errStored    = errors.New("counter: stored value is not a number")
)

func init() { xfaas.Handle(handle) }

func main() {}

func handle(req *xfaas.Request) ([]byte, error) {
	cmd, arg, _ := strings.Cut(strings.Trim(string(req.Input()), " \t\r\n"), " ")
	var n int64
	var err error
	switch {
	case cmd == "get" && arg == "":
		n, err = get(req.State())
	case cmd == "incr" || cmd == "":
		delta := int64(1)
		if arg != "" {
			if delta, err = strconv.ParseInt(arg, 10, 64); err != nil {
				return nil, errBadNumber
			}
		}
		n, err = incr(req.State(), delta)
	default:
		err = errUsage
	}
	if err != nil {
		return nil, err
	}
	return strconv.AppendInt(nil, n, 10), nil
}

// get reads the counter in mode 0.
func get(st *xfaas.State) (int64, error) {
	val, ok, err := st.Get(key)
	if err != nil {
		return 0, err
	}
	return parse(val, ok)
}

// incr adds delta to the counter linearizably and returns the new value.
func incr(st *xfaas.State, delta int64) (int64, error) {
	var n int64
	err := st.Update(key, func(old []byte, ok bool) ([]byte, error) {
		v, err := parse(old, ok)
		n = v + delta
		return strconv.AppendInt(nil, n, 10), err
	})
	return n, err
}

// parse decodes the stored counter; an absent one is 0.
func parse(val []byte, ok bool) (int64, error) {
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(val), 10, 64)
	if err != nil {
		return 0, errStored
	}
	return n, nil
}
