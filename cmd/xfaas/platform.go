package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/bus"
	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/controlplane/registry"
	consulreg "github.com/xfaas/xfaas/controlplane/registry/consul"
)

// platformConfig is the configuration of a control plane: the JSON file of
// `xfaas controlplane --config FILE`, and what `xfaas dev` fills from its
// flags.
type platformConfig struct {
	// Listen is the HTTP API address. The default is 127.0.0.1:8080.
	Listen string `json:"listen"`
	// Data holds the embedded NATS server's JetStream store, the
	// compilation cache and the containers' sockets.
	Data string `json:"data"`
	// NATS is the URL of an external NATS server with JetStream. Empty
	// runs an embedded one on NATSListen.
	NATS string `json:"nats"`
	// NATSListen is the embedded server's address. The default is
	// 127.0.0.1 on a free port.
	NATSListen string `json:"nats_listen"`
	// Token guards management calls when set.
	Token     string          `json:"token"`
	Placement placementConfig `json:"placement"`
	Registry  registryConfig  `json:"registry"`
}

type placementConfig struct {
	// Backend is "local" (the default: processes on simulated nodes) or
	// "nomad" (allocations of the xfaas task driver).
	Backend string `json:"backend"`
	// Nodes, Pool and Capacity size the local backend (defaults 2, 2, 32).
	// Capacity is also the nomad backend's claimed containers per node.
	Nodes    int `json:"nodes"`
	Pool     int `json:"pool"`
	Capacity int `json:"capacity"`
	// Network is "unix" (the default) or "tcp" for container addresses.
	Network string `json:"network"`
	// NoCgroups runs containers without cgroup limits.
	NoCgroups bool `json:"no_cgroups"`
	// Nomad is the nomad backend's Nomad API address. The default is the
	// Nomad client's (NOMAD_ADDR, else http://127.0.0.1:4646).
	Nomad string `json:"nomad"`
	// Consul is the Consul HTTP address where the nomad backend finds pool
	// containers and writes claims. The default is the Consul client's
	// (CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
	Consul string `json:"consul"`
	// PoolJob is the pool job's name. The default is "xfaas-pool".
	PoolJob string `json:"pool_job"`
}

type registryConfig struct {
	// Backend is "memory" (the default, one control plane) or "consul".
	Backend string `json:"backend"`
	// Consul is the consul registry's Consul HTTP address, as
	// placement.consul.
	Consul string `json:"consul"`
}

func defaultPlatformConfig() platformConfig {
	return platformConfig{Listen: "127.0.0.1:8080", NATSListen: "127.0.0.1:-1",
		Placement: placementConfig{Backend: "local", Nodes: 2, Pool: 2, Capacity: 32, Network: "unix"},
		Registry:  registryConfig{Backend: "memory"}}
}

// loadPlatformConfig reads a config file over the defaults, strictly.
func loadPlatformConfig(path string) (platformConfig, error) {
	cfg := defaultPlatformConfig()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, cfg.validate()
}

func (c *platformConfig) validate() error {
	if c.Data == "" {
		return errors.New("config: data (a directory) is required")
	}
	if c.Placement.Backend != "local" && c.Placement.Backend != "nomad" {
		return fmt.Errorf("config: placement backend %q is not supported (local, nomad)", c.Placement.Backend)
	}
	if c.Registry.Backend != "memory" && c.Registry.Backend != "consul" {
		return fmt.Errorf("config: registry backend %q is not supported (memory, consul)", c.Registry.Backend)
	}
	if c.Placement.Backend == "nomad" && c.Registry.Backend != "consul" {
		// Pool containers and claims are found in Consul, and the
		// containers of a cluster outlive one control plane's memory.
		return errors.New("config: placement backend nomad needs registry backend consul")
	}
	return nil
}

// platform is a running control plane with what it runs on.
type platform struct {
	cfg     platformConfig
	log     hclog.Logger
	nats    *bus.Embedded // embedded, or nil
	natsURL string
	nc      *nats.Conn
	backend placement.Backend
	reg     registry.Registry
	srv     *controlplane.Server
	ln      net.Listener
	lock    *os.File // held on the data directory (lockData)
}

// startPlatform brings up NATS, placement, the registry and the control
// plane, and listens on the API address. It takes the data directory's
// lock and the API address first, so a second platform on either is
// refused before it starts anything. On error it undoes what it did.
func startPlatform(ctx context.Context, cfg platformConfig, log hclog.Logger) (_ *platform, err error) {
	p := &platform{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return nil, err
	}
	if p.lock, err = lockData(cfg.Data); err != nil {
		return nil, err
	}
	if p.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if p.natsURL, err = p.startNATS(); err != nil {
		return nil, err
	}
	if p.nc, err = nats.Connect(p.natsURL, nats.Name("xfaas-controlplane"), nats.MaxReconnects(-1)); err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", p.natsURL, err)
	}
	if err := p.startRegistry(); err != nil {
		return nil, err
	}
	if err := p.startBackend(); err != nil {
		return nil, err
	}
	if p.srv, err = controlplane.NewServer(ctx, controlplane.Config{Token: cfg.Token, CacheDir: filepath.Join(cfg.Data, "cache")},
		controlplane.Deps{NATS: p.nc, Backend: p.backend, Registry: p.reg, Logger: log}); err != nil {
		return nil, err
	}
	return p, nil
}

// lockData takes an exclusive lock on the data directory for the life of
// the process (the kernel drops it when the process ends, however it
// ends): the embedded NATS server's store, the containers' sockets and the
// nodes' checkpoints there cannot be shared by two platforms.
func lockData(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("the data directory %s is in use by another xfaas dev or control plane: stop that one, or give this one another --data", dir)
		}
		return nil, fmt.Errorf("lock the data directory %s: %w", dir, err)
	}
	return f, nil
}

// startRegistry opens the configured registry.
func (p *platform) startRegistry() error {
	if p.cfg.Registry.Backend != "consul" {
		p.reg = registry.NewMemory()
		return nil
	}
	client, err := consulClient(p.cfg.Registry.Consul)
	if err != nil {
		return err
	}
	r, err := consulreg.New(client, consulreg.Options{Logger: p.log.Named("registry")})
	if err != nil {
		return err
	}
	p.reg = r
	return nil
}

// startBackend starts the configured placement backend.
func (p *platform) startBackend() error {
	cfg := p.cfg.Placement
	if cfg.Backend != "nomad" {
		var err error
		p.backend, err = placement.NewLocal(placement.LocalOptions{
			Dir: filepath.Join(p.cfg.Data, "run"), CacheDir: filepath.Join(p.cfg.Data, "cache"),
			Nodes: cfg.Nodes, PoolSize: cfg.Pool, Capacity: cfg.Capacity,
			Network: cfg.Network, Cgroups: !cfg.NoCgroups, Logger: p.log.Named("local"),
			// Containers follow session addresses for pull_state.
			ProxyArgs: []string{"--nats", p.natsURL},
		})
		return err
	}
	nomadCfg := nomadapi.DefaultConfig()
	if cfg.Nomad != "" {
		nomadCfg.Address = cfg.Nomad
	}
	nc, err := nomadapi.NewClient(nomadCfg)
	if err != nil {
		return fmt.Errorf("nomad client: %w", err)
	}
	cc, err := consulClient(cfg.Consul)
	if err != nil {
		return err
	}
	p.backend, err = placement.NewNomad(placement.NomadOptions{Nomad: nc, Consul: cc, PoolJob: cfg.PoolJob,
		Capacity: cfg.Capacity, Logger: p.log.Named("nomad")})
	return err
}

// consulClient is a client of the Consul agent at addr, or of the default
// one (CONSUL_HTTP_ADDR, else 127.0.0.1:8500) when addr is "".
func consulClient(addr string) (*consulapi.Client, error) {
	cfg := consulapi.DefaultConfig()
	if addr != "" {
		cfg.Address = addr
	}
	c, err := consulapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return c, nil
}

// startNATS returns the URL of the configured NATS server, starting an
// embedded one with JetStream under the data directory when none is given.
func (p *platform) startNATS() (string, error) {
	if p.cfg.NATS != "" {
		return p.cfg.NATS, nil
	}
	host, port, err := net.SplitHostPort(p.cfg.NATSListen)
	if err != nil {
		return "", fmt.Errorf("nats_listen: %w", err)
	}
	portNum, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("nats_listen port: %w", err)
	}
	p.nats, err = bus.StartEmbedded(bus.EmbeddedOptions{Name: "xfaas-dev", Host: host, Port: portNum,
		JetStream: true, Dir: filepath.Join(p.cfg.Data, "nats"), Logger: p.log.Named("nats")})
	if err != nil {
		return "", err
	}
	return p.nats.ClientURL(), nil
}

// apiURL is the API's base URL.
func (p *platform) apiURL() string { return "http://" + p.ln.Addr().String() }

// serve serves the API until ctx is done.
func (p *platform) serve(ctx context.Context) error { return p.srv.Serve(ctx, p.ln) }

// close stops everything in reverse order: sessions, containers (and their
// cgroups), NATS. It works after a partial start.
func (p *platform) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if p.srv != nil {
		p.srv.Close(ctx)
	}
	if p.backend != nil {
		if err := p.backend.Close(ctx); err != nil {
			p.log.Error("failed to stop containers", "error", err)
		}
	}
	if p.reg != nil {
		// Last of the control plane: it ends the owner leases (on Consul,
		// destroys the owner session), after the scheduler released what
		// it retired, so other replicas may take over what it did not.
		if err := p.reg.Close(); err != nil {
			p.log.Warn("failed to close the registry", "error", err)
		}
	}
	if p.nc != nil {
		p.nc.Close()
	}
	if p.nats != nil {
		p.nats.Shutdown()
	}
	if p.ln != nil {
		p.ln.Close() // when serve never ran; closed already otherwise
	}
	if p.lock != nil {
		p.lock.Close() // last: everything in the data directory has stopped
	}
}
