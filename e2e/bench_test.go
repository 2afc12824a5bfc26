package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/internal/containerid"
	"github.com/xfaas/xfaas/internal/testbin"
)

// BenchmarkCluster measures, through the control plane running as a Nomad
// job, the first request of a new session (ColdSession: claim, bind, first
// invocation) and a request that needs a new secondary (CopySession), with
// a pool hit and, the pool job scaled to zero, a pool miss (a one-off job).
// Sessions are evicted and the pool refilled between iterations, untimed.
//
//	go test -run '^$' -bench Cluster -benchtime 10x ./e2e/
func BenchmarkCluster(b *testing.B) {
	env := Start(b, EnvOptions{PoolSize: 3})
	counter := env.Deploy(b, "counter", "c/counter", `{}`)
	spin := env.Deploy(b, "spin", "test/spin", `{"max_workers": 1, "max_containers": 2}`)
	for _, mode := range []string{"hit", "miss"} {
		if mode == "miss" {
			env.scalePool(b, 0)
		}
		b.Run("ColdSession/"+mode, func(b *testing.B) { coldSession(b, env, counter, mode == "hit") })
		b.Run("CopySession/"+mode, func(b *testing.B) { copySession(b, env, spin, mode == "hit") })
	}
}

func coldSession(b *testing.B, env *Env, fn *Function, hit bool) {
	i := 0
	for b.Loop() {
		b.StopTimer()
		if hit {
			env.waitUnclaimed(b, 1)
		}
		i++
		label := fmt.Sprintf("cold-%d-%d", time.Now().UnixNano(), i)
		claims := env.claims(b, hit)
		b.StartTimer()
		r := fn.MustInvoke(b, label, "incr")
		b.StopTimer()
		env.checkClaims(b, hit, claims+1)
		env.evict(b, fn, r.SessionID)
		b.StartTimer()
	}
}

// copySession holds the session's one worker busy with a long request and
// times a short one, which a new secondary serves.
func copySession(b *testing.B, env *Env, fn *Function, hit bool) {
	i := 0
	for b.Loop() {
		b.StopTimer()
		if hit {
			env.waitUnclaimed(b, 2)
		}
		i++
		label := fmt.Sprintf("copy-%d-%d", time.Now().UnixNano(), i)
		claims := env.claims(b, hit)
		first := fn.MustInvoke(b, label, "1")
		busy := make(chan error, 1)
		go func() {
			_, err := fn.Invoke(context.Background(), label, "1500")
			busy <- err
		}()
		env.waitInFlight(b, fn, first.SessionID)
		b.StartTimer()
		r := fn.MustInvoke(b, label, "1")
		b.StopTimer()
		if r.Role != "secondary" {
			b.Fatalf("served by %s (%s); want a new secondary", r.Container, r.Role)
		}
		env.checkClaims(b, hit, claims+2) // the primary and the secondary
		if err := <-busy; err != nil {
			b.Fatal(err)
		}
		env.evict(b, fn, first.SessionID)
		b.StartTimer()
	}
}

func (e *Env) evict(b *testing.B, fn *Function, session string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.API.Evict(ctx, fn.Name, session); err != nil {
		b.Fatalf("evict %s: %v", session, err)
	}
}

// claims reads the control plane's count of pool hits (hit) or misses
// from its /metrics.
func (e *Env) claims(b *testing.B, hit bool) int {
	b.Helper()
	label := "miss"
	if hit {
		label = "hit"
	}
	resp, err := http.Get(e.APIAddr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	prefix := `xfaas_container_claims_total{pool="` + label + `"} `
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("metrics line %q: %v", line, err)
			}
			return int(n)
		}
	}
	return 0 // none counted yet
}

// checkClaims fails the benchmark unless the control plane has counted
// want pool hits (hit) or misses: an iteration timed what its name says.
func (e *Env) checkClaims(b *testing.B, hit bool, want int) {
	b.Helper()
	if got := e.claims(b, hit); got != want {
		b.Fatalf("%d claims counted as pool hit=%v; want %d: the iteration did not measure what it is named for", got, hit, want)
	}
}

// waitInFlight waits until the session's primary runs a request.
func (e *Env) waitInFlight(b *testing.B, fn *Function, session string) {
	b.Helper()
	testbin.Poll(b, 10*time.Second, func() bool {
		ss, err := e.API.Sessions(context.Background(), fn.Name)
		if err != nil {
			return false
		}
		for _, s := range ss {
			if s.ID == session && s.InFlight > 0 {
				return true
			}
		}
		return false
	}, func() string { return "the long request never started" })
}

// scalePool sets the pool job's count.
func (e *Env) scalePool(b *testing.B, count int) {
	b.Helper()
	var out []byte
	// Refused while the job's deployment runs.
	testbin.Poll(b, 60*time.Second, func() bool {
		var err error
		out, err = e.Nomad.Command("job", "scale", "-detach", "xfaas-pool", "pool", fmt.Sprint(count)).CombinedOutput()
		return err == nil
	}, func() string { return "nomad job scale: " + string(out) })
	e.WaitPool(b, count)
}

// waitUnclaimed waits until the pool has want containers no control plane
// has claimed.
func (e *Env) waitUnclaimed(b *testing.B, want int) {
	b.Helper()
	testbin.Poll(b, 60*time.Second, func() bool {
		entries, _, err := e.Consul.Client.Health().Service(placement.DefaultService, "", true,
			&consulapi.QueryOptions{Filter: `Service.Meta.role == "pool" and Service.Meta.job == "xfaas-pool"`})
		if err != nil {
			return false
		}
		keys, _, err := e.Consul.Client.KV().Keys(placement.DefaultClaimPrefix, "", nil)
		if err != nil {
			return false
		}
		claimed := map[string]bool{}
		for _, k := range keys {
			claimed[strings.TrimPrefix(k, placement.DefaultClaimPrefix)] = true
		}
		free := 0
		for _, en := range entries {
			if !claimed[containerid.Nomad(en.Service.Meta["alloc"], en.Service.Meta["task"])] {
				free++
			}
		}
		return free >= want
	}, func() string { return fmt.Sprintf("fewer than %d unclaimed pool containers", want) })
}
