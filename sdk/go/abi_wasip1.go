//go:build wasip1

package xfaas

import "unsafe"

// The host calls of the xfaas ABI. Pointers are offsets into the module's
// linear memory, which is what unsafe.Pointer becomes on wasm; the host does
// not retain them, hence go:noescape.

//go:wasmimport xfaas read_input
//go:noescape
func xfaasReadInput(arg int32, buf unsafe.Pointer, n int32) int32

//go:wasmimport xfaas set_output
//go:noescape
func xfaasSetOutput(buf unsafe.Pointer, n int32) int32

//go:wasmimport xfaas read_state
//go:noescape
func xfaasReadState(key unsafe.Pointer, keyLen int32, buf unsafe.Pointer, n int32, mode int32) int32

//go:wasmimport xfaas write_state
//go:noescape
func xfaasWriteState(key unsafe.Pointer, keyLen int32, val unsafe.Pointer, n int32, mode int32) int32

//go:wasmimport xfaas delete_state
//go:noescape
func xfaasDeleteState(key unsafe.Pointer, keyLen int32, mode int32) int32

//go:wasmimport xfaas log
//go:noescape
func xfaasLog(level int32, msg unsafe.Pointer, n int32)

//go:wasmimport xfaas pull_state
//go:noescape
func xfaasPullState(fn unsafe.Pointer, fnLen int32, session unsafe.Pointer, sessionLen int32, key unsafe.Pointer, keyLen int32, buf unsafe.Pointer, n int32) int32

// handle is the export the platform calls for every request.
//
//lint:ignore U1000 called by the host, through go:wasmexport.
//go:wasmexport handle
func handle() int32 { return invoke() }

func hostReadInput(arg int32, buf []byte) int32 {
	return xfaasReadInput(arg, bytesPtr(buf), int32(len(buf)))
}

func hostSetOutput(buf []byte) int32 {
	return xfaasSetOutput(bytesPtr(buf), int32(len(buf)))
}

func hostReadState(key string, buf []byte, mode int32) int32 {
	return xfaasReadState(stringPtr(key), int32(len(key)), bytesPtr(buf), int32(len(buf)), mode)
}

func hostWriteState(key string, val []byte, mode int32) int32 {
	return xfaasWriteState(stringPtr(key), int32(len(key)), bytesPtr(val), int32(len(val)), mode)
}

func hostDeleteState(key string, mode int32) int32 {
	return xfaasDeleteState(stringPtr(key), int32(len(key)), mode)
}

func hostLog(level int32, msg string) {
	xfaasLog(level, stringPtr(msg), int32(len(msg)))
}

func hostPullState(function, session, key string, buf []byte) int32 {
	return xfaasPullState(stringPtr(function), int32(len(function)), stringPtr(session), int32(len(session)),
		stringPtr(key), int32(len(key)), bytesPtr(buf), int32(len(buf)))
}

func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }
