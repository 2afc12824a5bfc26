//go:build !wasip1

package xfaas

import "github.com/xfaas/xfaas/sdk/go/internal/fakehost"

// Off wasm, the host calls go to the FAKE in-memory host of package
// internal/fakehost, so that go test can run the SDK, its examples and
// functions built with it on the development machine; package xfaastest
// drives it. The real host is the xfaas runtime, reached through the
// imports of abi_wasip1.go.

func init() { fakehost.Default.SetHandle(invoke) }

func hostReadInput(arg int32, buf []byte) int32 { return fakehost.Default.ReadInput(arg, buf) }

func hostSetOutput(buf []byte) int32 { return fakehost.Default.SetOutput(buf) }

func hostReadState(key string, buf []byte, mode int32) int32 {
	return fakehost.Default.ReadState(key, buf, mode)
}

func hostWriteState(key string, val []byte, mode int32) int32 {
	return fakehost.Default.WriteState(key, val, mode)
}

func hostDeleteState(key string, mode int32) int32 { return fakehost.Default.DeleteState(key, mode) }

func hostLog(level int32, msg string) { fakehost.Default.Log(level, msg) }

func hostPullState(function, session, key string, buf []byte) int32 {
	return fakehost.Default.PullState(function, session, key, buf)
}
