package placement_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane/placement"
)

// BenchmarkNomadClaim measures a claim on a real cluster: from the pool (a
// Consul query and a KV CAS), and on a pool miss (a one-off job registered,
// placed, started and registered in Consul), each until the container
// answers /healthz. Between iterations the container is released and, for
// hits, the pool refilled, untimed.
//
//	go test -run '^$' -bench NomadClaim -benchtime 10x ./controlplane/placement/
func BenchmarkNomadClaim(b *testing.B) {
	c := startNomadCluster(b)
	ctx := context.Background()
	run := func(b *testing.B, backend *placement.Nomad, wantHit bool) {
		for b.Loop() {
			b.StopTimer()
			if wantHit {
				c.waitPoolB(b, backend, poolSize)
			}
			b.StartTimer()
			ct, hit, err := backend.Claim(ctx, c.node, small)
			if err != nil || hit != wantHit {
				b.Fatalf("claim: hit=%v %v", hit, err)
			}
			waitHealthy(b, ct)
			b.StopTimer()
			if err := backend.Release(ctx, ct.ID); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.Run("hit", func(b *testing.B) { run(b, c.benchBackend(b, ""), true) })
	// A backend that knows no pool job misses every time.
	b.Run("miss", func(b *testing.B) { run(b, c.benchBackend(b, "no-such-pool"), false) })
}

// BenchmarkNomadReplenish measures how long the pool takes to offer a new
// container after a claimed one is released: Nomad stops the allocation,
// places its replacement, the driver starts it and Consul's check passes.
func BenchmarkNomadReplenish(b *testing.B) {
	c := startNomadCluster(b)
	backend := c.benchBackend(b, "")
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		c.waitPoolB(b, backend, poolSize)
		ct, _, err := backend.Claim(ctx, c.node, small)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := backend.Release(ctx, ct.ID); err != nil {
			b.Fatal(err)
		}
		c.waitPoolB(b, backend, poolSize)
	}
}

// BenchmarkNomadNodes measures Nodes, which every ColdSession and
// CopySession reads before it claims: the nodes with their resources, the
// claims, the pool, the allocations' resources and the pool job's rate.
func BenchmarkNomadNodes(b *testing.B) {
	c := startNomadCluster(b)
	backend := c.benchBackend(b, "")
	c.waitPoolB(b, backend, poolSize)
	ctx := context.Background()
	for b.Loop() {
		if _, err := backend.Nodes(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func (c *nomadCluster) benchBackend(b *testing.B, poolJob string) *placement.Nomad {
	b.Helper()
	backend, err := placement.NewNomad(placement.NomadOptions{Nomad: c.nomad.Client, Consul: c.consul.NewClient(b),
		PoolJob: poolJob, Capacity: 8})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = backend.Close(ctx)
	})
	return backend
}

func (c *nomadCluster) waitPoolB(b *testing.B, backend placement.Backend, want int) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		nodes, err := backend.Nodes(context.Background())
		if err == nil && len(nodes) == 1 && nodes[0].Pool >= want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("pool not refilled: %+v, %v", nodes, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitHealthy(b *testing.B, ct placement.Container) {
	b.Helper()
	resp, err := http.Get("http://" + strings.TrimPrefix(ct.Addr, "tcp://") + "/healthz")
	if err != nil {
		b.Fatalf("container %s: %v", ct.ID, err)
	}
	resp.Body.Close()
}
