// Command hello answers every request with "hello": the smallest function,
// used to measure warm-invoke latency.
package main

import xfaas "github.com/xfaas/xfaas/sdk/go"

var hello = []byte("hello")

func init() {
	xfaas.Handle(func(*xfaas.Request) ([]byte, error) { return hello, nil })
}

func main() {}
