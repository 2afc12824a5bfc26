// Command ro is the read-only workload of the paper, over key "ro" in mode 0.
//
//	init N   writes an N-byte value ('x' repeated) to "ro", outputs ok
//	value    outputs the value itself
//	other    outputs the value's length in decimal (0 when absent), which
//	         keeps responses small whatever the value's size
//
// The body is trimmed of surrounding white space.
package main

import (
	"bytes"
	"errors"
	"strconv"

	xfaas "github.com/xfaas/xfaas/sdk/go"
)

const key = "ro"

var errBadSize = errors.New("ro: bad size")

func init() { xfaas.Handle(handle) }

func main() {}

func handle(req *xfaas.Request) ([]byte, error) {
	in := bytes.Trim(req.Input(), " \t\r\n")
	if cmd, arg, _ := bytes.Cut(in, []byte(" ")); string(cmd) == "init" {
		n, err := strconv.ParseUint(string(arg), 10, 31)
		if err != nil {
			return nil, errBadSize
		}
		return []byte("ok"), req.State().Set(key, bytes.Repeat([]byte("x"), int(n)))
	}
	val, _, err := req.State().Get(key)
	switch {
	case err != nil:
		return nil, err
	case string(in) == "value":
		return val, nil
	}
	return strconv.AppendInt(nil, int64(len(val)), 10), nil
}
