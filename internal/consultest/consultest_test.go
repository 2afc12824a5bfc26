package consultest_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/internal/consultest"
)

func TestStart(t *testing.T) {
	agent := consultest.Start(t)

	// The KV store answers through a second client.
	kv := agent.NewClient(t).KV()
	if _, err := kv.Put(&api.KVPair{Key: "consultest/hello", Value: []byte("world")}, nil); err != nil {
		t.Fatal(err)
	}
	p, _, err := agent.Client.KV().Get("consultest/hello", nil)
	if err != nil || p == nil || string(p.Value) != "world" {
		t.Fatalf("get = %+v, %v", p, err)
	}

	// The DNS server knows the agent's own node.
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, agent.DNSAddr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := res.LookupHost(ctx, consultest.NodeName+".node.consul.")
	if err != nil || len(addrs) != 1 || addrs[0] != "127.0.0.1" {
		t.Fatalf("lookup node = %v, %v", addrs, err)
	}
}
