// Package consultest runs a real Consul agent (consul agent -dev) for tests,
// on random free ports, and stops it when the test ends.
//
// The consul binary is the one `make tools` builds into .cache/bin/consul at
// the repository root, else the first consul on PATH. A missing binary fails
// the test: integration tests here do not skip silently.
package consultest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// module is the path of the module whose root holds .cache/bin.
const module = "github.com/xfaas/xfaas"

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
	out  *syncBuffer
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
func Binary(t testing.TB) string {
	t.Helper()
	var tried []string
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, ".cache", "bin", "consul")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
		tried = append(tried, p)
	} else {
		tried = append(tried, err.Error())
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	tried = append(tried, "consul on PATH")
	t.Fatalf("consultest: no consul binary (tried %s): run `make tools` at the repository root to build it",
		strings.Join(tried, ", "))
	return ""
}

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
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	httpPort, dnsPort, serverPort, lanPort, wanPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	a := &Agent{
		HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		DNSAddr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort)),
		out:      &syncBuffer{},
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
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = a.ready(); lastErr == nil {
			return nil
		}
		select {
		case <-a.done:
			return fmt.Errorf("consul agent exited during start: %v", a.cmd.ProcessState)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("consul agent not ready after %s: %w", startTimeout, lastErr)
		}
	}
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

// freePorts returns n distinct ports that are free on 127.0.0.1 for both TCP
// and UDP (DNS and Serf use both).
func freePorts(n int) ([]int, error) {
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		closers = append(closers, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken on UDP: keep the TCP one held and try another
		}
		closers = append(closers, u.Close)
		ports = append(ports, port)
	}
	return ports, nil
}

// moduleRoot walks up from the working directory to the go.mod of module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isModuleRoot(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", module)
		}
		dir = parent
	}
}

func isModuleRoot(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == module
		}
	}
	return false
}

// syncBuffer collects the agent's output from its copy goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
