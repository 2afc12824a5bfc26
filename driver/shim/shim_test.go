package shim

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func fifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "out.fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// With no reader, writes are dropped at once and never fail or block.
func TestFIFONoReader(t *testing.T) {
	f := NewFIFO(fifo(t), 0)
	defer f.Close()
	for range 100 {
		if n, err := f.Write([]byte("line\n")); n != 5 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if f.Dropped() != 500 {
		t.Errorf("Dropped = %d; want 500", f.Dropped())
	}
}

// A reader that goes away (EPIPE) and a new one that comes: the new one
// gets what is written after it came.
func TestFIFOReaderComesBack(t *testing.T) {
	p := fifo(t)
	r1, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := NewFIFO(p, time.Second)
	defer f.Close()
	_, _ = f.Write([]byte("one\n"))
	buf := make([]byte, 16)
	if n, _ := r1.Read(buf); string(buf[:n]) != "one\n" {
		t.Fatalf("first reader got %q", buf[:n])
	}
	r1.Close()
	_, _ = f.Write([]byte("lost\n")) // EPIPE: dropped, the FIFO closed
	r2, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	_, _ = f.Write([]byte("two\n"))
	if n, _ := r2.Read(buf); string(buf[:n]) != "two\n" {
		t.Fatalf("second reader got %q", buf[:n])
	}
}

// A full pipe drops the rest instead of blocking.
func TestFIFOFullDrops(t *testing.T) {
	p := fifo(t)
	r, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := NewFIFO(p, time.Second)
	defer f.Close()
	chunk := make([]byte, 64<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 64 { // 4 MiB, more than any pipe buffer
			_, _ = f.Write(chunk)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked on a full pipe")
	}
	if f.Dropped() == 0 {
		t.Error("nothing dropped")
	}
}

func run1(t *testing.T, args ...string) Status {
	t.Helper()
	status := filepath.Join(t.TempDir(), "status")
	if code := Main(append([]string{"--status", status, "--"}, args...)); code != 0 {
		t.Fatalf("Main = %d", code)
	}
	st, err := ReadStatus(status)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestStatus(t *testing.T) {
	if st := run1(t, "/bin/sh", "-c", "echo oops >&2; exit 3"); st.ExitCode != 3 || st.Signal != 0 || st.StderrTail != "oops\n" {
		t.Errorf("exit 3: %+v", st)
	}
	if st := run1(t, "/bin/sh", "-c", "kill -KILL $$"); st.ExitCode != 137 || st.Signal != 9 {
		t.Errorf("killed: %+v", st)
	}
	if st := run1(t, "/nonexistent/xfaas"); st.ExitCode != -1 || !strings.Contains(st.Err, "no such file") {
		t.Errorf("not started: %+v", st)
	}
	if _, err := ReadStatus(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadStatus(missing) = %v", err)
	}
}

// The report pipe carries the pid and the first stdout line, which also
// goes to the log.
func TestReport(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := unix.Dup(int(w.Fd())) // Main closes the descriptor it is given
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	dir := t.TempDir()
	status, log := filepath.Join(dir, "status"), filepath.Join(dir, "stdout.log")
	// Main reads the report descriptor by number; hand it w's.
	code := Main([]string{"--status", status, "--stdout", log, "--report-fd", itoa(fd), "--",
		"/bin/sh", "-c", `echo '{"event":"ready"}'; echo more`})
	if code != 0 {
		t.Fatalf("Main = %d", code)
	}
	report, _ := io.ReadAll(r)
	lines := strings.Split(strings.TrimSpace(string(report)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"started"`) || lines[1] != `{"event":"ready"}` {
		t.Errorf("report = %q", report)
	}
	if data, _ := os.ReadFile(log); string(data) != "{\"event\":\"ready\"}\nmore\n" {
		t.Errorf("stdout log = %q", data)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
