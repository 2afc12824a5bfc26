// Package consultest runs a real Consul agent (consul agent -dev) for tests,
// on random free ports, and stops it when the test ends.
//
// The consul binary is the one `make tools` builds into .cache/bin/consul at
// the repository root, else the first consul on PATH. A missing binary fails
// the test: integration tests here do not skip silently.
package consultest

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/internal/testbin"
)

// NodeName is the agent's node name; it shows in DNS answers
// (<node>.node.dc1.consul).
const NodeName = "consultest"

// startTimeout bounds how long Start waits for a leader and the agent's own
// node in the catalog.
const startTimeout = 30 * time.Second

// Agent is a running consul agent -dev.
type Agent struct {
	// HTTPAddr is the HTTP API's host:port.
	HTTPAddr string
	// DNSAddr is the DNS server's host:port, on UDP and TCP.
	DNSAddr string
	// Client talks to HTTPAddr.
	Client *api.Client

	cmd  *exec.Cmd
	out  *testbin.Log
	done chan struct{} // closed when the process has exited
}

// Start launches an agent and returns it once it has elected itself leader
// and synced its node to the catalog. The agent is killed when t ends; its
// log is printed if t failed.
func Start(t testing.TB) *Agent {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	// A free port can be taken by someone else between choosing it and the
	// agent binding it; a fresh set of ports fixes that.
	for range 3 {
		a, err := start(t, bin)
		if err == nil {
			return a
		}
		lastErr = err
	}
	t.Fatalf("consultest: %v", lastErr)
	return nil
}

// Binary returns the path of the consul binary or fails t.
func Binary(t testing.TB) string { return testbin.Tool(t, "consul") }

// NewClient returns another client of the agent, as a second control-plane
// replica would have.
func (a *Agent) NewClient(t testing.TB) *api.Client {
	t.Helper()
	c, err := newClient(a.HTTPAddr)
	if err != nil {
		t.Fatalf("consultest: client: %v", err)
	}
	return c
}

func start(t testing.TB, bin string) (*Agent, error) {
	ports, err := testbin.FreePorts(5)
	if err != nil {
		return nil, err
	}
	httpPort, dnsPort, serverPort, lanPort, wanPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	a := &Agent{
		HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		DNSAddr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort)),
		out:      &testbin.Log{},
		done:     make(chan struct{}),
	}
	a.cmd = exec.Command(bin, "agent", "-dev",
		"-node", NodeName,
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(httpPort),
		"-dns-port", strconv.Itoa(dnsPort),
		"-server-port", strconv.Itoa(serverPort),
		"-serf-lan-port", strconv.Itoa(lanPort),
		"-serf-wan-port", strconv.Itoa(wanPort),
		"-grpc-port", "-1", "-grpc-tls-port", "-1", "-https-port", "-1",
		"-log-level", "warn",
	)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = a.cmd.Wait()
		close(a.done)
	}()
	if a.Client, err = newClient(a.HTTPAddr); err == nil {
		err = a.waitReady()
	}
	if err != nil {
		a.stop()
		return nil, fmt.Errorf("%w\nagent log:\n%s", err, a.out)
	}
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("consul agent log:\n%s", a.out)
		}
	})
	return a, nil
}

// waitReady polls until there is a leader and the agent's node is in the
// catalog, so services registered next sync at once.
func (a *Agent) waitReady() error {
	return testbin.WaitReady("consul agent", a.done, startTimeout, a.ready)
}

func (a *Agent) ready() error {
	leader, err := a.Client.Status().Leader()
	if err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	node, _, err := a.Client.Catalog().Node(NodeName, nil)
	if err != nil {
		return err
	}
	if node == nil || node.Node == nil {
		return errors.New("node not in the catalog yet")
	}
	return nil
}

func (a *Agent) stop() {
	if a.cmd.Process != nil {
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

func newClient(addr string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.Scheme = "http"
	cfg.Token = ""
	return api.NewClient(cfg)
}
