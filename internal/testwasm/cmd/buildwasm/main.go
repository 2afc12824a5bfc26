// Command buildwasm builds the WebAssembly guests of package testwasm (the
// C and Go SDK examples and the test guests) into a folder, for the
// Makefile:
//
//	go run ./internal/testwasm/cmd/buildwasm -out build/wasm [name ...]
//
// writes build/wasm/c/counter.wasm, build/wasm/go/counter.wasm,
// build/wasm/test/trap.wasm, and so on; without names it builds all of them.
// Builds go through the testwasm cache, so that a later go test finds them
// built. -list prints the names instead.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/xfaas/xfaas/internal/testwasm"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "buildwasm:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("buildwasm", flag.ContinueOnError)
	out := flags.String("out", "build/wasm", "the folder to write the modules to")
	list := flags.Bool("list", false, "print the names of the guests and exit")
	if err := flags.Parse(args); err != nil {
		return err
	}
	names := flags.Args()
	if len(names) == 0 {
		names = testwasm.Names()
	}
	if *list {
		for _, name := range names {
			fmt.Fprintln(stdout, name)
		}
		return nil
	}
	paths, err := buildAll(names)
	if err != nil {
		return err
	}
	for i, name := range names {
		dst := filepath.Join(*out, filepath.FromSlash(name)+".wasm")
		n, err := copyFile(dst, paths[i])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\t%d bytes\n", dst, n)
	}
	return nil
}

// buildAll builds the guests, a few at a time, and returns their cached
// paths or the first error.
func buildAll(names []string) ([]string, error) {
	paths := make([]string, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			paths[i], errs[i] = testwasm.Build(name)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// copyFile copies src to dst through a temporary file and a rename, and
// returns the number of bytes copied.
func copyFile(dst, src string) (int64, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".buildwasm-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return 0, err
	}
	return int64(len(b)), os.Rename(tmp.Name(), dst)
}
