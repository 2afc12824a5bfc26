package consul

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/controlplane/registry"
)

// errClosed: an owner lease was asked of a closed Registry.
var errClosed = errors.New("consul registry is closed")

// AcquireOwner takes or keeps the namespace's owner lease: a KV acquire of
// OwnerKeyPrefix/<function>/<session> with this Registry's Consul session
// (doc.go, "Owner leases"). Consul answers true for a key the session holds
// already, so keeping a lease costs one write, and false for a key another
// live session holds or whose last holder's session ended less than
// OwnerLockDelay ago.
func (r *Registry) AcquireOwner(ctx context.Context, function, session string) (bool, error) {
	key := r.ownerKey(function, session)
	for attempt := 0; ; attempt++ {
		id, err := r.ownerSession(ctx)
		if err != nil {
			return false, fmt.Errorf("acquire owner %s: %w", key, err)
		}
		won, _, err := r.c.KV().Acquire(&api.KVPair{Key: key, Value: []byte(r.holder), Session: id},
			(&api.WriteOptions{}).WithContext(ctx))
		if err != nil && attempt == 0 && strings.Contains(err.Error(), "invalid session") {
			// The session ended (a partition outlasted its TTL) before
			// the renew loop noticed: every lease it held is gone, so a
			// new session starts from nothing.
			r.dropSession(id)
			continue
		}
		if err != nil {
			return false, fmt.Errorf("acquire owner %s: %w", key, err)
		}
		return won, nil
	}
}

// ReleaseOwner deletes the namespace's owner key if this Registry's
// session holds it. The delete is a CAS at the index read, so it never
// removes a lease another replica took after the read. A released key,
// unlike one whose session ended, has no lock delay: a replica may take
// the namespace at once.
func (r *Registry) ReleaseOwner(ctx context.Context, function, session string) error {
	r.ownerMu.Lock()
	id := r.sessionID
	r.ownerMu.Unlock()
	if id == "" {
		return nil // no session, so no lease
	}
	key := r.ownerKey(function, session)
	p, _, err := r.c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("release owner %s: %w", key, err)
	}
	if p == nil || p.Session != id {
		return nil
	}
	if _, _, err := r.c.KV().DeleteCAS(&api.KVPair{Key: key, ModifyIndex: p.ModifyIndex}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("release owner %s: %w", key, err)
	}
	return nil
}

// Unowned reads every claim (KeyPrefix) and then every lease
// (OwnerKeyPrefix), two reads whatever the number of namespaces, and
// returns the claims whose lease key is absent or held by no session.
// Claims are read first: a placer takes the lease right after its claim,
// so a claim new enough to be read has had the most time to show its
// lease. A claim that does not decode is logged and left out, so that one
// bad key does not stop every sweep; Primary reports it to whoever asks
// for that namespace.
func (r *Registry) Unowned(ctx context.Context) ([]registry.Registration, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	claims, _, err := r.c.KV().List(r.opts.KeyPrefix, q)
	if err != nil {
		return nil, fmt.Errorf("list claims under %s: %w", r.opts.KeyPrefix, err)
	}
	leases, _, err := r.c.KV().List(r.opts.OwnerKeyPrefix, q)
	if err != nil {
		return nil, fmt.Errorf("list owner leases under %s: %w", r.opts.OwnerKeyPrefix, err)
	}
	held := make(map[string]bool, len(leases))
	for _, p := range leases {
		if p.Session != "" {
			held[strings.TrimPrefix(p.Key, r.opts.OwnerKeyPrefix)] = true
		}
	}
	var out []registry.Registration
	for _, p := range claims {
		if held[strings.TrimPrefix(p.Key, r.opts.KeyPrefix)] {
			continue
		}
		reg, err := decode(p)
		if err != nil {
			r.opts.Logger.Warn("skipping a claim that does not decode", "key", p.Key, "error", err)
			continue
		}
		out = append(out, reg)
	}
	return out, nil
}

// ownerSession returns this Registry's Consul session, creating it on the
// first lease (a control plane that never owns a namespace has none) and
// after the previous one ended. Each session gets a goroutine that renews
// it until it ends or the Registry closes.
func (r *Registry) ownerSession(ctx context.Context) (string, error) {
	r.ownerMu.Lock()
	defer r.ownerMu.Unlock()
	if r.closing.Load() {
		return "", errClosed
	}
	if r.sessionID != "" {
		return r.sessionID, nil
	}
	id, _, err := r.c.Session().Create(&api.SessionEntry{
		Name:      "xfaas control plane " + r.holder,
		TTL:       r.opts.OwnerTTL.String(),
		Behavior:  api.SessionBehaviorDelete,
		LockDelay: r.opts.OwnerLockDelay,
	}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("create owner session: %w", err)
	}
	r.sessionID = id
	// Under ownerMu, which Close takes after setting closing and before
	// it waits: no Add comes after that Wait has begun.
	r.wg.Add(1)
	go r.renewLoop(r.ctx, id)
	return id, nil
}

// renewLoop renews session id every third of OwnerTTL, so that two
// renewals may fail before Consul may end it. When Consul no longer knows
// it (the renewals failed for longer than the TTL, or an operator
// destroyed it), its leases are gone; the next AcquireOwner makes a new
// session, and the scheduler learns there which namespaces it still owns.
func (r *Registry) renewLoop(ctx context.Context, id string) {
	defer r.wg.Done()
	tick := time.NewTicker(r.opts.OwnerTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		entry, _, err := r.c.Session().Renew(id, (&api.WriteOptions{}).WithContext(ctx))
		switch {
		case err != nil && ctx.Err() == nil:
			r.opts.Logger.Warn("failed to renew the owner session", "session", id, "error", err)
		case err == nil && entry == nil:
			r.opts.Logger.Warn("owner session ended; its namespace leases are gone", "session", id)
			r.dropSession(id)
			return
		}
	}
}

// dropSession forgets session id if it is still the current one.
func (r *Registry) dropSession(id string) {
	r.ownerMu.Lock()
	defer r.ownerMu.Unlock()
	if r.sessionID == id {
		r.sessionID = ""
	}
}

// destroySession ends the owner session at Close, so other replicas may
// take its leases after OwnerLockDelay rather than after the TTL.
func (r *Registry) destroySession(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
	defer cancel()
	if _, err := r.c.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("destroy owner session %s: %w", id, err)
	}
	return nil
}

// ownerKey is the lease's KV key: OwnerKeyPrefix/<function>/<session>,
// escaped as the claim's key is.
func (r *Registry) ownerKey(function, session string) string {
	return r.opts.OwnerKeyPrefix + escape(function) + "/" + escape(session)
}
