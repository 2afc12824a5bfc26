// Package placement starts and stops session containers on nodes. A
// backend keeps warm, unbound pool containers on every node, so that a new
// session namespace (ColdSession) or a new secondary (CopySession) binds a
// running container instead of waiting for one to start; only a pool miss
// waits. The local backend runs `xfaas proxy` processes on this machine as
// simulated nodes (xfaas dev, tests); the nomad backend places them as
// Nomad allocations.
package placement

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/cgroup"
	"github.com/xfaas/xfaas/internal/fnconfig"
)

// Container is a running session container.
type Container struct {
	ID   string `json:"container"`
	Node string `json:"node"`
	// Addr is the container's wire and HTTP address (tcp:// or unix://).
	Addr string `json:"addr"`
}

// Node is a place containers run, with its load.
type Node struct {
	Name string `json:"name"`
	// Capacity is how many containers the node may run, pool included.
	Capacity int `json:"capacity"`
	// Claimed is how many of its containers are claimed (bound or binding).
	Claimed int `json:"claimed"`
	// Pool is how many warm, unbound containers are ready to claim.
	Pool int `json:"pool"`
	// PoolSizes are the sizes of those containers, each size once; a
	// container whose size is not known holds nothing and is not listed.
	PoolSizes []Size `json:"pool_sizes,omitempty"`
	// Free is the largest container the node can still start, for a pool
	// miss, as its orchestrator counts what is taken: on Nomad, the node's
	// CPU and memory less what it reserves for itself and what its live
	// allocations reserve, as Nomad's scheduler counts them, in the limits
	// of a container that reserves as much. Nil where the backend does not
	// count resources, or the node does not report them: then any size is
	// tried there (the local backend, whose containers size their own
	// cgroups when bound).
	Free *Resources `json:"free,omitempty"`
	// Allocatable is the largest container the node could start with no
	// allocation on it: Free before the allocations. Nil with Free.
	Allocatable *Resources `json:"allocatable,omitempty"`
}

// Resources are CPU and memory in the terms of a container's limits
// (Size.Limits): millicores of CPU quota and MiB of memory.
type Resources struct {
	Millicores int64 `json:"millicores"`
	MemoryMB   int64 `json:"memory_mb"`
}

// holds reports whether a container for a function of size fits in r;
// nil, which counts nothing, holds any size.
func (r *Resources) holds(size Size) bool {
	if r == nil {
		return true
	}
	cpu, mem := size.Limits()
	return cpu <= r.Millicores && mem <= r.MemoryMB
}

// Room reports whether the node can take one more claimed container.
func (n Node) Room() bool { return n.Claimed < n.Capacity }

// Fits reports whether the node can give a function of size a container
// now: one of its unclaimed pool containers holds it, or a new container
// of its size fits in what the node has free. Room is the other question.
func (n Node) Fits(size Size) bool { return n.poolHolds(size) || n.Free.holds(size) }

// couldFit reports whether the node could give a function of size a
// container were everything but its pool gone.
func (n Node) couldFit(size Size) bool { return n.poolHolds(size) || n.Allocatable.holds(size) }

func (n Node) poolHolds(size Size) bool {
	return slices.ContainsFunc(n.PoolSizes, func(p Size) bool { return p.Holds(size) })
}

// ErrNoCapacity is returned when no node can run another container.
var ErrNoCapacity = &apierror.Error{Kind: apierror.Unavailable, Message: "no capacity: every node is full", RetryAfter: 1}

// ErrNodeFull is wrapped by Claim's error when the node it was asked for
// cannot take the container after all: its claimed containers reached its
// capacity, or (Nomad) the orchestrator could not place the container
// there. Another node may take it.
var ErrNodeFull = &apierror.Error{Kind: apierror.Unavailable, Message: "no capacity: the node cannot take the container", RetryAfter: 1}

// Backend places containers.
type Backend interface {
	// Nodes reports every node and its load.
	Nodes(ctx context.Context) ([]Node, error)
	// Claim returns an unbound container on node that can hold a function
	// of size: a warm pool container when the node has one (hit), else a
	// newly started one (miss).
	Claim(ctx context.Context, node string, size Size) (c Container, hit bool, err error)
	// Release stops a claimed container; it never serves again.
	Release(ctx context.Context, id string) error
	// Lost delivers claimed containers that ended without Release.
	Lost() <-chan Container
	// Close stops every container and cleans up.
	Close(ctx context.Context) error
}

// Size is what a container must hold for a function: Workers workers of
// WorkerCPUMillicores and WorkerMemoryMB each (the function config's
// max_workers, worker_cpu_millicores and worker_memory_mb). Zero fields
// take the function config's defaults.
type Size struct {
	Workers             int
	WorkerCPUMillicores int
	WorkerMemoryMB      int
}

// SizeOf is the size of a function with config c.
func SizeOf(c fnconfig.Config) Size {
	return Size{Workers: c.MaxWorkers, WorkerCPUMillicores: c.WorkerCPUMillicores, WorkerMemoryMB: c.WorkerMemoryMB}
}

// filled returns s with the defaults in its zero fields.
func (s Size) filled() Size {
	d := fnconfig.Default()
	if s.Workers <= 0 {
		s.Workers = d.MaxWorkers
	}
	if s.WorkerCPUMillicores <= 0 {
		s.WorkerCPUMillicores = d.WorkerCPUMillicores
	}
	if s.WorkerMemoryMB <= 0 {
		s.WorkerMemoryMB = d.WorkerMemoryMB
	}
	return s
}

// Limits are the CPU (millicores) and memory (MiB) limits of a container
// of size s: its workers plus the proxy's own (cgroup.ContainerSize).
func (s Size) Limits() (millicores, memoryMB int64) {
	s = s.filled()
	return cgroup.ContainerSize(s.Workers, s.WorkerCPUMillicores, s.WorkerMemoryMB)
}

// Holds reports whether a container of size s can run a function of size
// need: its CPU and memory limits are at least the function's. A worker's
// CPU quota then fits in the container's too, which cgroup v1 requires.
func (s Size) Holds(need Size) bool {
	cpu, mem := s.Limits()
	needCPU, needMem := need.Limits()
	return cpu >= needCPU && mem >= needMem
}

func (s Size) String() string {
	s = s.filled()
	return fmt.Sprintf("%d workers x %d millicores x %d MB", s.Workers, s.WorkerCPUMillicores, s.WorkerMemoryMB)
}

// Spread returns the nodes where a new container for a function of size
// may go, least-loaded first: those with room that fit it, by the share of
// their capacity claimed, ties in the order given, so placement is
// deterministic. With none, the error says why: a function too big for any
// node, even with nothing else on it, gets a 503 that says so and no
// Retry-After (retrying does not help until a bigger node joins); every node
// full of claims is ErrNoCapacity; else no node has room for size now.
func Spread(nodes []Node, size Size) ([]Node, error) {
	var out []Node
	for _, n := range nodes {
		if n.Room() && n.Fits(size) {
			out = append(out, n)
		}
	}
	slices.SortStableFunc(out, func(a, b Node) int { return cmp.Compare(a.Claimed*b.Capacity, b.Claimed*a.Capacity) })
	if len(out) > 0 {
		return out, nil
	}
	cpu, mem := size.Limits()
	switch {
	case len(nodes) > 0 && !slices.ContainsFunc(nodes, func(n Node) bool { return n.couldFit(size) }):
		var most Resources
		for _, n := range nodes {
			most.Millicores = max(most.Millicores, n.Allocatable.Millicores)
			most.MemoryMB = max(most.MemoryMB, n.Allocatable.MemoryMB)
		}
		return nil, apierror.New(apierror.Unavailable,
			"function too big for any node: a container of %s needs %d millicores and %d MiB; none of the %d nodes can start one of more than %d millicores or %d MiB",
			size, cpu, mem, len(nodes), most.Millicores, most.MemoryMB)
	case !slices.ContainsFunc(nodes, Node.Room):
		return nil, ErrNoCapacity
	}
	return nil, &apierror.Error{Kind: apierror.Unavailable, RetryAfter: 1,
		Message: fmt.Sprintf("no capacity: no node has room for a container of %s (%d millicores, %d MiB) now", size, cpu, mem)}
}
