package bus

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// startNATS runs an in-process server on a random port for the test.
func startNATS(t *testing.T) *Embedded {
	t.Helper()
	s, err := StartEmbedded(EmbeddedOptions{Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t *testing.T, s *Embedded) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newTestTable(t *testing.T, nc *nats.Conn, opts TableOptions) *Table {
	t.Helper()
	tb, err := NewTable(context.Background(), nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tb.Close(); err != nil {
			t.Errorf("close table: %v", err)
		}
	})
	return tb
}

// eventually polls cond until it holds, for at most 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// publishRaw publishes u as is, seq included, as another process would.
func publishRaw(t *testing.T, nc *nats.Conn, u Update) {
	t.Helper()
	if err := nc.Publish(Subject(u.Function, u.Session), u.Encode()); err != nil {
		t.Fatal(err)
	}
}

// sentinel publishes an update of its own session on nc and waits until tb
// has it: NATS keeps one connection's messages in order, so tb has then
// seen everything nc published before.
func sentinel(t *testing.T, nc *nats.Conn, tbs ...*Table) {
	t.Helper()
	u := up("c-sentinel-"+strconv.FormatUint(processClock.Next(), 10), RolePrimary, "tcp://sentinel:1", processClock.Next())
	u.Session = "default"
	publishRaw(t, nc, u)
	for _, tb := range tbs {
		eventually(t, "sentinel", func() bool {
			p, ok := tb.Primary(u.Function, u.Session)
			return ok && p.Seq >= u.Seq
		})
	}
}

func TestPublishSubscribeRoundTrip(t *testing.T) {
	s := startNATS(t)
	nc := connect(t, s)
	tb := newTestTable(t, connect(t, s), TableOptions{Functions: []string{"orders"}})
	raw := make(chan *nats.Msg, 1)
	if _, err := nc.ChanSubscribe("xfaas.addr.>", raw); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	pub := NewPublisher(nc)
	sent, err := pub.Publish(Update{Function: "orders", Session: sessA, Role: RolePrimary, Container: "c-1", Node: "n1", Addr: "unix:///c-1.sock", State: Up})
	if err != nil {
		t.Fatal(err)
	}
	if sent.Seq == 0 {
		t.Fatal("no seq assigned")
	}
	eventually(t, "primary in the table", func() bool { _, ok := tb.Primary("orders", sessA); return ok })
	if p, _ := tb.Primary("orders", sessA); p != sent {
		t.Fatalf("table has %+v; published %+v", p, sent)
	}
	if addr, ok := tb.PrimaryAddr(context.Background(), "orders", sessA); !ok || addr != "unix:///c-1.sock" {
		t.Fatalf("PrimaryAddr = %q %v", addr, ok)
	}
	m := <-raw
	var fields map[string]any
	if err := json.Unmarshal(m.Data, &fields); err != nil {
		t.Fatal(err)
	}
	want := []string{"addr", "container", "function", "node", "role", "seq", "session", "state"}
	if got := slices.Sorted(maps.Keys(fields)); m.Subject != "xfaas.addr.orders."+sessA || !slices.Equal(got, want) {
		t.Fatalf("published %s %s", m.Subject, m.Data)
	}
}

// A table follows only its functions until it watches more.
func TestTableFollowsItsFunctions(t *testing.T) {
	s := startNATS(t)
	nc := connect(t, s)
	tb := newTestTable(t, connect(t, s), TableOptions{Functions: []string{"orders"}})
	other := up("c-1", RolePrimary, "tcp://h:1", processClock.Next())
	other.Function = "billing"
	publishRaw(t, nc, other)
	sentinel(t, nc, tb) // the sentinel is of "orders"
	if _, ok := tb.Primary("billing", sessA); ok {
		t.Fatal("an update of an unwatched function reached the table")
	}
	if err := tb.Watch(context.Background(), []string{"billing"}); err != nil {
		t.Fatal(err)
	}
	other.Seq = processClock.Next()
	publishRaw(t, nc, other)
	eventually(t, "billing after Watch", func() bool { _, ok := tb.Primary("billing", sessA); return ok })
	if err := tb.Watch(context.Background(), []string{"Bad.Name"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Watch of a bad name: %v", err)
	}
}

// An old update delivered late never overwrites a newer one.
func TestOldUpdateDeliveredLateDoesNotWin(t *testing.T) {
	s := startNATS(t)
	nc := connect(t, s)
	tb := newTestTable(t, connect(t, s), TableOptions{All: true})
	newerSeq := processClock.Next()
	publishRaw(t, nc, up("c-1", RolePrimary, "tcp://new:1", newerSeq))
	publishRaw(t, nc, up("c-1", RolePrimary, "tcp://old:1", newerSeq-1000)) // delivered late
	sentinel(t, nc, tb)
	if p, ok := tb.Primary("orders", sessA); !ok || p.Addr != "tcp://new:1" {
		t.Fatalf("primary %+v %v; want the newer address", p, ok)
	}
}

// A "down" removes the container, and a late "up" does not bring it back.
func TestDownRemoves(t *testing.T) {
	s := startNATS(t)
	nc := connect(t, s)
	var changes []Update
	var mu sync.Mutex
	tb := newTestTable(t, connect(t, s), TableOptions{Functions: []string{"orders"}, OnChange: func(u Update) {
		mu.Lock()
		defer mu.Unlock()
		if u.Session == sessA { // not the sentinels
			changes = append(changes, u)
		}
	}})
	pub := NewPublisher(nc)
	primary, err := pub.Publish(Update{Function: "orders", Session: sessA, Role: RolePrimary, Container: "c-1", Addr: "tcp://h:1", State: Up})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(Update{Function: "orders", Session: sessA, Role: RoleSecondary, Container: "c-2", Addr: "tcp://h:2", State: Up}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two containers", func() bool { return len(tb.Containers("orders", sessA)) == 2 })
	if _, err := pub.Publish(Update{Function: "orders", Session: sessA, Role: RolePrimary, Container: "c-1", State: Down}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "primary gone", func() bool { _, ok := tb.Primary("orders", sessA); return !ok })
	publishRaw(t, nc, primary) // the old "up" again, late
	sentinel(t, nc, tb)
	got := tb.Containers("orders", sessA)
	if len(got) != 1 || got[0].Container != "c-2" {
		t.Fatalf("containers %+v; want only the secondary", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 3 || changes[2].State != Down {
		t.Fatalf("OnChange saw %+v; want up, up, down", changes)
	}
}

// Two tables fed by two publishers, whose updates of the same containers
// race, end up with the same content.
func TestTwoTablesAgree(t *testing.T) {
	s := startNATS(t)
	pubs := []*nats.Conn{connect(t, s), connect(t, s)}
	t1 := newTestTable(t, connect(t, s), TableOptions{All: true})
	t2 := newTestTable(t, connect(t, s), TableOptions{Functions: []string{"orders"}})
	var wg sync.WaitGroup
	for i, nc := range pubs {
		wg.Go(func() {
			for k := range 200 {
				c := "c-" + strconv.Itoa(k%7)
				seq := processClock.Next()
				if (k+i)%3 == 0 {
					seq -= 1e6 // as if from a publisher whose clock is behind
				}
				u := up(c, []string{RolePrimary, RoleSecondary}[k%2], "tcp://h:"+strconv.Itoa(i*1000+k), seq)
				if k%5 == i {
					u.State, u.Addr = Down, ""
				}
				if err := nc.Publish(Subject(u.Function, u.Session), u.Encode()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, nc := range pubs {
		sentinel(t, nc, t1, t2)
	}
	a, b := t1.Containers("orders", sessA), t2.Containers("orders", sessA)
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatalf("tables disagree:\n%+v\n%+v", a, b)
	}
	p1, ok1 := t1.Primary("orders", sessA)
	p2, ok2 := t2.Primary("orders", sessA)
	if p1 != p2 || ok1 != ok2 {
		t.Fatalf("primaries disagree: %+v %v, %+v %v", p1, ok1, p2, ok2)
	}
}

// Invalid tokens are refused before anything is published.
func TestPublisherRefusesInvalidTokens(t *testing.T) {
	s := startNATS(t)
	nc := connect(t, s)
	raw := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("xfaas.>", raw); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	pub := NewPublisher(nc)
	bad := []Update{
		{Function: "orders.x", Session: sessA, Role: RolePrimary, Container: "c", Addr: "a", State: Up},
		{Function: "*", Session: sessA, Role: RolePrimary, Container: "c", Addr: "a", State: Up},
		{Function: "orders", Session: ">", Role: RolePrimary, Container: "c", Addr: "a", State: Up},
		{Function: "orders", Session: "alice", Role: RolePrimary, Container: "c", Addr: "a", State: Up},
		{Function: "orders", Session: sessA, Role: "pool", Container: "c", Addr: "a", State: Up},
		{Function: "orders", Session: sessA, Role: RolePrimary, Container: "c", State: Up},
	}
	for _, u := range bad {
		if _, err := pub.Publish(u); !errors.Is(err, ErrInvalid) {
			t.Errorf("Publish(%+v) = %v; want ErrInvalid", u, err)
		}
	}
	good, err := pub.Publish(Update{Function: "orders", Session: "default", Role: RolePrimary, Container: "c", Addr: "a", State: Up})
	if err != nil {
		t.Fatal(err)
	}
	if m := <-raw; m.Subject != Subject("orders", "default") || string(m.Data) != string(good.Encode()) {
		t.Fatalf("first message %s %s; want only the valid update", m.Subject, m.Data)
	}
}

// A table that subscribes after a session was placed learns its primary on
// the first miss, from a lookup responder; misses without an answer back
// off.
func TestLookupOnMiss(t *testing.T) {
	s := startNATS(t)
	nc := connect(t, s)
	cp := newTestTable(t, connect(t, s), TableOptions{All: true}) // a control-plane replica
	publishRaw(t, nc, up("c-1", RolePrimary, "tcp://h:1", processClock.Next()))
	sentinel(t, nc, cp)

	late := newTestTable(t, connect(t, s), TableOptions{Functions: []string{"orders"}, LookupBackoff: time.Hour})
	ctx := context.Background()
	start := time.Now()
	if _, ok := late.PrimaryAddr(ctx, "orders", sessA); ok {
		t.Fatal("found a primary with no lookup responder")
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("a lookup with no responder took %v", d)
	}
	late.mu.Lock()
	clear(late.misses) // forget the backoff of the miss above
	late.mu.Unlock()

	var asked atomic.Int32
	responder := connect(t, s)
	sub, err := ServeLookups(responder, func(function, session string) []Update {
		asked.Add(1)
		return cp.Containers(function, session)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := responder.Flush(); err != nil { // the responder is registered once this returns
		t.Fatal(err)
	}
	if addr, ok := late.PrimaryAddr(ctx, "orders", sessA); !ok || addr != "tcp://h:1" {
		t.Fatalf("PrimaryAddr after a lookup = %q %v", addr, ok)
	}
	for range 3 {
		if _, ok := late.PrimaryAddr(ctx, "orders", sessB); ok {
			t.Fatal("a primary for an unknown session")
		}
	}
	if got := asked.Load(); got != 2 {
		t.Fatalf("the responder was asked %d times; want 2 (one hit, one miss backed off)", got)
	}
	if _, ok := late.PrimaryAddr(ctx, "billing", sessA); ok || asked.Load() != 2 {
		t.Fatal("looked up a function the table does not follow")
	}
}

// Close unsubscribes: nothing reaches the table or its OnChange afterwards.
func TestCloseUnsubscribes(t *testing.T) {
	s := startNATS(t)
	nc := connect(t, s)
	var calls atomic.Int32
	tb, err := NewTable(context.Background(), connect(t, s), TableOptions{All: true, OnChange: func(Update) { calls.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, nc, up("c-1", RolePrimary, "tcp://h:1", processClock.Next()))
	eventually(t, "first update", func() bool { return calls.Load() == 1 })
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tb.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	publishRaw(t, nc, up("c-2", RolePrimary, "tcp://h:2", processClock.Next()))
	probe := newTestTable(t, connect(t, s), TableOptions{All: true})
	sentinel(t, nc, probe)
	if calls.Load() != 1 || len(tb.Containers("orders", sessA)) != 1 {
		t.Fatalf("closed table changed: %d calls, %+v", calls.Load(), tb.Containers("orders", sessA))
	}
	if err := tb.Watch(context.Background(), []string{"x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close: %v", err)
	}
}
