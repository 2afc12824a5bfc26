package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/plugins/drivers"
	"golang.org/x/sys/unix"

	"github.com/xfaas/xfaas/driver/shim"
	"github.com/xfaas/xfaas/internal/cgroup"
)

// pollInterval is how often a recovered handle, which is not the shim's
// parent and cannot wait(2) for it, checks whether the container is gone.
const pollInterval = 100 * time.Millisecond

// taskHandle is one running (or exited) container.
type taskHandle struct {
	state  TaskState // immutable
	group  *cgroup.Group
	logger hclog.Logger
	// shim is set when this driver started the shim and can wait for it.
	shim *os.Process

	done chan struct{} // closed once result is set

	mu          sync.Mutex
	result      *drivers.ExitResult
	completedAt time.Time
}

func newHandle(state TaskState, group *cgroup.Group, shimProc *os.Process, logger hclog.Logger) *taskHandle {
	return &taskHandle{state: state, group: group, shim: shimProc, logger: logger, done: make(chan struct{})}
}

// run waits for the container to exit and records its result; it gives up
// without a result when ctx (the driver's) is done.
func (h *taskHandle) run(ctx context.Context) {
	if h.shim != nil {
		if _, err := h.shim.Wait(); err != nil {
			h.logger.Warn("failed to wait for the shim", "error", err)
		}
		if alive(h.state.ProxyPID, h.state.ProxyStart) {
			h.logger.Warn("the shim exited before its container; watching the container", "pid", h.state.ProxyPID)
		}
	}
	// Recovered, the wait failed, or the shim was killed and left the proxy
	// serving (RATIONALE.md, "Nomad driver"): the container has not exited
	// until both processes are gone, and only then is the status file final.
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for alive(h.state.ShimPID, h.state.ShimStart) || alive(h.state.ProxyPID, h.state.ProxyStart) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	h.finish(h.readResult())
}

// readResult turns the status file into the exit result.
func (h *taskHandle) readResult() *drivers.ExitResult {
	st, err := shim.ReadStatus(h.state.StatusFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &drivers.ExitResult{ExitCode: -1, Err: errors.New("the container exited but its shim recorded no status (the shim was killed)")}
	case err != nil:
		return &drivers.ExitResult{ExitCode: -1, Err: err}
	}
	res := &drivers.ExitResult{ExitCode: st.ExitCode, Signal: st.Signal}
	if st.Err != "" {
		res.Err = errors.New(st.Err)
	}
	return res
}

func (h *taskHandle) finish(res *drivers.ExitResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.result != nil {
		return
	}
	h.result, h.completedAt = res, time.Now()
	close(h.done)
}

func (h *taskHandle) running() bool {
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

func (h *taskHandle) exitResult() *drivers.ExitResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.result.Copy()
}

func (h *taskHandle) status() *drivers.TaskStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := &drivers.TaskStatus{
		ID:          h.state.TaskConfig.ID,
		Name:        h.state.TaskConfig.Name,
		State:       drivers.TaskStateRunning,
		StartedAt:   h.state.StartedAt,
		CompletedAt: h.completedAt,
		ExitResult:  h.result.Copy(),
		DriverAttributes: map[string]string{
			"pid":       strconv.Itoa(h.state.ProxyPID),
			"shim_pid":  strconv.Itoa(h.state.ShimPID),
			"container": h.state.Container,
			"addr":      h.state.Addr,
			"cgroup":    h.state.Cgroup,
		},
	}
	if h.result != nil {
		st.State = drivers.TaskStateExited
	}
	return st
}

// signal sends sig to the container's proxy if it still runs.
func (h *taskHandle) signal(sig unix.Signal) error {
	if !h.running() || !alive(h.state.ProxyPID, h.state.ProxyStart) {
		return nil
	}
	if err := unix.Kill(h.state.ProxyPID, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal container: %w", err)
	}
	return nil
}

// kill sends SIGKILL to the proxy's process group and to everything in the
// container cgroup; the shim, outside both, survives to record the exit.
func (h *taskHandle) kill() error {
	var errs []error
	if h.running() && alive(h.state.ProxyPID, h.state.ProxyStart) {
		if err := unix.Kill(-h.state.ProxyPID, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, err)
		}
	}
	if h.group != nil {
		errs = append(errs, h.group.Kill())
	}
	return errors.Join(errs...)
}

// waitDone waits up to d for the container to exit.
func (h *taskHandle) waitDone(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-h.done:
		return true
	case <-t.C:
		return false
	}
}
