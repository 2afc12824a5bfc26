package controlplane

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/natstest"
	"github.com/xfaas/xfaas/proxy"
)

// openReplicas opens n function stores on one NATS server with JetStream:
// n control-plane replicas.
func openReplicas(t *testing.T, n int) []*FunctionStore {
	t.Helper()
	srv := natstest.Start(t)
	var out []*FunctionStore
	for range n {
		s, err := OpenFunctionStore(t.Context(), natstest.Connect(t, srv.ClientURL()), hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		out = append(out, s)
	}
	return out
}

// waitLookup waits until s sees function name (present) or not.
func waitLookup(t *testing.T, s *FunctionStore, name string, present bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, ok := s.Lookup(name); ok == present {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("function %s present=%v not seen within 10s", name, present)
		}
	}
}

// A module deleted with its function by one replica is stored again when
// another replica, which still has it in memory, deploys it again: every
// replica can load the module of every function.
func TestRedeployAfterDeleteElsewhereStoresTheModule(t *testing.T) {
	r := openReplicas(t, 2)
	ctx := t.Context()
	module := []byte("\x00asm not validated by the store")
	digest := proxy.Digest(module)
	if _, err := r[0].Deploy(ctx, "f", module, digest, fnconfig.Default(), ""); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, r[1], "f", true)
	if err := r[1].Delete(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, r[0], "f", false)
	if _, err := r[0].Deploy(ctx, "f", module, digest, fnconfig.Default(), ""); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, r[1], "f", true)
	got, err := r[1].Module(ctx, digest)
	if err != nil || string(got) != string(module) {
		t.Fatalf("the redeployed function's module: %q, %v", got, err)
	}
}

// Deleting one function while another is deployed with the same module
// never loses the module the survivor needs.
func TestDeleteRacingADeployOfTheSameModule(t *testing.T) {
	r := openReplicas(t, 2)
	ctx := t.Context()
	for i := range 30 {
		module := fmt.Appendf(nil, "\x00asm module %d", i)
		digest := proxy.Digest(module)
		if _, err := r[0].Deploy(ctx, "a", module, digest, fnconfig.Default(), ""); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := r[0].Deploy(ctx, "b", module, digest, fnconfig.Default(), ""); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if err := r[0].Delete(ctx, "a"); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if got, err := r[1].Module(ctx, digest); err != nil || string(got) != string(module) {
			t.Fatalf("round %d: the module of b: %q, %v", i, got, err)
		}
	}
}
