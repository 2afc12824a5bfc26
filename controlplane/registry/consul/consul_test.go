package consul_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/controlplane/registry/consul"
	"github.com/xfaas/xfaas/controlplane/registry/registrytest"
	"github.com/xfaas/xfaas/internal/consultest"
	"github.com/xfaas/xfaas/internal/testbin"
)

// fastCheck makes checks turn passing within about a second: Consul's
// floor for HTTP check intervals.
const fastCheck = time.Second

// One agent serves every subtest; each subtest has its own service name and
// key prefix, so they cannot see each other's registrations.
func TestRegistry(t *testing.T) {
	agent := consultest.Start(t)
	var n atomic.Int64
	isolation := func() consul.Options {
		i := n.Add(1)
		return consul.Options{Service: fmt.Sprintf("xfaas-session-t%d", i), KeyPrefix: fmt.Sprintf("xfaas-test/%d/primary/", i),
			// Leases of a closed replica free at once; ownerLockDelay
			// tests the delay itself.
			OwnerKeyPrefix: fmt.Sprintf("xfaas-test/%d/owner/", i), OwnerLockDelay: time.Millisecond}
	}
	isolated := func(t *testing.T, client *api.Client) *consul.Registry {
		return newRegistry(t, client, isolation())
	}

	t.Run("Conformance", func(t *testing.T) {
		var mu sync.Mutex
		opts := map[registry.Registry]consul.Options{}
		registrytest.Run(t, func(t *testing.T) registry.Registry {
			o := isolation()
			r := newRegistry(t, agent.Client, o)
			mu.Lock()
			opts[r] = o
			mu.Unlock()
			return r
		}, func(t *testing.T, r registry.Registry) registry.Registry {
			mu.Lock()
			o := opts[r]
			mu.Unlock()
			return newRegistry(t, agent.NewClient(t), o) // another process: its own client
		})
	})
	t.Run("OwnerSessionEnds", func(t *testing.T) { ownerSessionEnds(t, agent, isolation()) })
	t.Run("OwnerLockDelay", func(t *testing.T) {
		o := isolation()
		o.OwnerLockDelay = 2 * time.Second
		ownerLockDelay(t, agent, o)
	})
	t.Run("ClaimRaceAcrossReplicas", func(t *testing.T) { claimRaceAcrossReplicas(t, agent, isolation()) })
	t.Run("EscapedKeys", func(t *testing.T) { escapedKeys(t, isolated(t, agent.Client)) })
	t.Run("UnixTTL", func(t *testing.T) { unixTTL(t, agent, isolated(t, agent.Client)) })
	t.Run("ClaimUndone", func(t *testing.T) { claimUndone(t, agent, isolation()) })
	// Last, and with the default service name, as a user would look it up.
	t.Run("FindPrimary", func(t *testing.T) {
		findPrimary(t, agent, newRegistry(t, agent.Client, consul.Options{CheckInterval: fastCheck}))
	})
}

func newRegistry(t *testing.T, client *api.Client, opts consul.Options) *consul.Registry {
	t.Helper()
	if opts.CheckInterval == 0 {
		opts.CheckInterval = fastCheck
	}
	r, err := consul.New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// Several control-plane replicas, each with its own client, race for one
// namespace: one wins, every other is told who; only the winner can
// release.
func claimRaceAcrossReplicas(t *testing.T, agent *consultest.Agent, opts consul.Options) {
	ctx := context.Background()
	const replicas, perReplica = 6, 4
	regs := make([]*consul.Registry, replicas)
	for i := range regs {
		regs[i] = newRegistry(t, agent.NewClient(t), opts)
	}
	type result struct {
		claimer string
		owner   registry.Registration
		won     bool
	}
	results := make(chan result, replicas*perReplica)
	var wg sync.WaitGroup
	for i, r := range regs {
		for j := range perReplica {
			wg.Go(func() {
				me := fmt.Sprintf("r%d-c%d", i, j)
				owner, won, err := r.ClaimPrimary(ctx, registry.Registration{
					Container: me, Function: "fn", Session: "race", Role: registry.RoleSecondary,
					Node: "node-" + strconv.Itoa(i), Addr: "tcp://127.0.0.1:1",
				})
				if err != nil {
					t.Errorf("claim by %s: %v", me, err)
				}
				results <- result{me, owner, won}
			})
		}
	}
	wg.Wait()
	close(results)
	var winner string
	var owners []string
	for res := range results {
		if res.won {
			if winner != "" {
				t.Fatalf("two winners: %s and %s", winner, res.claimer)
			}
			if res.owner.Container != res.claimer {
				t.Fatalf("winner %s got owner %+v", res.claimer, res.owner)
			}
			winner = res.claimer
		}
		owners = append(owners, res.owner.Container)
	}
	if winner == "" {
		t.Fatal("nobody won")
	}
	for _, o := range owners {
		if o != winner {
			t.Fatalf("a claimer was told the owner is %q, not %q", o, winner)
		}
	}
	got, err := regs[1].Primary(ctx, "fn", "race")
	if err != nil || got.Container != winner || got.Role != registry.RolePrimary {
		t.Fatalf("Primary = %+v, %v; want %s as primary", got, err, winner)
	}
	// The winner's service says primary.
	list, err := regs[2].List(ctx, "fn")
	if err != nil || len(list) != 1 || list[0].Container != winner || list[0].Role != registry.RolePrimary {
		t.Fatalf("List = %+v, %v", list, err)
	}

	for _, r := range regs {
		if err := r.ReleasePrimary(ctx, "fn", "race", "not-"+winner); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := regs[0].Primary(ctx, "fn", "race"); err != nil || got.Container != winner {
		t.Fatalf("after releases by non-owners: %+v, %v", got, err)
	}
	if err := regs[3].ReleasePrimary(ctx, "fn", "race", winner); err != nil {
		t.Fatal(err)
	}
	if _, err := regs[4].Primary(ctx, "fn", "race"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after release by the owner: %v; want ErrNotFound", err)
	}
}

// Names that are not plain path segments still make one key each.
func escapedKeys(t *testing.T, r *consul.Registry) {
	ctx := context.Background()
	for _, s := range []string{"a/b", "a", "..", ".", "x y%z", "ü"} {
		if _, won, err := r.ClaimPrimary(ctx, registry.Registration{Container: "c-" + s, Function: "f/n", Session: s, Addr: "tcp://127.0.0.1:1"}); !won || err != nil {
			t.Fatalf("claim %q: won=%v %v", s, won, err)
		}
	}
	for _, s := range []string{"a/b", "a", "..", ".", "x y%z", "ü"} {
		got, err := r.Primary(ctx, "f/n", s)
		if err != nil || got.Container != "c-"+s || got.Session != s {
			t.Fatalf("Primary(%q) = %+v, %v", s, got, err)
		}
	}
	if _, err := r.Primary(ctx, "f", "n/a"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("f, n/a: %v; want ErrNotFound", err)
	}
}

// A unix container's TTL check follows its /healthz as the Registry probes it.
func unixTTL(t *testing.T, agent *consultest.Agent, r *consul.Registry) {
	ctx := context.Background()
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/healthz" || !healthy.Load() {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	reg := registry.Registration{Container: "u1", Function: "fn", Session: "s", Role: registry.RoleSecondary, Node: "n", Addr: "unix://" + sock}
	if err := r.Register(ctx, reg); err != nil {
		t.Fatal(err)
	}
	if got, err := r.List(ctx, "fn"); err != nil || len(got) != 1 || got[0] != reg {
		t.Fatalf("List = %+v, %v; want %+v", got, err, reg)
	}
	waitCheck(t, agent.Client, "service:u1", api.HealthPassing)
	healthy.Store(false)
	waitCheck(t, agent.Client, "service:u1", api.HealthCritical)
	if err := r.Deregister(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if err := r.Deregister(ctx, "u1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second deregister: %v; want ErrNotFound", err)
	}
}

// A claim whose registration does not reach the catalog in time is undone
// whole: the claim released, and the agent no longer holding the service
// that names the container primary. The namespace is then free to claim.
func claimUndone(t *testing.T, agent *consultest.Agent, opts consul.Options) {
	ctx := context.Background()
	slow := opts
	slow.SyncTimeout = time.Nanosecond // every wait for the catalog times out
	r := newRegistry(t, agent.Client, slow)
	reg := registry.Registration{Container: "c-undone", Function: "fn", Session: "s", Node: "n1", Addr: "tcp://127.0.0.1:1"}
	if _, won, err := r.ClaimPrimary(ctx, reg); err == nil || won {
		t.Fatalf("claim with a %s sync timeout: won=%v %v; want an error", slow.SyncTimeout, won, err)
	}
	if p, _, err := agent.Client.KV().Get(opts.KeyPrefix+"fn/s", nil); err != nil || p != nil {
		t.Errorf("the failed ClaimPrimary left its claim (%v): %s", err, p.Value)
	}
	svcs, err := agent.Client.Agent().ServicesWithFilter("ID == " + strconv.Quote(reg.Container))
	if err != nil {
		t.Fatal(err)
	}
	if s := svcs[reg.Container]; s != nil {
		t.Errorf("claim released but the agent still has service %s with meta %v", s.ID, s.Meta)
	}
	reg.Container = "c-next"
	if owner, won, err := newRegistry(t, agent.Client, opts).ClaimPrimary(ctx, reg); err != nil || !won {
		t.Fatalf("claim after the undone one: %+v won=%v %v", owner, won, err)
	}
}

func waitCheck(t *testing.T, c *api.Client, id, status string) {
	t.Helper()
	var last string
	testbin.Poll(t, 10*time.Second, func() bool {
		checks, err := c.Agent().Checks()
		if err != nil {
			t.Fatal(err)
		}
		if ch := checks[id]; ch != nil {
			last = ch.Status + ": " + ch.Output
			return ch.Status == status
		}
		return false
	}, func() string { return fmt.Sprintf("check %s is %q; want %s", id, last, status) })
}

// A user finds a session's primary, a real HTTP server, through the health
// API with a Meta filter and through Consul DNS; deregistering it removes it
// from both.
func findPrimary(t *testing.T, agent *consultest.Agent, r *consul.Registry) {
	ctx := context.Background()
	container := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/healthz" {
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(container.Close)
	host, portStr, _ := net.SplitHostPort(container.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)

	if _, won, err := r.ClaimPrimary(ctx, registry.Registration{
		Container: "web-1", Function: "counter", Session: "alice", Node: "node-0", Addr: "tcp://" + container.Listener.Addr().String(),
	}); !won || err != nil {
		t.Fatalf("claim: won=%v %v", won, err)
	}

	// The health API, passing only, filtered on Meta.
	q := &api.QueryOptions{Filter: `Service.Meta.function == "counter" and Service.Meta.session == "alice" and Service.Meta.role == "primary"`}
	var found []*api.ServiceEntry
	testbin.Poll(t, 10*time.Second, func() bool {
		var err error
		if found, _, err = agent.Client.Health().Service(consul.DefaultService, "", true, q); err != nil {
			t.Fatal(err)
		}
		return len(found) == 1
	}, func() string { return fmt.Sprintf("passing primaries: %d; want 1", len(found)) })
	if s := found[0].Service; s.ID != "web-1" || s.Address != host || s.Port != port || s.Meta["addr"] != "tcp://"+container.Listener.Addr().String() {
		t.Fatalf("found %+v", s)
	}

	// DNS: the primary of (counter, alice) by its tag.
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, agent.DNSAddr)
	}}
	const name = "primary-counter-alice." + consul.DefaultService + ".service.consul."
	var srvs []*net.SRV
	var lookupErr error
	testbin.Poll(t, 10*time.Second, func() bool {
		_, srvs, lookupErr = res.LookupSRV(ctx, "", "", name)
		return lookupErr == nil && len(srvs) == 1
	}, func() string { return fmt.Sprintf("SRV %s = %v, %v", name, srvs, lookupErr) })
	if int(srvs[0].Port) != port {
		t.Fatalf("SRV port %d; want %d", srvs[0].Port, port)
	}
	addrs, err := res.LookupHost(ctx, name)
	if err != nil || len(addrs) != 1 || addrs[0] != host {
		t.Fatalf("A %s = %v, %v; want %s", name, addrs, err, host)
	}

	if err := r.Deregister(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	if found, _, err := agent.Client.Health().Service(consul.DefaultService, "", false, q); err != nil || len(found) != 0 {
		t.Fatalf("after deregister: %d entries, %v", len(found), err)
	}
	testbin.Poll(t, 10*time.Second, func() bool {
		_, srvs, lookupErr = res.LookupSRV(ctx, "", "", name)
		var dnsErr *net.DNSError
		return errors.As(lookupErr, &dnsErr) && dnsErr.IsNotFound
	}, func() string { return fmt.Sprintf("SRV %s after deregister = %v, %v", name, srvs, lookupErr) })
}

func TestNewValidates(t *testing.T) {
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []consul.Options{
		{KeyPrefix: "no-slash"},
		{KeyPrefix: "/abs/"},
		{CheckInterval: time.Millisecond},
		{DeregisterAfter: time.Second},
		{OwnerKeyPrefix: "no-slash"},
		{OwnerKeyPrefix: "xfaas/primary/"},
		{OwnerTTL: time.Second},
		{OwnerLockDelay: 2 * time.Minute},
	} {
		if _, err := consul.New(client, o); !errors.Is(err, consul.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v; want ErrInvalidConfig", o, err)
		}
	}
	if _, err := consul.New(nil, consul.Options{}); !errors.Is(err, consul.ErrInvalidConfig) {
		t.Errorf("New(nil) = %v", err)
	}
	r, err := consul.New(client, consul.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}
