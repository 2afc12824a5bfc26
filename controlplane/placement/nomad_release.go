package placement

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// Release stops a claimed container's allocation (deregisters its one-off
// job); Nomad replaces a pool allocation, with a fresh process. The claim
// key goes once the allocation has ended, so no replica can claim a
// stopping container.
func (n *Nomad) Release(ctx context.Context, id string) error {
	n.mu.Lock()
	c, closing := n.claims[id], n.closing
	if c != nil {
		c.released = true
	}
	n.mu.Unlock()
	if closing {
		return nil // Close releases every claim
	}
	if c == nil {
		p, _, err := n.opts.Consul.KV().Get(n.key(id), (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("release %s: %w", id, err)
		}
		if p == nil {
			return nil // not claimed, or already released
		}
		c = &nomadClaim{released: true}
		if err := json.Unmarshal(p.Value, c); err != nil {
			return fmt.Errorf("release %s: %w", id, err)
		}
	}
	if err := n.stopAlloc(ctx, c); err != nil {
		return fmt.Errorf("release %s: %w", id, err)
	}
	// Added under the lock, so never while Close waits.
	n.mu.Lock()
	closing = n.closing
	if !closing {
		n.wg.Add(1)
	}
	n.mu.Unlock()
	if closing {
		n.drop(c)
		return nil
	}
	go func() {
		defer n.wg.Done()
		n.dropWhenEnded(c)
	}()
	return nil
}

func (n *Nomad) stopAlloc(ctx context.Context, c *nomadClaim) error {
	if c.Job != "" {
		_, _, err := n.opts.Nomad.Jobs().Deregister(c.Job, true, (&nomadapi.WriteOptions{}).WithContext(ctx))
		return err
	}
	_, err := n.opts.Nomad.Allocations().Stop(&nomadapi.Allocation{ID: c.Alloc}, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if isNotFound(err) {
		return nil
	}
	return err
}

// dropWhenEnded waits for a released container's allocation to end, at
// most StopTimeout, then deletes its claim.
func (n *Nomad) dropWhenEnded(c *nomadClaim) {
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.StopTimeout)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := n.waitEnded(ctx, c.Alloc); err != nil {
		n.log.Warn("released container did not end in time; dropping its claim", "container", c.Container, "alloc", c.Alloc, "error", err)
	}
	n.drop(c)
}

// waitEnded follows an allocation with blocking queries until it is
// terminal or gone.
func (n *Nomad) waitEnded(ctx context.Context, alloc string) error {
	var index uint64
	for {
		a, meta, err := n.opts.Nomad.Allocations().Info(alloc, (&nomadapi.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second}).WithContext(ctx))
		switch {
		case isNotFound(err):
			return nil
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !sleepCtx(ctx, 250*time.Millisecond) {
				return ctx.Err()
			}
			continue
		case a.ClientTerminalStatus():
			return nil
		}
		index = meta.LastIndex
	}
}

// drop deletes a claim key and forgets the claim.
func (n *Nomad) drop(c *nomadClaim) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.opts.Consul.KV().Delete(n.key(c.Container), (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		n.log.Warn("failed to delete a claim", "container", c.Container, "error", err)
	}
	n.mu.Lock()
	if n.claims[c.Container] == c {
		delete(n.claims, c.Container)
	}
	n.mu.Unlock()
}
