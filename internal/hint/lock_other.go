//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || windows)

package hint

import (
	"errors"
	"runtime"
)

// lockFile fails: without a file lock, concurrent writers could lose each
// other's keysets, so the keystore is read-only on this platform.
func lockFile(string) (func(), error) {
	return nil, errors.New("keystore locking is not supported on " + runtime.GOOS)
}
