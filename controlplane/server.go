// Package controlplane is the xfaas control plane: the HTTP API of
// DESIGN.md, the function store, hint verification, and the scheduler that
// turns hint-routed invocations into placements (vertical first, then
// horizontal). Placement (local processes or Nomad) and the registry
// (memory or Consul) are pluggable; NATS carries functions, modules and
// address updates.
package controlplane

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/proxy"
)

// Config configures a control plane. Zero fields take the defaults.
type Config struct {
	// Token, when set, is required (Authorization: Bearer) by management
	// calls: deploy, delete and evict.
	Token string
	// MaxModuleBytes bounds a deployed module. The default is 32 MiB.
	MaxModuleBytes int
	// MaxInputBytes bounds an invocation's body. The default is 6 MiB.
	MaxInputBytes int
	// CacheDir is the compilation cache, shared with the node's containers
	// so that validating a module at deploy warms their cache.
	CacheDir string
	// SecondaryIdle is how long an idle secondary lives. The default is 30 s.
	SecondaryIdle time.Duration
	// SweepInterval is how often the registry is swept for sessions whose
	// owner (control plane) is gone and that no request brings here. The
	// default is 1 min.
	SweepInterval time.Duration
}

func (c *Config) fill() {
	if c.MaxModuleBytes <= 0 {
		c.MaxModuleBytes = 32 << 20
	}
	if c.MaxInputBytes <= 0 {
		c.MaxInputBytes = 6 << 20
	}
}

// Deps are the engines a control plane runs on.
type Deps struct {
	NATS     *nats.Conn
	Backend  placement.Backend
	Registry registry.Registry
	Logger   hclog.Logger
}

// Server is a control plane.
type Server struct {
	cfg    Config
	log    hclog.Logger
	m      *Metrics
	fns    *FunctionStore
	sched  *Scheduler
	engine *proxy.Engine // runs hooks
	// validator compiles modules at deploy, with no memory limit of its
	// own, so that a module is checked against its function's.
	validator *proxy.Engine
	hooks     *hooks
	addrs     *addresses
	ckpts     *checkpointIndex
}

// NewServer opens the function store and starts the scheduler.
func NewServer(ctx context.Context, cfg Config, deps Deps) (_ *Server, err error) {
	cfg.fill()
	if deps.NATS == nil || deps.Backend == nil || deps.Registry == nil {
		return nil, errors.New("a control plane needs NATS, a placement backend and a registry")
	}
	if deps.Logger == nil {
		deps.Logger = hclog.NewNullLogger()
	}
	s := &Server{cfg: cfg, log: deps.Logger, m: NewMetrics(), addrs: newAddresses(deps.NATS, deps.Logger.Named("addresses"))}
	s.hooks = &hooks{s: s, pools: map[string]*hookPool{}}
	if s.engine, err = proxy.NewEngine(ctx, proxy.EngineOptions{CacheDir: cfg.CacheDir}); err != nil {
		return nil, err
	}
	if s.validator, err = proxy.NewEngine(ctx, proxy.EngineOptions{CacheDir: cfg.CacheDir, MemoryLimitMB: proxy.MaxMemoryMB}); err != nil {
		s.engine.Close(ctx)
		return nil, err
	}
	if s.fns, err = OpenFunctionStore(ctx, deps.NATS, s.log.Named("functions")); err != nil {
		s.engine.Close(ctx)
		s.validator.Close(ctx)
		return nil, err
	}
	s.sched = NewScheduler(SchedulerOptions{Backend: deps.Backend, Registry: deps.Registry, Modules: s.fns, Functions: s.fns,
		Announcer: s.addrs, SecondaryIdle: cfg.SecondaryIdle, SweepInterval: cfg.SweepInterval, Metrics: s.m, Logger: s.log.Named("scheduler")})
	s.fns.OnDelete(s.sched.EvictFunction)
	s.fns.OnDelete(s.hooks.forget)
	s.fns.OnUpdate(s.sched.Upgrade)
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		s.Close(ctx)
		return nil, err
	}
	s.ckpts = &checkpointIndex{js: js, durable: proxy.NewCheckpointStore(js)}
	if err := s.addrs.follow(ctx, deps.NATS, deps.Registry, s.sched.primaryChanged); err != nil {
		s.Close(ctx)
		return nil, err
	}
	return s, nil
}

// Handler serves the HTTP API.
func (s *Server) Handler() http.Handler { return s.routes() }

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{})
}

// Serve serves the HTTP API on ln until ctx is done, then stops accepting
// and lets requests in progress finish for up to 10 s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	<-done
	return err
}

// Close releases every session namespace and stops the control plane.
func (s *Server) Close(ctx context.Context) {
	s.addrs.close()
	s.sched.Close()
	s.hooks.close(ctx)
	s.fns.Close()
	s.engine.Close(ctx)
	s.validator.Close(ctx)
}
