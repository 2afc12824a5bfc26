package controlplane

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/xfaas/xfaas/controlplane/bus"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/internal/natstest"
)

// A replica that started after a session's placement has nothing about it
// in its table; it answers a lookup from the registry, and an update the
// bus carried about that container still wins over the registry's answer.
func TestLookupFallsBackToTheRegistry(t *testing.T) {
	srv := natstest.Start(t)
	connect := func() *nats.Conn {
		return natstest.Connect(t, srv.ClientURL())
	}
	ctx := context.Background()
	const live, gone = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	reg := registry.NewMemory()
	for _, r := range []registry.Registration{
		{Container: "c-live", Function: "orders", Session: live, Role: registry.RolePrimary, Node: "n1", Addr: "tcp://10.0.0.1:7070"},
		{Container: "c-gone", Function: "orders", Session: gone, Role: registry.RolePrimary, Node: "n1", Addr: "tcp://10.0.0.1:7071"},
	} {
		if _, won, err := reg.ClaimPrimary(ctx, r); err != nil || !won {
			t.Fatalf("claim %s: %v %v", r.Container, won, err)
		}
	}

	replica := connect()
	a := newAddresses(replica, hclog.NewNullLogger())
	if err := a.follow(ctx, replica, reg, func(bus.Update) {}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	if err := replica.Flush(); err != nil { // the responder is registered once this returns
		t.Fatal(err)
	}

	// A container of another session hears that c-gone went down (its
	// replica published it before this one subscribed), then looks both up.
	dependent, err := bus.NewTable(ctx, connect(), bus.TableOptions{Functions: []string{"orders"}, LookupTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dependent.Close() })
	pub := bus.NewPublisher(connect())
	const marker = "00000000000000000000000000000001"
	for _, u := range []bus.Update{
		{Function: "orders", Session: gone, Role: bus.RolePrimary, Container: "c-gone", Node: "n1", State: bus.Down},
		// One publisher's messages arrive in order: once this one is in
		// the table, so is the down.
		{Function: "orders", Session: marker, Role: bus.RolePrimary, Container: "c-marker", Node: "n1", Addr: "tcp://10.0.0.1:7072", State: bus.Up},
	} {
		if _, err := pub.Publish(u); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := dependent.Primary("orders", marker); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dependent's table never saw the updates")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if addr, ok := dependent.PrimaryAddr(ctx, "orders", live); !ok || addr != "tcp://10.0.0.1:7070" {
		t.Fatalf("primary of a session placed before the replica started: %q %v", addr, ok)
	}
	if addr, ok := dependent.PrimaryAddr(ctx, "orders", gone); ok {
		t.Fatalf("the registry's answer overrode a newer down: %q", addr)
	}
}
