package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/controlplane/registry"
)

// maxRetries bounds the loops that retry when a claim changes between a
// read and a write; each retry means another replica made progress.
const maxRetries = 16

// ClaimPrimary makes reg the namespace's primary with a create-only CAS put,
// then registers its service with role primary. The loser of a race gets
// the winner and false.
func (r *Registry) ClaimPrimary(ctx context.Context, reg registry.Registration) (registry.Registration, bool, error) {
	if reg.Function == "" || reg.Session == "" || reg.Container == "" {
		return registry.Registration{}, false, fmt.Errorf("claim primary: function, session and container are required, got %+v", reg)
	}
	reg.Role = registry.RolePrimary
	val, err := json.Marshal(reg)
	if err != nil {
		return registry.Registration{}, false, fmt.Errorf("claim primary: %w", err)
	}
	key := r.key(reg.Function, reg.Session)
	for range maxRetries {
		won, _, err := r.c.KV().CAS(&api.KVPair{Key: key, Value: val, ModifyIndex: 0}, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return registry.Registration{}, false, fmt.Errorf("claim primary %s: %w", key, err)
		}
		if won {
			if err := r.Register(ctx, reg); err != nil {
				return registry.Registration{}, false, r.undoClaim(ctx, reg, err)
			}
			return reg, true, nil
		}
		owner, _, err := r.read(ctx, key)
		if errors.Is(err, registry.ErrNotFound) {
			continue // released between our put and our read: try again
		}
		return owner, false, err
	}
	return registry.Registration{}, false, fmt.Errorf("claim primary %s: claim changed %d times while reading it", key, maxRetries)
}

// undoTimeout bounds undoing a claim. It is not SyncTimeout: the claim is
// undone because that ran out, and Consul may well be slow.
const undoTimeout = 10 * time.Second

// undoClaim undoes a claim whose service registration failed, so the
// namespace does not stay owned by a container nobody can find, and no
// primary that is not one shows in DNS and the health API: it removes the
// service from the agent, then releases the claim. The container had no
// registration before (a claimed pool container is registered first as
// primary or secondary, and one whose claim failed is released), so there
// is none to restore. The agent syncs the removal to the catalog in the
// background; the undo does not wait for it.
func (r *Registry) undoClaim(ctx context.Context, reg registry.Registration, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	var errs []error
	if err := r.deregisterAgent(ctx, reg.Container); err != nil && !errors.Is(err, registry.ErrNotFound) {
		errs = append(errs, err)
	}
	if err := r.ReleasePrimary(ctx, reg.Function, reg.Session, reg.Container); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("claim primary: %w (and undoing the claim failed: %v)", cause, err)
	}
	return fmt.Errorf("claim primary: %w", cause)
}

// ReleasePrimary deletes the claim with a CAS delete if container holds it.
func (r *Registry) ReleasePrimary(ctx context.Context, function, session, container string) error {
	key := r.key(function, session)
	for range maxRetries {
		owner, index, err := r.read(ctx, key)
		if errors.Is(err, registry.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("release primary: %w", err)
		}
		if owner.Container != container {
			return nil
		}
		done, _, err := r.c.KV().DeleteCAS(&api.KVPair{Key: key, ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("release primary %s: %w", key, err)
		}
		if done {
			return nil
		}
	}
	return fmt.Errorf("release primary %s: claim changed %d times while releasing it", key, maxRetries)
}

// Primary returns the namespace's claim, or registry.ErrNotFound.
func (r *Registry) Primary(ctx context.Context, function, session string) (registry.Registration, error) {
	owner, _, err := r.read(ctx, r.key(function, session))
	return owner, err
}

// read returns the claim at key and its ModifyIndex, or registry.ErrNotFound.
func (r *Registry) read(ctx context.Context, key string) (registry.Registration, uint64, error) {
	p, _, err := r.c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return registry.Registration{}, 0, fmt.Errorf("read %s: %w", key, err)
	}
	if p == nil {
		return registry.Registration{}, 0, fmt.Errorf("primary %s: %w", key, registry.ErrNotFound)
	}
	reg, err := decode(p)
	return reg, p.ModifyIndex, err
}

func decode(p *api.KVPair) (registry.Registration, error) {
	var reg registry.Registration
	if err := json.Unmarshal(p.Value, &reg); err != nil {
		return registry.Registration{}, fmt.Errorf("corrupt claim at %s: %w", p.Key, err)
	}
	return reg, nil
}

// key is the claim's KV key: KeyPrefix/<function>/<session>.
func (r *Registry) key(function, session string) string {
	return r.opts.KeyPrefix + escape(function) + "/" + escape(session)
}

// escape makes s one key segment: no "/" inside, and no "." or ".." that an
// HTTP path would resolve.
func escape(s string) string {
	switch s {
	case ".", "..":
		return strings.ReplaceAll(s, ".", "%2E")
	}
	return url.PathEscape(s)
}
