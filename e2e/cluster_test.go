package e2e_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/internal/containerid"
	"github.com/xfaas/xfaas/internal/nomadtest"
	"github.com/xfaas/xfaas/internal/testbin"
)

// TestCluster runs xfaas on real nomad, consul and NATS, with the jobspecs
// of jobspecs/ submitted as they are. The subtests share one cluster and
// run in order.
func TestCluster(t *testing.T) {
	env := Start(t, EnvOptions{})
	counter := env.Deploy(t, "counter", "c/counter", `{"durability": "log"}`)

	t.Run("PoolHealthy", func(t *testing.T) { poolHealthy(t, env) })
	var alice string
	t.Run("StickySession", func(t *testing.T) { alice = stickySession(t, counter) })
	t.Run("PrimaryInConsul", func(t *testing.T) { primaryInConsul(t, env, counter, alice) })
	t.Run("AllocStats", func(t *testing.T) { allocStats(t, env, alice) })
	t.Run("Secondaries", func(t *testing.T) { secondaries(t, env) })
	t.Run("KillPrimary", func(t *testing.T) { killPrimary(t, env, counter) })
	t.Run("RestartNomad", func(t *testing.T) { restartNomad(t, env, counter) })
}

// Every pool container is a running allocation of the pool job whose
// service passes its check, with the meta of DESIGN.md.
func poolHealthy(t *testing.T, env *Env) {
	entries := env.WaitPool(t, env.PoolSize)
	for _, e := range entries {
		s := e.Service
		id := containerid.Nomad(s.Meta["alloc"], s.Meta["task"])
		// A container's check can pass before the servers learn, from the
		// client's next report, that its allocation runs.
		testbin.Poll(t, 10*time.Second, func() bool {
			_, ok := env.RunningContainers(t)[id]
			return ok
		}, func() string {
			return fmt.Sprintf("pool service %s (container %s) has no running allocation", s.ID, id)
		})
		if s.Meta["role"] != "pool" || s.Meta["node"] == "" || s.Address != "127.0.0.1" || s.Port == 0 {
			t.Errorf("pool service %+v", s)
		}
	}
}

// One session's requests, one at a time, all go to one container, and the
// state follows them.
func stickySession(t *testing.T, fn *Function) string {
	var container string
	for i := 1; i <= 10; i++ {
		r := fn.MustInvoke(t, "alice", "incr")
		if string(r.Body) != strconv.Itoa(i) {
			t.Fatalf("incr %d returned %q", i, r.Body)
		}
		if container == "" {
			container = r.Container
		}
		if r.Container != container || r.Role != "primary" {
			t.Fatalf("request %d served by %s (%s); the session's container is %s", i, r.Container, r.Role, container)
		}
	}
	return container
}

// A user finds the session's primary through Consul's health API with a
// Meta filter, at the address the container serves on.
func primaryInConsul(t *testing.T, env *Env, fn *Function, container string) {
	r := fn.MustInvoke(t, "alice", "get")
	q := &consulapi.QueryOptions{Filter: fmt.Sprintf(`Service.Meta.function == %q and Service.Meta.session == %q and Service.Meta.role == "primary"`, fn.Name, r.SessionID)}
	var found []*consulapi.ServiceEntry
	testbin.Poll(t, 15*time.Second, func() bool {
		var err error
		found, _, err = env.Consul.Client.Health().Service(placement.DefaultService, "", true, q)
		return err == nil && len(found) == 1
	}, func() string {
		return fmt.Sprintf("%d passing primaries of %s/%s; want 1", len(found), fn.Name, r.SessionID)
	})
	s := found[0].Service
	if s.ID != container || s.Meta["addr"] != fmt.Sprintf("tcp://%s:%d", s.Address, s.Port) {
		t.Fatalf("primary in consul: %+v; want container %s", s, container)
	}
	// And through Consul DNS, by the namespace's tag.
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, env.Consul.DNSAddr)
	}}
	name := fmt.Sprintf("primary-%s-%s.%s.service.consul.", fn.Name, r.SessionID, placement.DefaultService)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, srvs, err := res.LookupSRV(ctx, "", "", name)
	if err != nil || len(srvs) != 1 || int(srvs[0].Port) != s.Port {
		t.Fatalf("SRV %s = %v, %v; want port %d", name, srvs, err, s.Port)
	}
}

// The container's allocation reports its CPU and memory, as
// `nomad alloc status -stats` shows them.
func allocStats(t *testing.T, env *Env, container string) {
	a := env.AllocOf(t, container)
	if a == nil {
		t.Fatalf("no allocation runs %s", container)
	}
	var last string
	testbin.Poll(t, 20*time.Second, func() bool {
		st, err := env.Nomad.Client.Allocations().Stats(&nomadapi.Allocation{ID: a.ID}, nil)
		if err != nil || st.ResourceUsage == nil {
			last = fmt.Sprint(err)
			return false
		}
		cpu, mem := st.ResourceUsage.CpuStats, st.ResourceUsage.MemoryStats
		last = fmt.Sprintf("cpu %+v, memory %+v", cpu, mem)
		return cpu != nil && mem != nil && cpu.TotalTicks > 0 && (mem.RSS > 0 || mem.Usage > 0)
	}, func() string { return "stats of " + a.ID + ": " + last })
	out, err := env.Nomad.Command("alloc", "status", "-stats", a.ID).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Memory") {
		t.Fatalf("nomad alloc status -stats: %v\n%s", err, out)
	}
	t.Logf("%s", last)
}

// Concurrent requests on one session past max_workers scale it to
// secondaries on the node, each a Nomad allocation.
func secondaries(t *testing.T, env *Env) {
	fn := env.Deploy(t, "spin", "test/spin", `{"max_workers": 1, "max_containers": 3}`)
	fn.MustInvoke(t, "bob", "1")
	var mu sync.Mutex
	roles := map[string]string{}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			r := fn.MustInvoke(t, "bob", "400")
			mu.Lock()
			roles[r.Container] = r.Role
			mu.Unlock()
		})
	}
	wg.Wait()
	secondaries := 0
	for c, role := range roles {
		if role == "secondary" {
			secondaries++
		}
		// A container serves as soon as its proxy is ready; the servers
		// learn that its allocation runs when the client next reports.
		var a *nomadapi.AllocationListStub
		testbin.Poll(t, 10*time.Second, func() bool {
			a = env.AllocOf(t, c)
			return a != nil && a.ClientStatus == "running"
		}, func() string { return fmt.Sprintf("container %s (%s) is not a running allocation: %+v", c, role, a) })
	}
	if secondaries == 0 {
		t.Fatalf("served by %v; want secondaries", roles)
	}
	t.Logf("served by %d containers, %d secondaries", len(roles), secondaries)
}

// kill -9 of a session's primary: the next request restores the session
// in a new container, and with durability "log" no acknowledged write is
// lost.
func killPrimary(t *testing.T, env *Env, fn *Function) {
	const writes = 25
	var primary string
	for i := 1; i <= writes; i++ {
		r := fn.MustInvoke(t, "carol", "incr")
		if string(r.Body) != strconv.Itoa(i) {
			t.Fatalf("incr %d returned %q", i, r.Body)
		}
		primary = r.Container
	}
	pid := nomadtest.ProxyPID(primary)
	if pid == 0 {
		t.Fatalf("no proxy process of %s", primary)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// A request already on its way to the container when it dies fails
	// (503: whether it ran is unknown); the control plane learns of the
	// loss from Nomad and drops the session's dead primary.
	testbin.Poll(t, 30*time.Second, func() bool {
		ss, err := env.API.Sessions(context.Background(), fn.Name)
		if err != nil {
			return false
		}
		for _, s := range ss {
			if s.Primary != nil && s.Primary.Container == primary {
				return false
			}
		}
		return true
	}, func() string { return "the control plane still routes to the killed primary " + primary })
	noticed := time.Since(start)
	r := fn.MustInvoke(t, "carol", "incr")
	if string(r.Body) != strconv.Itoa(writes+1) {
		t.Fatalf("after the kill: incr returned %q; want %d (no acknowledged write lost)", r.Body, writes+1)
	}
	if r.Container == primary {
		t.Fatalf("served by the killed container %s", primary)
	}
	t.Logf("loss noticed after %s, restored after %s on %s", noticed.Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond), r.Container)
	testbin.Poll(t, 30*time.Second, func() bool {
		a := env.AllocOf(t, primary)
		return a == nil || a.ClientStatus == "failed"
	}, func() string { return "the killed container's allocation did not fail" })
}

// Restarting the nomad agent under load loses no container and no request:
// containers outlive it and the driver reattaches to them.
func restartNomad(t *testing.T, env *Env, fn *Function) {
	fn.MustInvoke(t, "dave", "incr")
	before := env.RunningContainers(t)
	pids := map[string]int{}
	for c := range before {
		pids[c] = nomadtest.ProxyPID(c)
	}
	ctx, stop := context.WithCancel(context.Background())
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := fn.Invoke(rctx, "dave", "incr")
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				acked.Add(1)
			}
		})
	}
	waitAcked := func(n int64) {
		target := acked.Load() + n
		testbin.Poll(t, 30*time.Second, func() bool { return acked.Load() >= target }, func() string { return "the load stalled" })
	}
	waitAcked(20)
	env.Nomad.Stop(t)
	waitAcked(20) // served while no agent runs
	env.Nomad.Restart(t)
	waitAcked(20)
	stop()
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d requests failed across the restart; first: %v", n, firstErr.Load())
	}
	r := fn.MustInvoke(t, "dave", "get")
	if got, want := string(r.Body), strconv.FormatInt(acked.Load()+1, 10); got != want {
		t.Fatalf("count after the restart is %s; want %s", got, want)
	}
	// Every container is still running, in the same process, and Nomad
	// says so once its client has reattached.
	testbin.Poll(t, 30*time.Second, func() bool {
		after := env.RunningContainers(t)
		for c, alloc := range before {
			if after[c] != alloc {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("running before %v, after %v", before, env.RunningContainers(t)) })
	for c, pid := range pids {
		if got := nomadtest.ProxyPID(c); got != pid || pid == 0 {
			t.Errorf("container %s: proxy pid %d before, %d after", c, pid, got)
		}
	}
	t.Logf("%d requests served across the restart", acked.Load())
}
