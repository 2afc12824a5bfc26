package bench

import (
	"context"
	"errors"
	"time"
)

// Invoker sends one request to a deployed function and returns its output.
type Invoker func(ctx context.Context, body []byte) ([]byte, error)

// Function is what a System deploys.
type Function struct {
	// Name is the function's name, unique within a run.
	Name string
	// Module is the wasm module.
	Module []byte
	// MaxWorkers is the vertical limit: workers per container. The
	// baseline always runs one.
	MaxWorkers int
	// MaxContainers bounds the containers of the function's session. The
	// baseline starts MaxWorkers × MaxContainers containers, so both
	// systems have the same total number of workers.
	MaxContainers int
}

// Workers is the total number of workers a deployment may run.
func (f Function) Workers() int { return f.MaxWorkers * f.MaxContainers }

// Cold-start kinds, the rows of the paper's cold-start table.
const (
	// Fork is a new worker in a warm container.
	Fork = "fork"
	// CopySession is a new secondary container of a running session.
	CopySession = "copy_session"
	// ColdSession is a new session namespace.
	ColdSession = "cold_session"
	// ColdSessionRestore is a new session namespace restored from a 1 MiB
	// checkpoint.
	ColdSessionRestore = "cold_session_restore_1mb"
	// Traditional is a new traditional (one-worker) container.
	Traditional = "traditional"
)

// ColdStartKinds are the cold-start kinds in table order.
var ColdStartKinds = []string{Fork, CopySession, ColdSession, ColdSessionRestore, Traditional}

// NotAvailableError says why a system cannot measure something.
type NotAvailableError struct{ Reason string }

func (e *NotAvailableError) Error() string { return "not available: " + e.Reason }

// NotAvailable returns a NotAvailableError.
func NotAvailable(reason string) error { return &NotAvailableError{Reason: reason} }

// ErrNotMine is returned by ColdStart for a kind that belongs to the other
// system.
var ErrNotMine = errors.New("cold-start kind of another system")

// System is a platform under test.
type System interface {
	// Name is "xfaas" or "redis".
	Name() string
	// Deploy installs fn and returns how to invoke it. Requests of one
	// deployment share one session (xfaas) or one Redis key space (the
	// baseline).
	Deploy(ctx context.Context, fn Function) (Invoker, error)
	// Undeploy removes fn and stops what it ran.
	Undeploy(ctx context.Context, name string) error
	// ColdStart measures samples cold starts of kind, in the way this
	// system starts things. It returns ErrNotMine for the other system's
	// kinds and a NotAvailableError for what it cannot do yet.
	ColdStart(ctx context.Context, kind string, samples int) ([]time.Duration, error)
	// MemoryPerWorker measures what one more worker costs in resident
	// memory, in bytes, and says how it was measured.
	MemoryPerWorker(ctx context.Context) (bytes float64, how string, err error)
}
