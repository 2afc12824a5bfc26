package placement_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/internal/consultest"
	"github.com/xfaas/xfaas/internal/nomadtest"
	"github.com/xfaas/xfaas/internal/testbin"
)

// poolSize is the pool job's count in these tests.
const poolSize = 2

// small is a function size the test pool's containers (2 workers of 100
// millicores and 128 MB: 1200 millicores, 352 MiB) hold.
var small = placement.Size{Workers: 1, WorkerCPUMillicores: 100, WorkerMemoryMB: 128}

// nomadCluster is a consul agent, a nomad agent with the xfaas driver and
// the pool job of jobspecs/ running on it.
type nomadCluster struct {
	consul *consultest.Agent
	nomad  *nomadtest.Agent
	node   string
}

func startNomadCluster(t testing.TB) *nomadCluster {
	t.Helper()
	consul := consultest.Start(t)
	nomad := nomadtest.Start(t, nomadtest.Options{ConsulAddr: consul.HTTPAddr, ProxyPath: testbin.Xfaas(t)})
	c := &nomadCluster{consul: consul, nomad: nomad, node: nomad.NodeName(t)}
	nomad.RunJob(t, filepath.Join(testbin.Root(), "jobspecs", "xfaas-pool.nomad.hcl"),
		map[string]string{"count": fmt.Sprint(poolSize), "max_workers": "2"})
	return c
}

func (c *nomadCluster) backend(t *testing.T) *placement.Nomad {
	t.Helper()
	b, err := placement.NewNomad(placement.NomadOptions{Nomad: c.nomad.Client, Consul: c.consul.NewClient(t), Capacity: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// waitPool waits until the node has want unclaimed pool containers.
func (c *nomadCluster) waitPool(t *testing.T, b placement.Backend, want int) placement.Node {
	t.Helper()
	var last []placement.Node
	var err error
	testbin.Poll(t, 60*time.Second, func() bool {
		last, err = b.Nodes(context.Background())
		return err == nil && len(last) == 1 && last[0].Name == c.node && last[0].Pool == want
	}, func() string {
		return fmt.Sprintf("nodes %+v, %v; want %d pool containers on %s", last, err, want, c.node)
	})
	return last[0]
}

// TestNomad runs the nomad backend against real agents and the pool job.
func TestNomad(t *testing.T) {
	c := startNomadCluster(t)
	b1, b2 := c.backend(t), c.backend(t)
	c.waitPool(t, b1, poolSize)

	var hits []placement.Container
	var b1Misses int
	t.Run("ClaimRace", func(t *testing.T) { hits, b1Misses = claimRace(t, c, b1, b2) })
	if t.Failed() {
		return
	}
	t.Run("Release", func(t *testing.T) { release(t, c, b1, b2, hits) })
	t.Run("Lost", func(t *testing.T) { lost(t, c, b1) })
	t.Run("Close", func(t *testing.T) { closeBackend(t, c, b2, b1Misses) })
}

type claimResult struct {
	backend int
	c       placement.Container
	hit     bool
	err     error
}

// Two replicas, two claimers each, race for the two pool containers: each
// is claimed once; the two losers get new one-off allocations.
// It returns the hits and how many misses b1 holds.
func claimRace(t *testing.T, c *nomadCluster, b1, b2 *placement.Nomad) ([]placement.Container, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	results := make(chan claimResult, 4)
	var wg sync.WaitGroup
	for i, b := range []*placement.Nomad{b1, b2, b1, b2} {
		wg.Go(func() {
			ct, hit, err := b.Claim(ctx, c.node, small)
			results <- claimResult{i % 2, ct, hit, err}
		})
	}
	wg.Wait()
	close(results)
	seen := map[string]bool{}
	var hits []placement.Container
	misses, b1Misses := 0, 0
	for r := range results {
		if r.err != nil {
			t.Fatalf("claim: %v", r.err)
		}
		if seen[r.c.ID] {
			t.Fatalf("container %s claimed twice", r.c.ID)
		}
		seen[r.c.ID] = true
		if r.c.Node != c.node || !strings.HasPrefix(r.c.Addr, "tcp://127.0.0.1:") {
			t.Errorf("claimed %+v; want a tcp container on %s", r.c, c.node)
		}
		checkServes(t, r.c)
		if r.hit {
			hits = append(hits, r.c)
		} else {
			misses++
			if r.backend == 0 {
				b1Misses++
			}
			if !jobExists(t, c, r.c) {
				t.Errorf("miss %s has no one-off job", r.c.ID)
			}
		}
	}
	if len(hits) != poolSize || misses != 4-poolSize {
		t.Fatalf("%d hits, %d misses; want %d and %d", len(hits), misses, poolSize, 4-poolSize)
	}
	nodes, err := b2.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Claimed != 4 || nodes[0].Pool != 0 {
		t.Fatalf("nodes after the race: %+v, %v; want 4 claimed, an empty pool", nodes, err)
	}
	return hits, b1Misses
}

// checkServes asks the container's proxy who it is: the id the backend
// reports is the proxy's own, and it is unbound.
func checkServes(t *testing.T, c placement.Container) {
	t.Helper()
	resp, err := http.Get("http://" + strings.TrimPrefix(c.Addr, "tcp://") + "/v1/status")
	if err != nil {
		t.Fatalf("status of %s: %v", c.ID, err)
	}
	defer resp.Body.Close()
	var st struct {
		Container string `json:"container"`
		Role      string `json:"role"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Container != c.ID || st.Role != "pool" {
		t.Errorf("container at %s says %+v; want %s, unbound", c.Addr, st, c.ID)
	}
}

func jobExists(t *testing.T, c *nomadCluster, ct placement.Container) bool {
	a := c.nomad.AllocOf(t, ct.ID)
	return a != nil && strings.HasPrefix(a.JobID, placement.DefaultJobPrefix)
}

// Releasing a pool container stops its allocation, and Nomad starts a
// fresh one in its place; releasing a one-off deregisters its job.
func release(t *testing.T, c *nomadCluster, b1, b2 *placement.Nomad, hits []placement.Container) {
	ctx := context.Background()
	for _, h := range hits {
		for _, b := range []*placement.Nomad{b1, b2} {
			if err := b.Release(ctx, h.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, h := range hits {
		testbin.Poll(t, 30*time.Second, func() bool {
			a := c.nomad.AllocOf(t, h.ID)
			return a == nil || a.ClientStatus == "complete"
		}, func() string { return fmt.Sprintf("allocation of %s did not end", h.ID) })
	}
	node := c.waitPool(t, b1, poolSize)
	if node.Claimed != 4-poolSize {
		t.Fatalf("claimed %d after releasing the hits; want %d", node.Claimed, 4-poolSize)
	}
	// The replacements are fresh containers.
	for range hits {
		ct, hit, err := b1.Claim(ctx, c.node, small)
		if err != nil || !hit {
			t.Fatalf("claim after replenishing: %+v hit=%v %v", ct, hit, err)
		}
		for _, old := range hits {
			if ct.ID == old.ID {
				t.Fatalf("released container %s claimed again", old.ID)
			}
		}
		if err := b1.Release(ctx, ct.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// A claimed container killed with SIGKILL is delivered by Lost, and its
// claim goes.
func lost(t *testing.T, c *nomadCluster, b *placement.Nomad) {
	ctx := context.Background()
	ct, _, err := b.Claim(ctx, c.node, small)
	if err != nil {
		t.Fatal(err)
	}
	pid := nomadtest.ProxyPID(ct.ID)
	if pid == 0 {
		t.Fatalf("no proxy process with --id %s", ct.ID)
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-b.Lost():
		if got.ID != ct.ID {
			t.Fatalf("lost %s; want %s", got.ID, ct.ID)
		}
		t.Logf("lost after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatalf("%s killed, not reported lost", ct.ID)
	}
	kv := c.consul.Client.KV()
	testbin.Poll(t, 10*time.Second, func() bool {
		p, _, err := kv.Get(placement.DefaultClaimPrefix+ct.ID, nil)
		return err == nil && p == nil
	}, func() string { return "the lost container's claim is still there" })
}

// Close releases the replica's claims and removes its one-off jobs; the
// pool job stays.
func closeBackend(t *testing.T, c *nomadCluster, b *placement.Nomad, othersClaims int) {
	ctx := context.Background()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	testbin.Poll(t, 30*time.Second, func() bool {
		jobs, _, err := c.nomad.Client.Jobs().List(nil)
		if err != nil {
			return false
		}
		live := 0
		for _, j := range jobs {
			if strings.HasPrefix(j.ID, placement.DefaultJobPrefix) && j.Status != "dead" {
				live++
			}
		}
		return live == othersClaims
	}, func() string { return "one-off jobs of the closed replica still running" })
	pairs, _, err := c.consul.Client.KV().List(placement.DefaultClaimPrefix, &consulapi.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The other replica released everything but its misses.
	if len(pairs) != othersClaims {
		t.Fatalf("%d claims left after Close; want %d (the other replica's)", len(pairs), othersClaims)
	}
	if j, _, err := c.nomad.Client.Jobs().Info(placement.DefaultPoolJob, nil); err != nil || j.Stop != nil && *j.Stop {
		t.Fatalf("pool job after Close: %v", err)
	}
}
