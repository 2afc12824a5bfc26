package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/controlplane/registry"
)

// Meta keys of a container's service.
const (
	MetaFunction = "function"
	MetaSession  = "session"
	MetaRole     = "role"
	MetaNode     = "node"
	MetaAddr     = "addr"
)

// Register registers or updates the container's service through the local
// agent and waits until the catalog shows it.
func (r *Registry) Register(ctx context.Context, reg registry.Registration) error {
	svc, socket, err := r.service(reg)
	if err != nil {
		return fmt.Errorf("register %s: %w", reg.Container, err)
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := r.c.Agent().ServiceRegisterOpts(svc, opts); err != nil {
		return fmt.Errorf("register %s with the consul agent: %w", reg.Container, err)
	}
	r.mu.Lock()
	if socket != "" {
		r.unix[reg.Container] = socket
	} else {
		delete(r.unix, reg.Container)
	}
	r.mu.Unlock()
	return r.awaitCatalog(ctx, reg.Container, func(e *api.ServiceEntry) bool {
		return e != nil && maps.Equal(e.Service.Meta, svc.Meta) && slices.Equal(e.Service.Tags, svc.Tags) &&
			e.Service.Port == svc.Port
	})
}

// Deregister removes the container's service from the local agent, which
// must be the one that registered it, and waits until the catalog drops it.
// An unknown container is registry.ErrNotFound.
func (r *Registry) Deregister(ctx context.Context, container string) error {
	if err := r.deregisterAgent(ctx, container); err != nil {
		return err
	}
	return r.awaitCatalog(ctx, container, func(e *api.ServiceEntry) bool { return e == nil })
}

// deregisterAgent removes the container's service from the local agent and
// stops refreshing its TTL check.
func (r *Registry) deregisterAgent(ctx context.Context, container string) error {
	r.mu.Lock()
	delete(r.unix, container)
	r.mu.Unlock()
	err := r.c.Agent().ServiceDeregisterOpts(container, (&api.QueryOptions{}).WithContext(ctx))
	if se := (api.StatusError{}); errors.As(err, &se) && se.Code == http.StatusNotFound {
		return fmt.Errorf("deregister %s: %w", container, registry.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("deregister %s from the consul agent: %w", container, err)
	}
	return nil
}

// List returns the function's registrations (all with "") from the health
// API, sorted by container, whatever their health.
func (r *Registry) List(ctx context.Context, function string) ([]registry.Registration, error) {
	q := &api.QueryOptions{}
	if function != "" {
		q.Filter = "Service.Meta." + MetaFunction + " == " + strconv.Quote(function)
	}
	entries, _, err := r.c.Health().Service(r.opts.Service, "", false, q.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list %s services of %q: %w", r.opts.Service, function, err)
	}
	out := make([]registry.Registration, 0, len(entries))
	for _, e := range entries {
		out = append(out, fromService(e.Service))
	}
	slices.SortFunc(out, func(a, b registry.Registration) int { return strings.Compare(a.Container, b.Container) })
	return out, nil
}

// awaitCatalog waits, with blocking queries bounded by SyncTimeout, until
// done accepts the catalog's entry of the container (nil when absent): the
// agent syncs registrations to the catalog in the background.
func (r *Registry) awaitCatalog(ctx context.Context, container string, done func(*api.ServiceEntry) bool) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.SyncTimeout)
	defer cancel()
	q := &api.QueryOptions{Filter: "Service.ID == " + strconv.Quote(container)}
	for {
		entries, meta, err := r.c.Health().Service(r.opts.Service, "", false, q.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("wait for the catalog to sync %s: %w", container, err)
		}
		var e *api.ServiceEntry
		if len(entries) > 0 {
			e = entries[0]
		}
		if done(e) {
			return nil
		}
		q.WaitIndex = max(meta.LastIndex, 1)
	}
}

// service builds the agent registration of reg, and returns the socket to
// probe for a unix address.
func (r *Registry) service(reg registry.Registration) (svc *api.AgentServiceRegistration, socket string, err error) {
	if reg.Container == "" {
		return nil, "", errors.New("empty container id")
	}
	svc = &api.AgentServiceRegistration{ID: reg.Container, Name: r.opts.Service, Tags: tags(reg), Meta: map[string]string{}}
	for k, v := range map[string]string{MetaFunction: reg.Function, MetaSession: reg.Session, MetaRole: reg.Role, MetaNode: reg.Node, MetaAddr: reg.Addr} {
		if v != "" {
			svc.Meta[k] = v
		}
	}
	check := &api.AgentServiceCheck{
		Name:                           "xfaas proxy /healthz",
		DeregisterCriticalServiceAfter: r.opts.DeregisterAfter.String(),
	}
	switch scheme, rest, _ := strings.Cut(reg.Addr, "://"); scheme {
	case "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return nil, "", fmt.Errorf("address %q: %w", reg.Addr, err)
		}
		if svc.Port, err = strconv.Atoi(port); err != nil {
			return nil, "", fmt.Errorf("address %q: bad port", reg.Addr)
		}
		svc.Address = host
		check.HTTP = "http://" + rest + "/healthz"
		check.Interval = r.opts.CheckInterval.String()
		check.Timeout = r.opts.CheckInterval.String()
	case "unix":
		if rest == "" {
			return nil, "", fmt.Errorf("address %q: no socket path", reg.Addr)
		}
		socket = rest
		// Three probes may be missed before the check turns critical.
		check.TTL = (3 * r.opts.CheckInterval).String()
	default:
		return nil, "", fmt.Errorf("address %q: want tcp://host:port or unix:///path", reg.Addr)
	}
	svc.Check = check
	return svc, socket, nil
}

// tags make the service findable through Consul DNS, which filters on one
// tag (doc.go).
func tags(reg registry.Registration) []string {
	var t []string
	if reg.Role != "" {
		t = append(t, reg.Role)
	}
	if reg.Function != "" {
		t = append(t, "fn-"+reg.Function)
	}
	if reg.Session != "" {
		t = append(t, "s-"+reg.Session)
	}
	if reg.Role != "" && reg.Function != "" && reg.Session != "" {
		t = append(t, reg.Role+"-"+reg.Function+"-"+reg.Session)
	}
	return t
}

func fromService(s *api.AgentService) registry.Registration {
	return registry.Registration{
		Container: s.ID,
		Function:  s.Meta[MetaFunction],
		Session:   s.Meta[MetaSession],
		Role:      s.Meta[MetaRole],
		Node:      s.Meta[MetaNode],
		Addr:      s.Meta[MetaAddr],
	}
}
