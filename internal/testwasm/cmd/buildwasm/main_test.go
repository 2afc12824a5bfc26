package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xfaas/xfaas/internal/testwasm"
)

func TestRunWritesModulesByName(t *testing.T) {
	out := t.TempDir()
	var stdout bytes.Buffer
	if err := run([]string{"-out", out, "c/hello", "test/trap"}, &stdout); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"c/hello", "test/trap"} {
		got, err := os.ReadFile(filepath.Join(out, name+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		if want := testwasm.Bytes(t, name); !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes written; want the %d bytes of the built module", name, len(got), len(want))
		}
		if !strings.Contains(stdout.String(), filepath.Join(out, name+".wasm")) {
			t.Errorf("output does not mention %s:\n%s", name, stdout.String())
		}
	}
}

func TestRunList(t *testing.T) {
	var stdout bytes.Buffer
	if err := run([]string{"-list"}, &stdout); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(stdout.String()), testwasm.Names(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("-list printed %v; want %v", got, want)
	}
}

func TestRunUnknownGuest(t *testing.T) {
	if err := run([]string{"-out", t.TempDir(), "c/nope"}, new(bytes.Buffer)); err == nil {
		t.Error("run built an unknown guest")
	}
}
