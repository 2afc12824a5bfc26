package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/proxy/state"
)

// worker is one wasm instance. It runs one request at a time, on its slot's
// OS thread when CPU limits are enforced, else on the caller's goroutine.
type worker struct {
	inst   api.Module
	handle api.Function
	slot   *slot
	acc    Accessor
	stderr *guestLog
	stack  [1]uint64 // handle's result, reused: no allocation per call

	c        call
	lastUsed time.Time
}

// maxSleep caps one guest sleep (WASI poll_oneoff), so that a guest that
// sleeps past its deadline is stopped at its next call after at most this.
const maxSleep = 50 * time.Millisecond

func cappedSleep(ns int64) { time.Sleep(min(time.Duration(ns), maxSleep)) }

// newWorker instantiates m. It runs on the worker's slot so that the
// instance's start-up (a Go guest's runtime init) is charged to its cgroup;
// onSlot says the caller is that slot's thread.
func (p *Pool) newWorker(ctx context.Context, sl *slot, onSlot bool) (*worker, error) {
	w := &worker{slot: sl, acc: p.opts.NewAccessor()}
	w.c = call{session: p.opts.Session, function: p.opts.Function, maxOutput: p.opts.MaxOutput, logf: p.guestLogf, pull: p.opts.pull}
	stdout := &guestLog{logf: p.guestLogf, level: abi.LevelInfo}
	w.stderr = &guestLog{logf: p.guestLogf, level: abi.LevelWarn}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(). // _initialize is called below, under the deadline
		WithStdout(stdout).
		WithStderr(w.stderr).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(cappedSleep)
	var err error
	w.exec(onSlot, func() {
		w.inst, err = p.engine.rt.InstantiateModule(ctx, p.module.compiled, cfg)
		if err == nil && p.module.init {
			_, err = w.inst.ExportedFunction("_initialize").Call(ctx)
		}
	})
	if err != nil {
		if w.inst != nil {
			w.inst.Close(context.Background())
		}
		w.acc.Close()
		return nil, classifyStartError(err, w.stderr.tail())
	}
	w.handle = w.inst.ExportedFunction(abi.Handle)
	return w, nil
}

func classifyStartError(err error, stderr string) error {
	if exit, ok := errors.AsType[*sys.ExitError](err); ok && isContextExit(exit) {
		return apierror.New(apierror.Timeout, "worker start-up did not finish before the deadline")
	}
	return apierror.New(apierror.Trap, "worker start-up failed: %v%s", err, stderr)
}

func isContextExit(e *sys.ExitError) bool {
	return e.ExitCode() == sys.ExitCodeDeadlineExceeded || e.ExitCode() == sys.ExitCodeContextCanceled
}

// exec runs fn on the worker's slot thread: inline when the caller is that
// thread (onSlot) or the worker has no slot, else as a job posted to it.
func (w *worker) exec(onSlot bool, fn func()) {
	if w.slot == nil || onSlot {
		fn()
		return
	}
	w.slot.run(fn)
}

// invoke runs handle() for one request on the worker's slot thread.
// healthy is false when the instance must not serve again (it trapped,
// exited or was stopped by its deadline).
func (w *worker) invoke(ctx context.Context, input []byte, onSlot bool) (output []byte, healthy bool, err error) {
	w.exec(onSlot, func() { output, healthy, err = w.run(ctx, input) })
	return output, healthy, err
}

// run is invoke on the calling goroutine.
func (w *worker) run(ctx context.Context, input []byte) (output []byte, healthy bool, err error) {
	c := &w.c
	c.input, c.state, c.output, c.outputErr, c.outputOK, c.stateErr = input, w.acc, nil, nil, false, nil
	w.stderr.reset()
	callErr := w.handle.CallWithStack(withCall(ctx, c), w.stack[:])
	w.acc.End() // abort open sections: applies nothing of them, releases locks
	c.input, c.state = nil, nil
	if callErr != nil {
		return nil, false, w.callError(callErr)
	}
	rc := int32(w.stack[0])
	if c.outputErr != nil && (rc != 0 || !c.outputOK) {
		return nil, true, apierror.New(apierror.TooLarge, "%v", c.outputErr)
	}
	if rc != 0 {
		return nil, true, functionError(rc, c)
	}
	return c.output, true, nil
}

func (w *worker) callError(err error) error {
	if exit, ok := errors.AsType[*sys.ExitError](err); ok {
		if isContextExit(exit) {
			return apierror.New(apierror.Timeout, "function did not finish before its deadline and was stopped")
		}
		return apierror.New(apierror.Trap, "function exited with code %d%s", exit.ExitCode(), w.stderr.tail())
	}
	return apierror.New(apierror.Trap, "function trapped: %v%s", err, w.stderr.tail())
}

// functionError is the error of a handle() that returned rc != 0. When the
// function gave up after a state conflict, deadlock or unavailability, the
// request fails with that kind (409, 503) rather than a generic 500.
func functionError(rc int32, c *call) error {
	msg := string(c.output)
	if msg == "" {
		msg = fmt.Sprintf("handle returned %d", rc)
	}
	switch state.Code(c.stateErr) {
	case abi.ErrConflict:
		return apierror.New(apierror.Conflict, "%s (%v)", msg, c.stateErr)
	case abi.ErrDeadlock, abi.ErrLockTimeout:
		return apierror.New(apierror.Deadlock, "%s (%v)", msg, c.stateErr)
	case abi.ErrUnavailable:
		return apierror.New(apierror.Unavailable, "%s (%v)", msg, c.stateErr)
	}
	return apierror.New(apierror.FunctionError, "%s", msg)
}

// close closes the instance on its slot thread, and the worker's state
// accessor: on a secondary, each worker has a connection to the primary,
// which holds a goroutine and a transaction there.
func (w *worker) close(onSlot bool) {
	w.exec(onSlot, func() { w.inst.Close(context.Background()) })
	w.acc.Close()
}
