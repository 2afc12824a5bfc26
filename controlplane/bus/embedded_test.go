package bus

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// What JetStream stored survives a Shutdown and a Start on the same Dir, as
// `xfaas dev` restarted on its data directory needs.
func TestEmbeddedRestartKeepsJetStreamData(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1, JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	nc, js := jetStream(t, s)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "functions"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "orders", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	s.Shutdown()
	s.Shutdown() // idempotent

	s2, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1, JetStream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown()
	_, js = jetStream(t, s2)
	kv, err = js.KeyValue(ctx, "functions")
	if err != nil {
		t.Fatalf("bucket after restart: %v", err)
	}
	e, err := kv.Get(ctx, "orders")
	if err != nil || string(e.Value()) != "v1" {
		t.Fatalf("value after restart: %v", err)
	}
}

func jetStream(t *testing.T, s *Embedded) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func TestEmbeddedOptions(t *testing.T) {
	if _, err := StartEmbedded(EmbeddedOptions{Port: -1, JetStream: true}); err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Fatalf("JetStream without a Dir: %v", err)
	}
	var logs bytes.Buffer
	s, err := StartEmbedded(EmbeddedOptions{Port: -1, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("ClientURL %s", s.ClientURL())
	}
	s.Shutdown()
	if !strings.Contains(logs.String(), "Server is ready") {
		t.Fatalf("no server log with a Logger:\n%s", logs.String())
	}
}
