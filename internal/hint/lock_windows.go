//go:build windows

package hint

import (
	"os"
	"syscall"
	"unsafe"
)

// kernel32.dll is a KnownDLL, so loading it by name cannot be hijacked.
var (
	kernel32         = syscall.NewLazyDLL("kernel32.dll")
	procLockFileEx   = kernel32.NewProc("LockFileEx")
	procUnlockFileEx = kernel32.NewProc("UnlockFileEx")
)

const lockfileExclusiveLock = 0x2

// lockFile takes an exclusive LockFileEx lock on the first byte of path,
// creating it if needed, and returns the function that releases it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	h := f.Fd()
	ol := new(syscall.Overlapped)
	if r, _, e := procLockFileEx.Call(h, lockfileExclusiveLock, 0, 1, 0, uintptr(unsafe.Pointer(ol))); r == 0 {
		f.Close()
		return nil, &os.PathError{Op: "LockFileEx", Path: path, Err: e}
	}
	return func() {
		procUnlockFileEx.Call(h, 0, 1, 0, uintptr(unsafe.Pointer(ol)))
		f.Close()
	}, nil
}
