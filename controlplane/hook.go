package controlplane

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/proxy"
	"github.com/xfaas/xfaas/proxy/state"
)

// hooks runs hook functions: deployed functions that compute a session
// label from a request, inside the control plane's own wasm sandbox, with
// no session state. The label they output is sealed by the control plane
// and never logged.
type hooks struct {
	s *Server

	mu    sync.Mutex
	pools map[string]*hookPool // by function name; nil once closed
	// retiring counts the pools closing in the background (replaced by a
	// new version, or of a deleted function); close waits for them.
	retiring sync.WaitGroup
}

type hookPool struct {
	version uint64
	pool    *proxy.Pool
}

// label runs hook function name on the request's body and headers and
// returns the label it output.
func (h *hooks) label(ctx context.Context, name string, input []byte, header http.Header) (string, error) {
	p, err := h.pool(ctx, name)
	if err != nil {
		return "", err
	}
	out, err := p.Invoke(proxy.WithHeaders(ctx, header), input)
	if err != nil {
		ae, _ := err.(*apierror.Error)
		if ae != nil && ae.Kind == apierror.FunctionError {
			return "", apierror.New(apierror.BadHint, "hook %s refused the request: %s", name, ae.Message)
		}
		return "", err
	}
	label := strings.TrimSpace(string(out))
	if label == "" {
		return "", apierror.New(apierror.BadHint, "hook %s computed no label", name)
	}
	return label, nil
}

// pool returns a worker pool for the hook's current version.
func (h *hooks) pool(ctx context.Context, name string) (*proxy.Pool, error) {
	f, ok := h.s.fns.Lookup(name)
	if !ok {
		return nil, apierror.New(apierror.Internal, "hook function %q is not deployed", name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pools == nil {
		return nil, apierror.New(apierror.Unavailable, "the control plane is shutting down")
	}
	if hp := h.pools[name]; hp != nil && hp.version == f.Version {
		return hp.pool, nil
	}
	wasm, err := h.s.fns.Module(ctx, f.Digest)
	if err != nil {
		return nil, err
	}
	m, err := h.s.engine.Compile(ctx, wasm)
	if err != nil {
		return nil, err
	}
	p, err := proxy.NewPool(h.s.engine, m, proxy.PoolOptions{
		Function: name, Session: "hook", MaxWorkers: 4, Timeout: f.Config.Timeout(),
		NewAccessor: func() proxy.Accessor { return noState{} }, Logger: h.s.log.Named("hook"),
	})
	if err != nil {
		return nil, err
	}
	h.retireLocked(name)
	h.pools[name] = &hookPool{version: f.Version, pool: p}
	return p, nil
}

// forget closes the pool of a deleted function; the function store calls
// it (OnDelete), so it must not wait for the requests still running.
func (h *hooks) forget(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retireLocked(name)
}

// retireLocked closes the pool of name, if any, in the background: its
// requests under way finish first.
func (h *hooks) retireLocked(name string) {
	hp := h.pools[name]
	if hp == nil {
		return
	}
	delete(h.pools, name)
	h.retiring.Go(func() { _ = hp.pool.Close(context.Background()) })
}

func (h *hooks) close(ctx context.Context) {
	h.mu.Lock()
	for _, hp := range h.pools {
		_ = hp.pool.Close(ctx)
	}
	h.pools = nil
	h.mu.Unlock()
	h.retiring.Wait()
}

// noState is the state of a hook: there is none.
type noState struct{}

func (noState) Get(context.Context, []byte, int32) ([]byte, bool, error) {
	return nil, false, state.ErrUnavailable
}
func (noState) Put(context.Context, []byte, []byte, int32) error { return state.ErrUnavailable }
func (noState) Delete(context.Context, []byte, int32) error      { return state.ErrUnavailable }
func (noState) End()                                             {}
func (noState) Close()                                           {}
