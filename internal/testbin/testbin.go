// Package testbin builds the xfaas binary for tests that run it as a
// separate process (placement, dev mode, end-to-end), once per test binary.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	once sync.Once
	path string
	err  error
	out  []byte
)

// Xfaas returns the path of a freshly built cmd/xfaas. The build goes
// through the Go build cache, so it is quick after the first time.
func Xfaas(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		var dir string
		if dir, err = os.MkdirTemp("", "xfaas-testbin-"); err != nil {
			return
		}
		path = filepath.Join(dir, "xfaas")
		cmd := exec.Command("go", "build", "-o", path, "./cmd/xfaas")
		cmd.Dir = root
		out, err = cmd.CombinedOutput()
	})
	if err != nil {
		t.Fatalf("build xfaas: %v\n%s", err, out)
	}
	return path
}
