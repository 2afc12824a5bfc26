// Package shim is the supervisor that stands between the xfaas Nomad driver
// and one session container.
//
// The driver binary re-executes itself as
//
//	xfaas-driver shim --status FILE --report-fd 3 [--cgroup PATH] [--stdout FIFO] [--stderr FIFO] -- xfaas proxy ...
//
// in a session of its own. The shim starts the container process in its own
// process group (inside the container cgroup from its first instruction),
// copies its stdout and stderr to Nomad's log FIFOs without ever blocking it,
// reports the container's pid and ready line to the driver, waits for it and
// writes its exit status atomically to FILE. It outlives the driver: a
// driver that restarted is no longer the parent of anything, so it learns
// the exit from FILE. See RATIONALE.md, "Nomad driver".
package shim

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/xfaas/xfaas/internal/cgroup"
)

// Command is the first argument that makes the driver binary a shim.
const Command = "shim"

// Status is the exit of the supervised process as the shim records it.
type Status struct {
	// ExitCode is the process's exit code, 128+signal when a signal
	// killed it, -1 when it could not be started.
	ExitCode int `json:"exit_code"`
	// Signal is the signal that killed the process, 0 if none did.
	Signal int `json:"signal,omitempty"`
	// Err says why the process could not be started or waited for.
	Err string `json:"error,omitempty"`
	// StderrTail is the end of the process's stderr, for error messages.
	StderrTail string    `json:"stderr_tail,omitempty"`
	ExitedAt   time.Time `json:"exited_at"`
}

// Event is one JSON line the shim writes to its report pipe: first
// "started" with the container's pid, then the container's first stdout
// line verbatim (its ready line). The pipe closes after that, or at once
// when the container exits before.
type Event struct {
	Event string `json:"event"`
	PID   int    `json:"pid,omitempty"`
}

// tailSize bounds Status.StderrTail.
const tailSize = 2048

// copyGrace bounds how long the shim drains the container's output after
// it exited (a descendant may hold the pipes open).
const copyGrace = 2 * time.Second

// Main runs the shim with the arguments after Command and returns its exit
// code: 0 once the status file is written, 2 otherwise.
func Main(args []string) int {
	if err := run(args); err != nil {
		fmt.Fprintln(os.Stderr, "xfaas shim:", err)
		return 2
	}
	return 0
}

type options struct {
	status, cgroup, stdout, stderr string
	reportFD                       int
	argv                           []string
}

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	fs.StringVar(&o.status, "status", "", "file to write the exit status to (required)")
	fs.StringVar(&o.cgroup, "cgroup", "", "cgroup to start the process in, relative to the hierarchy root")
	fs.StringVar(&o.stdout, "stdout", "", "FIFO (or file) to copy the process's stdout to")
	fs.StringVar(&o.stderr, "stderr", "", "FIFO (or file) to copy the process's stderr to")
	fs.IntVar(&o.reportFD, "report-fd", 0, "inherited file descriptor to report the pid and ready line on")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.argv = fs.Args()
	switch {
	case o.status == "":
		return o, errors.New("--status is required")
	case len(o.argv) == 0:
		return o, errors.New("no command to run after --")
	}
	return o, nil
}

func run(args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	// The shim lives in a session of its own and must not die of a hangup,
	// nor of the driver's pipes breaking; termination requests are the
	// container's to handle.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	if err := inheritOnlyStdio(); err != nil {
		fmt.Fprintln(os.Stderr, "xfaas shim:", err)
	}
	var report io.WriteCloser = nopCloser{io.Discard}
	if o.reportFD > 0 {
		syscall.CloseOnExec(o.reportFD) // even if inheritOnlyStdio failed
		report = os.NewFile(uintptr(o.reportFD), "report")
	}
	stdout, stderr := OpenLog(o.stdout), OpenLog(o.stderr)
	defer stdout.Close()
	defer stderr.Close()

	cmd, outR, errR, err := start(o)
	if err != nil {
		signal.Stop(sigs)
		report.Close()
		return WriteStatus(o.status, Status{ExitCode: -1, Err: err.Error(), ExitedAt: time.Now()})
	}
	_ = writeEvent(report, Event{Event: "started", PID: cmd.Process.Pid})

	tail := &tailBuffer{}
	var copiers sync.WaitGroup
	copiers.Add(2)
	go func() { defer copiers.Done(); copyStdout(outR, stdout, report) }()
	go func() { defer copiers.Done(); _, _ = io.Copy(io.MultiWriter(stderr, tail), errR) }()
	go forward(sigs, cmd.Process)

	waitErr := cmd.Wait()
	signal.Stop(sigs)
	close(sigs)
	drained := make(chan struct{})
	go func() { copiers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(copyGrace):
	}
	return WriteStatus(o.status, exitStatus(cmd.ProcessState, waitErr, tail.String()))
}

// inheritOnlyStdio marks every descriptor above stderr close-on-exec, so
// that the container gets its stdin, stdout and stderr and nothing else the
// shim holds: not the report pipe's write end, which it would otherwise
// keep for life, nor what the shim's parents leaked to it (Go's exec
// passes on every descriptor that is not close-on-exec).
func inheritOnlyStdio() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("mark descriptors close-on-exec: %w", err)
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd) // EBADF for ReadDir's own, closed by now
		}
	}
	return nil
}

// start starts the container with its output on pipes, in its own process
// group, inside o.cgroup: the shim joins the group, forks, and leaves it
// again, so that the child is in the group before it runs and the shim's
// own CPU and memory are not counted as the container's.
func start(o options) (*exec.Cmd, *os.File, *os.File, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.Command(o.argv[0], o.argv[1:]...)
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	leave, err := joinCgroup(o.cgroup)
	if err == nil {
		err = cmd.Start()
		if lerr := leave(); err == nil && lerr != nil {
			fmt.Fprintln(os.Stderr, "xfaas shim: leave cgroup:", lerr)
		}
	}
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, nil, nil, err
	}
	return cmd, outR, errR, nil
}

// joinCgroup moves the shim into the group at path and returns the function
// that moves it back.
func joinCgroup(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	h, err := cgroup.Open(cgroup.Options{})
	if err != nil {
		return nil, err
	}
	home, err := h.Self()
	if err != nil {
		return nil, err
	}
	if err := h.Group(path).AddProcess(os.Getpid()); err != nil {
		return nil, err
	}
	return func() error { return home.AddProcess(os.Getpid()) }, nil
}

// copyStdout forwards the container's stdout to the log, and its first line
// also to the report pipe, which it then closes.
func copyStdout(r io.Reader, log io.Writer, report io.WriteCloser) {
	br := bufio.NewReader(r)
	line, err := br.ReadBytes('\n')
	_, _ = log.Write(line)
	if err == nil {
		_, _ = report.Write(line)
	}
	report.Close()
	_, _ = io.Copy(log, br)
}

// forward passes termination signals the shim receives on to the container.
func forward(sigs <-chan os.Signal, p *os.Process) {
	for s := range sigs {
		_ = p.Signal(s)
	}
}

func writeEvent(w io.Writer, e Event) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = w.Write(append(line, '\n'))
	return err
}

func exitStatus(ps *os.ProcessState, waitErr error, tail string) Status {
	s := Status{StderrTail: tail, ExitedAt: time.Now()}
	var ws syscall.WaitStatus
	ok := ps != nil
	if ok {
		ws, ok = ps.Sys().(syscall.WaitStatus)
	}
	switch {
	case !ok:
		s.ExitCode, s.Err = -1, fmt.Sprintf("wait: %v", waitErr)
	case ws.Signaled():
		s.Signal = int(ws.Signal())
		s.ExitCode = 128 + s.Signal
	default:
		s.ExitCode = ws.ExitStatus()
	}
	return s
}

// WriteStatus writes s to path atomically: a reader sees the whole status
// or none.
func WriteStatus(path string, s Status) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".status-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}

// ReadStatus reads a status file; an error wrapping fs.ErrNotExist means
// the shim has not written it (yet).
func ReadStatus(path string) (Status, error) {
	var s Status
	data, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("read status %s: %w", path, err)
	}
	return s, nil
}

// tailBuffer keeps the last tailSize bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
