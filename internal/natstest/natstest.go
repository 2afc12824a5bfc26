// Package natstest starts real NATS servers for tests: the embedded server
// that xfaas dev runs (controlplane/bus), with JetStream, on a free port.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/xfaas/xfaas/controlplane/bus"
)

// Start starts a server with JetStream in a directory of the test's. It is
// stopped when the test ends.
func Start(t testing.TB) *bus.Embedded { return StartIn(t, t.TempDir(), -1) }

// StartIn starts a server with JetStream in dir on port (-1 for a free
// one), stopped when the test ends: started again on the port and dir of
// one that stopped, it is that server back, with its streams.
func StartIn(t testing.TB, dir string, port int) *bus.Embedded {
	t.Helper()
	srv, err := bus.StartEmbedded(bus.EmbeddedOptions{Port: port, JetStream: true, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// Connect connects to the server at url, and closes the connection when
// the test ends.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
