// Command kv is a key/value store over the session state, in mode 0.
//
//	get K     outputs K's value; a function error "not found" when absent
//	set K V   sets K to V (the rest of the body, spaces included), outputs ok
//	del K     deletes K, outputs ok
//
// The body is trimmed of surrounding white space.
package main

import (
	"bytes"
	"errors"

	xfaas "github.com/xfaas/xfaas/sdk/go"
)

var (
	errUsage    = errors.New("usage: get K | set K V | del K")
	errNotFound = errors.New("not found")
	ok          = []byte("ok")
)

func init() { xfaas.Handle(handle) }

func main() {}

func handle(req *xfaas.Request) ([]byte, error) {
	cmd, rest, _ := bytes.Cut(bytes.Trim(req.Input(), " \t\r\n"), []byte(" "))
	k, val, hasVal := bytes.Cut(rest, []byte(" "))
	key := string(k)
	if key == "" {
		return nil, errUsage
	}
	st := req.State()
	switch {
	case string(cmd) == "get" && !hasVal:
		val, found, err := st.Get(key)
		if err == nil && !found {
			err = errNotFound
		}
		return val, err
	case string(cmd) == "set":
		return ok, st.Set(key, val)
	case string(cmd) == "del" && !hasVal:
		return ok, st.Delete(key)
	}
	return nil, errUsage
}
