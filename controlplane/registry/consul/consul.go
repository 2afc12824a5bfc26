package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/controlplane/registry"
)

// Defaults of Options.
const (
	DefaultService         = "xfaas-session"
	DefaultKeyPrefix       = "xfaas/primary/"
	DefaultCheckInterval   = 2 * time.Second
	DefaultDeregisterAfter = time.Minute
	DefaultSyncTimeout     = 10 * time.Second
	DefaultOwnerKeyPrefix  = "xfaas/owner/"
	DefaultOwnerTTL        = 15 * time.Second
	DefaultOwnerLockDelay  = 15 * time.Second
)

// ErrInvalidConfig is wrapped by New for bad Options.
var ErrInvalidConfig = errors.New("invalid consul registry config")

// Options configure a Registry. Zero fields take the defaults.
type Options struct {
	// Service is the Consul service name. The default is "xfaas-session".
	Service string
	// KeyPrefix is where claims live in the KV store; it ends in "/". The
	// default is "xfaas/primary/".
	KeyPrefix string
	// CheckInterval is how often a container's /healthz is probed: by
	// Consul for tcp addresses, by the Registry for unix ones. The default
	// is 2 s, the minimum 1 s.
	CheckInterval time.Duration
	// DeregisterAfter is how long a check may stay critical before Consul
	// removes the service. The default is 1 min.
	DeregisterAfter time.Duration
	// SyncTimeout bounds how long Register and Deregister wait for the
	// catalog to show the change. The default is 10 s.
	SyncTimeout time.Duration
	// OwnerKeyPrefix is where owner leases live in the KV store; it ends
	// in "/". The default is "xfaas/owner/".
	OwnerKeyPrefix string
	// OwnerTTL is the TTL of the Consul session that holds this process's
	// owner leases; it is renewed every third of it, and Consul ends it
	// between one and two TTLs after the process stops renewing. The
	// default is 15 s, the minimum Consul's 10 s.
	OwnerTTL time.Duration
	// OwnerLockDelay is how long a lease whose session ended stays closed
	// to every replica, so that a partitioned owner can notice and stop
	// before another replica acts as owner (doc.go). The default is 15 s,
	// the maximum Consul's 60 s; zero takes the default, so a test that
	// wants almost none sets 1 ms.
	OwnerLockDelay time.Duration
	// Logger receives the unix health refresher's and the owner session's
	// warnings. The default discards them.
	Logger hclog.Logger
}

func (o *Options) fill() {
	o.Service = cmp.Or(o.Service, DefaultService)
	o.KeyPrefix = cmp.Or(o.KeyPrefix, DefaultKeyPrefix)
	o.CheckInterval = cmp.Or(o.CheckInterval, DefaultCheckInterval)
	o.DeregisterAfter = cmp.Or(o.DeregisterAfter, DefaultDeregisterAfter)
	o.SyncTimeout = cmp.Or(o.SyncTimeout, DefaultSyncTimeout)
	o.OwnerKeyPrefix = cmp.Or(o.OwnerKeyPrefix, DefaultOwnerKeyPrefix)
	o.OwnerTTL = cmp.Or(o.OwnerTTL, DefaultOwnerTTL)
	o.OwnerLockDelay = cmp.Or(o.OwnerLockDelay, DefaultOwnerLockDelay)
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
}

func (o *Options) validate() error {
	switch {
	case !strings.HasSuffix(o.KeyPrefix, "/") || strings.HasPrefix(o.KeyPrefix, "/"):
		return fmt.Errorf("%w: key_prefix %q must end, and not start, with /", ErrInvalidConfig, o.KeyPrefix)
	case !strings.HasSuffix(o.OwnerKeyPrefix, "/") || strings.HasPrefix(o.OwnerKeyPrefix, "/"):
		return fmt.Errorf("%w: owner_key_prefix %q must end, and not start, with /", ErrInvalidConfig, o.OwnerKeyPrefix)
	case o.OwnerKeyPrefix == o.KeyPrefix:
		return fmt.Errorf("%w: owner_key_prefix and key_prefix must differ", ErrInvalidConfig)
	case o.OwnerTTL < 10*time.Second || o.OwnerTTL > 24*time.Hour:
		// Consul's bounds for a session TTL.
		return fmt.Errorf("%w: owner_ttl must be between 10s and 24h", ErrInvalidConfig)
	case o.OwnerLockDelay < 0 || o.OwnerLockDelay > time.Minute:
		// Consul caps a session's lock delay at 60 s.
		return fmt.Errorf("%w: owner_lock_delay must be between 0 and 1m", ErrInvalidConfig)
	case o.CheckInterval < time.Second:
		// Consul's floor for HTTP checks: it would run them every second anyway.
		return fmt.Errorf("%w: check_interval must be >= 1s", ErrInvalidConfig)
	case o.DeregisterAfter < time.Minute:
		// Consul's own floor: it reaps critical services at most once a minute.
		return fmt.Errorf("%w: deregister_after must be >= 1m", ErrInvalidConfig)
	case o.SyncTimeout < 0:
		return fmt.Errorf("%w: sync_timeout must be >= 0", ErrInvalidConfig)
	}
	return nil
}

// Registry is a registry.Registry on Consul. Close stops the health refresh
// of unix containers and ends the owner session with its leases; it does
// not deregister anything nor release any claim.
type Registry struct {
	c    *api.Client
	opts Options
	http *http.Client // probes unix containers

	mu   sync.Mutex
	unix map[string]string // container id -> socket path, refreshed by ttlLoop

	// ownerMu guards sessionID: the Consul session that holds this
	// process's owner leases (owner.go), "" before the first lease and
	// after the session ended.
	ownerMu   sync.Mutex
	sessionID string
	// holder says which process holds a lease ("<host> pid <pid>"), for an
	// operator reading the key; Consul decides by its Session field alone.
	holder string

	closing atomic.Bool
	ctx     context.Context    // of the Registry's goroutines
	stop    context.CancelFunc // ends ttlLoop, its probes and renewLoop
	wg      sync.WaitGroup
}

var _ registry.Registry = (*Registry)(nil)

// New returns a Registry that talks to Consul through client, normally the
// local agent's (api.DefaultConfig honours CONSUL_HTTP_ADDR and friends).
func New(client *api.Client, opts Options) (*Registry, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidConfig)
	}
	opts.fill()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	r := &Registry{
		c:    client,
		opts: opts,
		http: newProbeClient(opts.CheckInterval),
		unix: map[string]string{},
	}
	host, _ := os.Hostname()
	r.holder = fmt.Sprintf("%s pid %d", host, os.Getpid())
	r.ctx, r.stop = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.ttlLoop(r.ctx)
	return r, nil
}

// Close stops the Registry's goroutines and destroys its owner session,
// which ends its leases. It is idempotent.
func (r *Registry) Close() error {
	if !r.closing.CompareAndSwap(false, true) {
		return nil
	}
	r.stop()
	r.ownerMu.Lock()
	id := r.sessionID
	r.sessionID = ""
	r.ownerMu.Unlock()
	r.wg.Wait()
	if id == "" {
		return nil
	}
	return r.destroySession(id)
}
