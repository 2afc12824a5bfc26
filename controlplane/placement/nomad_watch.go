package placement

import (
	"context"
	"fmt"
	"regexp"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
)

// staleClaimAge is how old a claim on an allocation Nomad does not list
// must be before it is taken for garbage collected: younger, the
// allocation may just not be in the list read before the claim was made.
const staleClaimAge = 5 * time.Minute

// watch follows every allocation with blocking queries: a claimed
// container whose allocation ended without Release is lost; a claim on an
// allocation that ended (a replica that died with it) is dropped. While
// Nomad is unreachable (an agent restart) nothing is declared lost.
func (n *Nomad) watch() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-n.stop
		cancel()
	}()
	var index uint64
	backoff := 250 * time.Millisecond
	// Only the allocations containers can be claimed from.
	filter := fmt.Sprintf(`JobID == %q or JobID matches %q`, n.opts.PoolJob, "^"+regexp.QuoteMeta(n.opts.JobPrefix))
	for ctx.Err() == nil {
		allocs, meta, err := n.opts.Nomad.Allocations().List(
			(&nomadapi.QueryOptions{Filter: filter, WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx))
		if err != nil {
			if ctx.Err() == nil {
				n.log.Debug("failed to watch allocations", "error", err)
			}
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 250 * time.Millisecond
		if meta.LastIndex < index {
			index = 0 // the servers' state was reset
		} else {
			index = meta.LastIndex
		}
		n.checkAllocs(ctx, allocs)
	}
}

// ended reports whether an allocation's container has stopped for good.
func ended(a *nomadapi.AllocationListStub) bool {
	switch a.ClientStatus {
	case "complete", "failed", "lost":
		return true
	}
	for _, ts := range a.TaskStates {
		if ts.State == "dead" {
			return true
		}
	}
	return false
}

// checkAllocs reports this replica's lost containers and drops claims of
// ended allocations, whoever made them.
func (n *Nomad) checkAllocs(ctx context.Context, allocs []*nomadapi.AllocationListStub) {
	byID := make(map[string]*nomadapi.AllocationListStub, len(allocs))
	for _, a := range allocs {
		byID[a.ID] = a
	}
	gone := func(c *nomadClaim) bool {
		a, ok := byID[c.Alloc]
		return (ok && ended(a)) || (!ok && time.Since(c.At) > staleClaimAge)
	}
	n.mu.Lock()
	var lost []*nomadClaim
	for _, c := range n.claims {
		if !c.released && gone(c) {
			c.released = true
			lost = append(lost, c)
		}
	}
	n.mu.Unlock()
	for _, c := range lost {
		n.log.Warn("container lost", "container", c.Container, "node", c.Node, "alloc", c.Alloc)
		if c.Job != "" {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _, _ = n.opts.Nomad.Jobs().Deregister(c.Job, true, (&nomadapi.WriteOptions{}).WithContext(dctx))
			cancel()
		}
		n.drop(c)
		select {
		case n.lost <- c.container():
		case <-n.stop:
			return
		}
	}
	n.dropStale(ctx, gone)
}

// dropStale deletes the claims of ended allocations that no live replica
// holds (their replica died), so they stop counting against the node.
func (n *Nomad) dropStale(ctx context.Context, gone func(*nomadClaim) bool) {
	all, err := n.allClaims(ctx)
	if err != nil {
		return
	}
	for _, c := range all {
		n.mu.Lock()
		_, mine := n.claims[c.Container]
		n.mu.Unlock()
		if !mine && gone(c) {
			n.drop(c)
		}
	}
}
