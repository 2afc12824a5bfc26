package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// xfaasBin is the xfaas binary built once for this package's tests, which
// run it as users and spawners do.
var xfaasBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xfaas-bin-")
	if err != nil {
		panic(err)
	}
	xfaasBin = filepath.Join(dir, "xfaas")
	if out, err := exec.Command("go", "build", "-o", xfaasBin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running xfaas command.
type process struct {
	cmd    *exec.Cmd
	stdout *bufio.Scanner
	stderr *strings.Builder
}

func start(t *testing.T, args ...string) *process {
	t.Helper()
	return startEnv(t, nil, args...)
}

// startEnv starts xfaas with extra environment variables ("K=V").
func startEnv(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(xfaasBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stdout: bufio.NewScanner(out), stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState != nil {
			return
		}
		// Stop it as a user would, so it cleans up after itself.
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// line reads the next stdout line as JSON into v, within 30s.
func (p *process) line(t *testing.T, v any) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		if !p.stdout.Scan() {
			got <- p.stdout.Err()
			return
		}
		got <- json.Unmarshal(p.stdout.Bytes(), v)
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("reading stdout: %v; stderr:\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no line on stdout within 30s; stderr:\n%s", p.stderr)
	}
}

// stop sends SIGTERM and returns the exit error (nil for status 0).
func (p *process) stop(t *testing.T) error {
	t.Helper()
	return p.signal(t, syscall.SIGTERM, 30*time.Second)
}

// signal sends sig and returns the exit error (nil for status 0); it fails
// t when the process still runs after within.
func (p *process) signal(t *testing.T, sig os.Signal, within time.Duration) error {
	t.Helper()
	p.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("still running %v after %v; stderr:\n%s", within, sig, p.stderr)
		return nil
	}
}

// Asking a command for its help is a success: the usage on stderr, exit
// code 0, as for `xfaas -h`. A bad flag is still an error.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"invoke", "-h"}, {"deploy", "--help"}, {"hint", "seal", "-h"}} {
		out, err := exec.Command(xfaasBin, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "sage") {
			t.Errorf("xfaas %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := exec.Command(xfaasBin, "invoke", "--no-such-flag").Run(); err == nil {
		t.Error("xfaas invoke --no-such-flag exited 0")
	}
}
