//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package hint

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path, creating it if needed, and
// returns the function that releases it. flock locks belong to the open
// file, so goroutines of one process exclude each other too, and the kernel
// releases the lock of a process that dies holding it. The lock file is
// never removed: removing a locked file would let a second locker lock a
// new file of the same name.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return func() { f.Close() }, nil
}
