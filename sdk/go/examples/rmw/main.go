// Command rmw is the weak read-modify-write workload of the paper, over key
// "rmw" in mode 0.
//
//	init N   writes N zero bytes (at least 8) to "rmw", outputs ok
//	other    reads "rmw", adds 1 to the little-endian uint64 in its first 8
//	         bytes (an absent or shorter value counts as zeros), writes the
//	         whole value back and outputs the counter in decimal
//
// Concurrent requests can lose increments: that is what mode 0 allows (see
// rmw_linear). The body is trimmed of surrounding white space.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"

	xfaas "github.com/xfaas/xfaas/sdk/go"
)

const key = "rmw"

var errBadSize = errors.New("rmw: bad size")

func init() { xfaas.Handle(handle) }

func main() {}

func handle(req *xfaas.Request) ([]byte, error) {
	st := req.State()
	if cmd, arg, _ := bytes.Cut(bytes.Trim(req.Input(), " \t\r\n"), []byte(" ")); string(cmd) == "init" {
		n, err := strconv.ParseUint(string(arg), 10, 31)
		if err != nil {
			return nil, errBadSize
		}
		return []byte("ok"), st.Set(key, make([]byte, max(n, 8)))
	}
	val, _, err := st.Get(key)
	if err != nil {
		return nil, err
	}
	c, val := bump(val)
	if err := st.Set(key, val); err != nil {
		return nil, err
	}
	return strconv.AppendUint(nil, c, 10), nil
}

// bump adds 1 to the little-endian counter in the first 8 bytes of val,
// padding val with zeros to 8 bytes first, and returns the new count and
// value; it modifies val in place.
func bump(val []byte) (uint64, []byte) {
	if len(val) < 8 {
		val = append(val, make([]byte, 8-len(val))...)
	}
	c := binary.LittleEndian.Uint64(val) + 1
	binary.LittleEndian.PutUint64(val, c)
	return c, val
}
