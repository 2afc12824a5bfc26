package controlplane_test

import (
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/controlplane/cptest"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/controlplane/registry/consul"
	"github.com/xfaas/xfaas/internal/consultest"
)

// These tests leave a session to nobody: the control plane that placed its
// primary dies (Server.Crash: its owner leases end with its registry, its
// container serves on), and another replica, which never had a request
// for the session, must find it in the registry (RATIONALE.md, "Who
// retires a namespace.").

// sweepEvery is the surviving replica's SweepInterval.
const sweepEvery = 20 * time.Millisecond

// The control planes of a cluster share the registry's records, each with
// its own owner leases: replicas of a memory registry, or Consul registries
// on one agent, with their own clients. The Consul lease of a process that
// ended stays closed for a lock delay, so its sweep is refused a few times
// before it wins.
var registries = []struct {
	name string
	pair func(t *testing.T) (survivor, dying registry.Registry)
}{
	{"memory", func(*testing.T) (registry.Registry, registry.Registry) {
		m := registry.NewMemory()
		return m, m.Replica()
	}},
	{"consul", func(t *testing.T) (registry.Registry, registry.Registry) {
		agent := consultest.Start(t)
		opts := consul.Options{OwnerLockDelay: time.Second}
		return consulRegistry(t, agent.Client, opts), consulRegistry(t, agent.NewClient(t), opts)
	}},
}

func consulRegistry(t *testing.T, c *api.Client, opts consul.Options) registry.Registry {
	t.Helper()
	r, err := consul.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// orphan deploys counter through a replica of e, adds 5 to alice's counter
// there, and crashes that replica. It returns the container that serves
// on as alice's primary.
func orphan(t *testing.T, e *cptest.Env, dying registry.Registry) cptest.Invocation {
	t.Helper()
	dead := e.Replica(cptest.Options{Registry: dying})
	dead.Deploy("counter", "c/counter", `{"keep_alive_s": 2}`)
	waitFor(t, "the function deployed on the other replica", func() bool {
		return e.GetJSON("/v1/functions/counter", nil) == http.StatusOK
	})
	first := dead.MustInvoke("counter", "alice", "incr 5")
	if err := dead.Server.Crash(); err != nil {
		t.Fatal(err)
	}
	return first
}

// released reports whether the registry names no primary of alice's
// session and the container is gone.
func released(t *testing.T, e *cptest.Env, container string) bool {
	_, err := e.Reg.Primary(t.Context(), "counter", e.SessionID("counter", "alice"))
	_, running := e.Backend.Pid(container)
	return errors.Is(err, registry.ErrNotFound) && !running
}

// A session whose control plane died is taken over by another replica's
// sweep and, idle for keep_alive_s, checkpointed and released there; the
// next request restores it.
func TestSweepRetiresASessionWhoseOwnerDied(t *testing.T) {
	for _, tc := range registries {
		t.Run(tc.name, func(t *testing.T) {
			survivor, dying := tc.pair(t)
			e := cptest.Start(t, cptest.Options{Pool: 1, SweepInterval: sweepEvery, Registry: survivor})
			first := orphan(t, e, dying)
			waitFor(t, "the orphaned session checkpointed and released", func() bool { return released(t, e, first.Container) })
			if si := session(t, e, "counter", e.SessionID("counter", "alice")); si.Status != "checkpointed" {
				t.Fatalf("after the takeover the session is %+v; want it checkpointed", si)
			}
			if n := metric(t, e, `xfaas_orphaned_sessions_total{outcome="adopted"}`); n != 1 {
				t.Errorf("%v orphans adopted; want 1", n)
			}
			if r := e.MustInvoke("counter", "alice", "get"); r.Body != "5" || r.Container == first.Container {
				t.Fatalf("restored session: %q from %s; want 5 from a new container", r.Body, r.Container)
			}
		})
	}
}

// A session whose control plane lives is not the sweep's: another replica
// sweeps many times and neither takes it nor disturbs it.
func TestSweepLeavesASessionWhoseOwnerLives(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 1, SweepInterval: sweepEvery})
	owner := e.Replica(cptest.Options{})
	owner.Deploy("counter", "c/counter", "")
	first := owner.MustInvoke("counter", "alice", "incr 5")
	mark := metric(t, e, "xfaas_orphan_sweeps_total")
	waitFor(t, "five sweeps", func() bool { return metric(t, e, "xfaas_orphan_sweeps_total") >= mark+5 })
	if si := session(t, e, "counter", e.SessionID("counter", "alice")); si.ID != "" {
		t.Errorf("the sweeping replica lists the session: %+v", si)
	}
	if r := owner.MustInvoke("counter", "alice", "incr"); r.Body != "6" || r.Container != first.Container {
		t.Fatalf("the owner's next request: %q from %s; want 6 from %s", r.Body, r.Container, first.Container)
	}
	if n := metric(t, e, `xfaas_orphaned_sessions_total{outcome="adopted"}`) + metric(t, e, `xfaas_orphaned_sessions_total{outcome="released"}`); n != 0 {
		t.Errorf("the sweep took over %v sessions; want none", n)
	}
}

// The orphan of a function deleted after its control plane died is
// released without a checkpoint: nothing will restore it.
func TestSweepReleasesAnOrphanOfADeletedFunction(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 1, SweepInterval: sweepEvery})
	first := orphan(t, e, e.Reg.(*registry.Memory).Replica())
	if r := call(t, e, http.MethodDelete, "/v1/functions/counter"); r.Status != http.StatusOK {
		t.Fatalf("delete: %+v", r)
	}
	waitFor(t, "the orphan of the deleted function released", func() bool { return released(t, e, first.Container) })
	if n := metric(t, e, `xfaas_orphaned_sessions_total{outcome="released"}`); n != 1 {
		t.Errorf("%v orphans released; want 1", n)
	}
	if files, _ := filepath.Glob(filepath.Join(e.Dir, "nodes", "*", "checkpoints", "counter", "*")); len(files) > 0 {
		t.Errorf("the deleted function's orphan was checkpointed: %v", files)
	}
}

// A claim whose primary is gone while its control plane was dead is
// released by the sweep, not left for a request to find.
func TestSweepReleasesAClaimWhosePrimaryIsGone(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 1, SweepInterval: sweepEvery})
	first := orphan(t, e, e.Reg.(*registry.Memory).Replica())
	e.Kill(first.Container)
	waitFor(t, "the stale claim released", func() bool { return released(t, e, first.Container) })
	if n := metric(t, e, `xfaas_orphaned_sessions_total{outcome="released"}`); n != 1 {
		t.Errorf("%v orphans released; want 1", n)
	}
}

// metric returns the value of a series (name and labels, as /metrics
// prints them) of e's metrics, 0 when it has none.
func metric(t *testing.T, e *cptest.Env, series string) float64 {
	t.Helper()
	resp, err := http.Get(e.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
