package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
)

// socketKey carries the socket a probe dials in its request's context.
type socketKey struct{}

// newProbeClient returns an HTTP client that dials the unix socket in the
// request's context. Connections are not kept: they would be pooled by
// host, and every probe's host is the same.
func newProbeClient(timeout time.Duration) *http.Client {
	var d net.Dialer
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", ctx.Value(socketKey{}).(string))
			},
		},
	}
}

// ttlLoop probes the unix containers this Registry registered every
// CheckInterval and reports the result to their TTL checks (doc.go).
func (r *Registry) ttlLoop(ctx context.Context) {
	defer r.wg.Done()
	tick := time.NewTicker(r.opts.CheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.mu.Lock()
		sockets := maps.Clone(r.unix)
		r.mu.Unlock()
		for container, socket := range sockets {
			r.refresh(ctx, container, socket)
		}
	}
}

// refresh probes one container and updates its check.
func (r *Registry) refresh(ctx context.Context, container, socket string) {
	status, output := api.HealthPassing, "GET /healthz: 200 OK"
	if err := r.probe(ctx, socket); err != nil {
		status, output = api.HealthCritical, err.Error()
	}
	err := r.c.Agent().UpdateTTLOpts("service:"+container, output, status, (&api.QueryOptions{}).WithContext(ctx))
	if se := (api.StatusError{}); errors.As(err, &se) && se.Code == http.StatusNotFound {
		// Consul dropped the service (DeregisterAfter): stop refreshing it.
		r.mu.Lock()
		if r.unix[container] == socket {
			delete(r.unix, container)
		}
		r.mu.Unlock()
		return
	}
	if err != nil && ctx.Err() == nil {
		r.opts.Logger.Warn("failed to update ttl check", "container", container, "error", err)
	}
}

func (r *Registry) probe(ctx context.Context, socket string) error {
	ctx = context.WithValue(ctx, socketKey{}, socket)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://xfaas-proxy/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET /healthz: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	return nil
}
