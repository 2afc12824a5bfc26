//go:build !wasip1

package xfaas_test

import (
	"fmt"
	"strconv"

	xfaas "github.com/xfaas/xfaas/sdk/go"
	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

// A function registers its handler in init; xfaastest stands in for the
// platform here.
func ExampleHandle() {
	xfaastest.Reset()
	xfaas.Handle(func(req *xfaas.Request) ([]byte, error) {
		return append([]byte("hello, "), req.Input()...), nil
	})

	out, err := xfaastest.Invoke("world")
	fmt.Println(out, err)
	// Output: hello, world <nil>
}

// A linearizable counter: no increment is lost, whatever the concurrency.
func ExampleState_Update() {
	xfaastest.Reset()
	xfaas.Handle(func(req *xfaas.Request) ([]byte, error) {
		var n int
		err := req.State().Update("count", func(old []byte, ok bool) ([]byte, error) {
			n, _ = strconv.Atoi(string(old)) // 0 when absent
			n++
			return strconv.AppendInt(nil, int64(n), 10), nil
		})
		return []byte(strconv.Itoa(n)), err
	})

	for range 3 {
		out, _ := xfaastest.Invoke("")
		fmt.Println(out)
	}
	// Output:
	// 1
	// 2
	// 3
}

// ErrSkip leaves the key as it is and closes the critical section.
func ExampleState_Update_skip() {
	xfaastest.Reset()
	xfaastest.Set("owner", []byte("alice"))
	xfaas.Handle(func(req *xfaas.Request) ([]byte, error) {
		claimed := false
		err := req.State().Update("owner", func(old []byte, ok bool) ([]byte, error) {
			if ok {
				return nil, xfaas.ErrSkip // taken already
			}
			claimed = true
			return req.Input(), nil
		})
		return []byte(strconv.FormatBool(claimed)), err
	})

	out, err := xfaastest.Invoke("bob")
	owner, _ := xfaastest.Get("owner")
	fmt.Println(out, err, string(owner))
	// Output: false <nil> alice
}
