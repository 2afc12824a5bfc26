package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/xfaas/xfaas/controlplane/bus"
	"github.com/xfaas/xfaas/controlplane/client"
	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/internal/consultest"
	"github.com/xfaas/xfaas/internal/containerid"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/nomadtest"
	"github.com/xfaas/xfaas/internal/testbin"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// Env is a single-node cluster: consul, NATS with JetStream, a nomad agent
// configured by jobspecs/agent.hcl with the xfaas driver, and the pool and
// control-plane jobs of jobspecs/ running on it.
type Env struct {
	Consul *consultest.Agent
	Nomad  *nomadtest.Agent
	NATS   string
	// API is the control plane's client; APIAddr its base URL.
	API     *client.Client
	APIAddr string
	// PoolSize is the pool job's count.
	PoolSize int
}

// EnvOptions shape a cluster.
type EnvOptions struct {
	// PoolSize is the pool job's count. The default is 3.
	PoolSize int
}

func jobspec(name string) string { return filepath.Join(testbin.Root(), "jobspecs", name) }

// Start brings up a cluster and returns once the pool's containers pass
// their checks and the control plane answers.
func Start(t testing.TB, opts EnvOptions) *Env {
	t.Helper()
	if opts.PoolSize == 0 {
		opts.PoolSize = 3
	}
	begin := time.Now()
	env := &Env{PoolSize: opts.PoolSize}
	env.Consul = consultest.Start(t)
	nats, err := bus.StartEmbedded(bus.EmbeddedOptions{Port: -1, JetStream: true, Dir: t.TempDir(), Name: "xfaas-e2e"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nats.Shutdown)
	env.NATS = nats.ClientURL()
	xfaas := testbin.Xfaas(t)
	env.Nomad = nomadtest.Start(t, nomadtest.Options{ConsulAddr: env.Consul.HTTPAddr, ProxyPath: xfaas, NATS: env.NATS,
		ConfigFiles: []string{jobspec("agent.hcl")}})
	env.Nomad.RunJob(t, jobspec("xfaas-pool.nomad.hcl"), map[string]string{"count": strconv.Itoa(opts.PoolSize)})
	port := testbin.FreePort(t)
	env.Nomad.RunJob(t, jobspec("xfaas-controlplane.nomad.hcl"), map[string]string{
		"xfaas": xfaas, "port": strconv.Itoa(port), "nats": env.NATS,
		"nomad_addr": env.Nomad.Addr, "consul_addr": env.Consul.HTTPAddr, "capacity": "16", "log_level": "debug",
	})
	env.APIAddr = "http://127.0.0.1:" + strconv.Itoa(port)
	env.API = client.New(env.APIAddr, "")
	env.WaitPool(t, opts.PoolSize)
	testbin.Poll(t, 60*time.Second, func() bool {
		resp, err := http.Get(env.APIAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, func() string { return "the control plane job does not answer /healthz\n" + env.controlPlaneLogs(t) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane log:\n%s", env.controlPlaneLogs(t))
		}
	})
	t.Logf("cluster up in %s", time.Since(begin).Round(time.Millisecond))
	return env
}

// WaitPool waits until want pool containers pass their checks in Consul.
func (e *Env) WaitPool(t testing.TB, want int) []*consulapi.ServiceEntry {
	t.Helper()
	var got []*consulapi.ServiceEntry
	testbin.Poll(t, 60*time.Second, func() bool {
		var err error
		got, _, err = e.Consul.Client.Health().Service(placement.DefaultService, "", true,
			&consulapi.QueryOptions{Filter: `Service.Meta.role == "pool" and Service.Meta.job == "xfaas-pool"`})
		return err == nil && len(got) == want
	}, func() string { return fmt.Sprintf("%d passing pool containers; want %d", len(got), want) })
	return got
}

// controlPlaneLogs returns the end of the control plane task's stderr.
func (e *Env) controlPlaneLogs(t testing.TB) string {
	allocs, _, err := e.Nomad.Client.Jobs().Allocations("xfaas-controlplane", true, nil)
	if err != nil || len(allocs) == 0 {
		return fmt.Sprintf("(no control plane allocation: %v)", err)
	}
	out, _ := e.Nomad.Command("alloc", "logs", "-stderr", "-tail", "-n", "60", allocs[0].ID).CombinedOutput()
	return string(out)
}

// Function is a deployed function with the keyset that seals its hints.
type Function struct {
	Name string
	keys hint.Keyset
	env  *Env
}

// Deploy deploys a test guest under name with a config.
func (e *Env) Deploy(t testing.TB, name, guest, config string) *Function {
	t.Helper()
	ks := hint.Generate()
	vk, err := ks.VerifyKey().MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.API.Deploy(ctx, name, testwasm.Bytes(t, guest), []byte(config), string(vk)); err != nil {
		t.Fatalf("deploy %s: %v", name, err)
	}
	return &Function{Name: name, keys: ks, env: e}
}

// Invoke calls the function in the session of label.
func (f *Function) Invoke(ctx context.Context, label, body string) (client.Response, error) {
	token, err := f.keys.Seal(f.Name, label)
	if err != nil {
		return client.Response{}, err
	}
	return f.env.API.Invoke(ctx, f.Name, token, []byte(body))
}

// MustInvoke calls the function and fails t on an error.
func (f *Function) MustInvoke(t testing.TB, label, body string) client.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := f.Invoke(ctx, label, body)
	if err != nil {
		t.Fatalf("invoke %s %s %q: %v", f.Name, label, body, err)
	}
	return r
}

// AllocOf returns the allocation running container, or nil.
func (e *Env) AllocOf(t testing.TB, container string) *nomadapi.AllocationListStub {
	return e.Nomad.AllocOf(t, container)
}

// RunningContainers returns the containers of running allocations of the
// xfaas driver (pool and one-off jobs), by container id.
func (e *Env) RunningContainers(t testing.TB) map[string]string {
	t.Helper()
	allocs, _, err := e.Nomad.Client.Allocations().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range allocs {
		if a.ClientStatus != "running" || !(a.JobID == placement.DefaultPoolJob || strings.HasPrefix(a.JobID, placement.DefaultJobPrefix)) {
			continue
		}
		for task := range a.TaskStates {
			out[containerid.Nomad(a.ID, task)] = a.ID
		}
	}
	return out
}
