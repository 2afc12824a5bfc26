package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
)

// ExecTask runs cmd in the task's environment and directory, as `nomad
// alloc exec` does. The command runs on the host beside the container (the
// driver isolates no file system), outside the container's cgroup.
func (d *Driver) ExecTask(taskID string, cmd []string, timeout time.Duration) (*drivers.ExecTaskResult, error) {
	ctx, cancel := context.WithTimeout(d.ctx, timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	res, err := d.exec(ctx, taskID, &drivers.ExecOptions{Command: cmd, Stdout: nopWriteCloser{&stdout}, Stderr: nopWriteCloser{&stderr}})
	if err != nil {
		return nil, err
	}
	return &drivers.ExecTaskResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitResult: res}, nil
}

// ExecTaskStreaming runs a command like ExecTask with streams; a terminal
// (tty) is not supported: use `nomad alloc exec -t=false`.
func (d *Driver) ExecTaskStreaming(ctx context.Context, taskID string, opts *drivers.ExecOptions) (*drivers.ExitResult, error) {
	if opts.Tty {
		return nil, errors.New("the xfaas driver does not allocate terminals; run nomad alloc exec with -t=false")
	}
	return d.exec(ctx, taskID, opts)
}

func (d *Driver) exec(ctx context.Context, taskID string, opts *drivers.ExecOptions) (*drivers.ExitResult, error) {
	if len(opts.Command) == 0 {
		return nil, errors.New("exec: no command")
	}
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	if !h.running() {
		return nil, fmt.Errorf("exec: task %s is not running", taskID)
	}
	cfg := h.state.TaskConfig
	cmd := exec.CommandContext(ctx, opts.Command[0], opts.Command[1:]...)
	cmd.Env, cmd.Dir = cfg.EnvList(), cfg.TaskDir().Dir
	if opts.Stdin != nil {
		cmd.Stdin = opts.Stdin
	}
	cmd.Stdout, cmd.Stderr = opts.Stdout, opts.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return &drivers.ExitResult{}, nil
	case errors.As(err, &exitErr):
		ws, _ := exitErr.Sys().(syscall.WaitStatus)
		res := &drivers.ExitResult{ExitCode: ws.ExitStatus()}
		if ws.Signaled() {
			res.Signal = int(ws.Signal())
			res.ExitCode = 128 + res.Signal
		}
		return res, nil
	}
	return nil, fmt.Errorf("exec: %w", err)
}

type nopWriteCloser struct{ *bytes.Buffer }

func (nopWriteCloser) Close() error { return nil }
