package controlplane_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/xfaas/xfaas/controlplane/cptest"
	"github.com/xfaas/xfaas/controlplane/placement"
)

// roomFake is a fake, in front of the real local backend, for what that
// backend cannot be made to do: report each node's room as the nomad
// backend does (free, for both Free and Allocatable; a node not listed
// counts no resources), and refuse a claim on a node in refuse as the nomad
// backend does when Nomad cannot place the one-off job it started there
// (ErrNodeFull). Every other claim is the local backend's, whose containers
// serve.
type roomFake struct {
	*placement.Local
	free   map[string]*placement.Resources
	refuse map[string]bool

	mu    sync.Mutex
	tried []string // the node of every claim
}

func (f *roomFake) Nodes(ctx context.Context) ([]placement.Node, error) {
	nodes, err := f.Local.Nodes(ctx)
	for i, n := range nodes {
		nodes[i].Free, nodes[i].Allocatable = f.free[n.Name], f.free[n.Name]
	}
	return nodes, err
}

func (f *roomFake) Claim(ctx context.Context, node string, size placement.Size) (placement.Container, bool, error) {
	f.mu.Lock()
	f.tried = append(f.tried, node)
	f.mu.Unlock()
	if f.refuse[node] {
		return placement.Container{}, false, fmt.Errorf("%w: nomad cannot place job xfaas-session-fake (exhausted: cpu)", placement.ErrNodeFull)
	}
	return f.Local.Claim(ctx, node, size)
}

func (f *roomFake) claims() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tried)
}

func startWithRoom(t *testing.T, nodes int, fake *roomFake) *cptest.Env {
	return cptest.Start(t, cptest.Options{Nodes: nodes, Pool: 1, Placement: func(l *placement.Local) placement.Backend {
		fake.Local = l
		return fake
	}})
}

// A new session goes to the least-loaded node that fits its function's
// container, and to the next one when that node cannot start it after all.
func TestColdSessionGoesWhereItFits(t *testing.T) {
	// The default function's container: 2000 millicores, 1376 MiB. All
	// nodes are equally loaded, so the first that fits is tried first.
	roomy := &placement.Resources{Millicores: 4000, MemoryMB: 8192}
	fake := &roomFake{
		free:   map[string]*placement.Resources{"node-0": {Millicores: 1999, MemoryMB: 8192}, "node-1": roomy, "node-2": roomy},
		refuse: map[string]bool{"node-1": true},
	}
	e := startWithRoom(t, 3, fake)
	e.Deploy("counter", "c/counter", "")
	inv := e.MustInvoke("counter", "alice", "incr")
	if inv.Node != "node-2" || inv.Body != "1" {
		t.Errorf("served by %s (%q); want node-2, the one that fits and starts it", inv.Node, inv.Body)
	}
	if got := fake.claims(); !slices.Equal(got, []string{"node-1", "node-2"}) {
		t.Errorf("claims on %v; want node-1 (refused), then node-2", got)
	}
}

// A function whose container no node could start, even empty, gets a 503
// that says it is too big for any node, without a Retry-After, and no
// container is tried.
func TestFunctionTooBigForAnyNode(t *testing.T) {
	small := &placement.Resources{Millicores: 8000, MemoryMB: 1024}
	fake := &roomFake{free: map[string]*placement.Resources{"node-0": small, "node-1": small}}
	e := startWithRoom(t, 2, fake)
	e.Deploy("big", "c/counter", `{"max_workers": 4, "worker_memory_mb": 512}`) // 2144 MiB
	inv := e.Invoke("big", "alice", "incr")
	want := "function too big for any node: a container of 4 workers x 100 millicores x 512 MB needs 1400 millicores and 2144 MiB"
	if inv.Status != http.StatusServiceUnavailable || inv.Kind != "unavailable" || !strings.HasPrefix(inv.Body, want) || inv.RetryAfter != "" {
		t.Errorf("invoke: %d %s %q, Retry-After %q; want a 503 %q and no Retry-After", inv.Status, inv.Kind, inv.Body, inv.RetryAfter, want)
	}
	if got := fake.claims(); len(got) != 0 {
		t.Errorf("claims on %v; want none", got)
	}
}
