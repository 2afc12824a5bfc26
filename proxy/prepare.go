package proxy

import (
	"context"

	"github.com/xfaas/xfaas/internal/fnconfig"
)

// prepared is what an unbound container readies while it waits in the
// pool, for the default function config: the wasm runtime, and with
// enforced limits the worker cgroups and their slot threads. None of it
// depends on the function, so a bind that matches it only compiles (a
// cache hit), creates the state and starts the pool. See RATIONALE.md,
// "A pool container prepares its bind".
type prepared struct {
	memoryMB int     // the engine's worker_memory_mb
	engine   *Engine // nil if it could not start: the bind makes its own
	slots    *slotSet
}

// Prepare starts readying, in the background, what a bind with the
// default config needs. Bind waits for it and uses what matches its
// config; Close releases what no bind took. Prepare is for a container
// that will wait unbound; it does nothing once the container is bound,
// closed or already preparing.
func (c *Container) Prepare() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prepDone != nil || c.b != nil || c.closed {
		return
	}
	done := make(chan struct{})
	c.prepDone = done
	go func() {
		defer close(done)
		c.prep = c.prepare(fnconfig.Default())
	}()
}

func (c *Container) prepare(cfg fnconfig.Config) *prepared {
	p := &prepared{memoryMB: cfg.WorkerMemoryMB}
	var err error
	if p.engine, err = NewEngine(context.Background(), EngineOptions{CacheDir: c.opts.CacheDir, MemoryLimitMB: cfg.WorkerMemoryMB}); err != nil {
		c.log.Warn("prepare: the bind will start its own runtime", "error", err)
	}
	if c.opts.Limits == nil || !c.opts.Limits.Status().Enforced {
		return p
	}
	placer, err := c.opts.Limits.Prepare(cfg.MaxWorkers, cfg.WorkerCPUMillicores)
	if err == nil {
		p.slots, err = startSlots(cfg.MaxWorkers, placer)
	}
	if err != nil {
		c.log.Warn("prepare: the bind will start its own worker threads", "error", err)
	}
	return p
}

// takePrepared waits for the preparation and hands it to the caller, a
// bind holding c.mu. It returns nil when there is none, or none left.
func (c *Container) takePrepared(ctx context.Context) (*prepared, error) {
	if c.prepDone == nil || c.prepTaken {
		return nil, nil
	}
	select {
	case <-c.prepDone:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.prepTaken = true
	return c.prep, nil
}

// engineFor returns the prepared engine if it has memoryMB, and leaves it
// to release otherwise.
func (p *prepared) engineFor(memoryMB int) *Engine {
	if p == nil || p.engine == nil || p.memoryMB != memoryMB {
		return nil
	}
	e := p.engine
	p.engine = nil
	return e
}

// slotsFor returns the prepared slot threads, n of them: extra ones stop,
// missing ones start (their groups exist: the bind ran Limits.Workers).
func (p *prepared) slotsFor(n int) (*slotSet, error) {
	if p == nil || p.slots == nil {
		return nil, nil
	}
	ss := p.slots
	p.slots = nil
	if err := ss.resize(n); err != nil {
		ss.stop()
		return nil, err
	}
	return ss, nil
}

// release stops and closes what no bind took.
func (p *prepared) release() {
	if p == nil {
		return
	}
	if p.slots != nil {
		p.slots.stop()
		p.slots = nil
	}
	if p.engine != nil {
		_ = p.engine.Close(context.Background())
		p.engine = nil
	}
}

// prepared reports whether the preparation is done and not yet taken.
func (c *Container) prepared() bool {
	c.mu.Lock()
	done, taken := c.prepDone, c.prepTaken
	c.mu.Unlock()
	if done == nil || taken {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}
