package controlplane

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xfaas/xfaas/controlplane/placement"
	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy"
)

// These tests check the scheduler's bookkeeping at moments that real
// containers cannot be made to hit on cue: a caller that gives up before
// its request is sent, a primary that dies while it is checkpointed. They
// run on fakes (a backend that records releases, an announcer that records
// "down", containers that take connections and never answer). The request
// path through real containers is tested in api_test.go.

// A caller that gave up before its request reached the container says
// nothing about the container: the session and its state stay.
func TestCallerGivingUpKeepsTheSession(t *testing.T) {
	s, b, _ := newTestScheduler(t)
	fn := testFunction(t)
	ns := s.newNamespace(fn, "default", startFakeContainer(t).member(t, "p1", proxy.RolePrimary, true))
	install(s, ns)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the HTTP client hung up
	_, err := s.Invoke(ctx, fn, "default", []byte("x"))
	if kind := apierror.KindOf(err); kind != apierror.Timeout {
		t.Errorf("Invoke: %s %v; want a timeout", kind, err)
	}
	if s.active("f", "default") != ns {
		t.Errorf("the session was forgotten because one caller gave up")
	}
	if b.wasReleased("p1") {
		t.Errorf("the live primary was released, and its state with it")
	}
}

// A container that takes no new connection but keeps its management
// connection is alive: the request fails with 503 and the session stays.
func TestUnreachableContainerKeepsTheSession(t *testing.T) {
	s, b, _ := newTestScheduler(t)
	fn := testFunction(t)
	c := startFakeContainer(t)
	ns := s.newNamespace(fn, "default", c.member(t, "p1", proxy.RolePrimary, true))
	install(s, ns)
	c.stopListening()
	_, err := s.Invoke(context.Background(), fn, "default", []byte("x"))
	if kind := apierror.KindOf(err); kind != apierror.Unavailable {
		t.Errorf("Invoke: %s %v; want unavailable", kind, err)
	}
	if s.active("f", "default") != ns || b.wasReleased("p1") {
		t.Errorf("a primary that is still connected was taken for dead")
	}
}

// A request to a container that died finds it gone: the namespace goes
// with its primary.
func TestDeadPrimaryIsForgottenByTheNextRequest(t *testing.T) {
	s, b, _ := newTestScheduler(t)
	fn := testFunction(t)
	c := startFakeContainer(t)
	p := c.member(t, "p1", proxy.RolePrimary, true)
	install(s, s.newNamespace(fn, "default", p))
	c.die()
	<-p.client.Done()
	_, err := s.Invoke(context.Background(), fn, "default", []byte("x"))
	if kind := apierror.KindOf(err); kind != apierror.Unavailable {
		t.Errorf("Invoke: %s %v; want unavailable", kind, err)
	}
	if s.active("f", "default") != nil || !b.wasReleased("p1") {
		t.Errorf("the dead primary's namespace is still active")
	}
}

// A primary that dies while it is checkpointed for an evict takes its
// namespace with it: the failed checkpoint does not bring the namespace
// back, neither emptied by forget (its next request would panic) nor with
// a dead primary (kept until a request finds it dead).
func TestPrimaryDyingDuringRetireIsNotRevived(t *testing.T) {
	for _, tc := range []struct {
		name string
		dies func(s *Scheduler, ns *namespace, c *fakeContainer)
	}{
		// A request that was running when the retire began found the
		// container gone (Invoke's memberGone) and forgot the namespace.
		{"forgotten", func(s *Scheduler, ns *namespace, _ *fakeContainer) { s.memberGone(ns, "p1") }},
		// The container crashed; the backend's report of it finds no
		// active namespace (a retiring one is not), so only the checkpoint
		// call sees it.
		{"crashed", func(_ *Scheduler, _ *namespace, c *fakeContainer) { c.die() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, b, _ := newTestScheduler(t)
			c := startFakeContainer(t)
			ns := s.newNamespace(testFunction(t), "default", c.member(t, "p1", proxy.RolePrimary, true))
			install(s, ns)
			evicted := make(chan error, 1)
			go func() {
				_, err := s.Evict(context.Background(), "f", "default")
				evicted <- err
			}()
			<-c.requests // the checkpoint call reached the primary, which never answers
			tc.dies(s, ns, c)
			if err := <-evicted; apierror.KindOf(err) != apierror.Unavailable {
				t.Errorf("Evict: %s %v; want unavailable", apierror.KindOf(err), err)
			}
			if ns := s.active("f", "default"); ns != nil {
				ns.mu.Lock()
				t.Errorf("the namespace came back: dead=%v with %d members", ns.dead, len(ns.members))
				ns.mu.Unlock()
				s.mu.Lock()
				delete(s.namespaces, nsKey{"f", "default"}) // so that Close can clean up
				s.mu.Unlock()
			}
			if !b.wasReleased("p1") {
				t.Errorf("the dead primary was not released")
			}
		})
	}
}

// A CopySession started just before its namespace was forgotten, and any
// request that finds a namespace without members, get an error, not a
// panic (which would leave the namespace's lock held).
func TestForgottenNamespaceAnswersErrors(t *testing.T) {
	s, b, _ := newTestScheduler(t)
	fn := testFunction(t)
	ns := s.newNamespace(fn, "default", startFakeContainer(t).member(t, "p1", proxy.RolePrimary, true))
	install(s, ns)
	ns.mu.Lock()
	ns.copying++ // what acquire does before it calls copySession
	ns.mu.Unlock()
	s.forget(ns)
	if _, err := ns.copySession(context.Background()); !errors.Is(err, errNamespaceGone) {
		t.Errorf("copySession: %v; want errNamespaceGone", err)
	}
	if ns.copying != 0 || len(b.claims()) != 0 {
		t.Errorf("copying=%d, containers claimed on %v for a forgotten namespace", ns.copying, b.claims())
	}
	ns.mu.Lock()
	ns.dead = false // an emptied namespace that nothing marked dead
	ns.mu.Unlock()
	if _, err := ns.acquire(context.Background()); !errors.Is(err, errNamespaceGone) {
		t.Errorf("acquire: %v; want errNamespaceGone", err)
	}
	if ns.owned() {
		t.Errorf("a namespace without a primary is owned")
	}
}

// A secondary that ended is released and its connections closed, not only
// dropped from its namespace.
func TestLostSecondaryIsReleased(t *testing.T) {
	s, b, a := newTestScheduler(t)
	fn := testFunction(t)
	ns := s.newNamespace(fn, "default", startFakeContainer(t).member(t, "p1", proxy.RolePrimary, true))
	sec := startFakeContainer(t).member(t, "s1", proxy.RoleSecondary, true)
	ns.members = append(ns.members, sec)
	install(s, ns)
	s.memberGone(ns, "s1") // what watchLost does when the backend reports it
	select {
	case <-sec.client.Done():
	default:
		t.Errorf("the secondary's client is still open")
	}
	if !b.wasReleased("s1") || !slices.Contains(a.downs(), "s1") {
		t.Errorf("the secondary was not released (released %v, down %v)", b.released, a.downs())
	}
	if s.active("f", "default") != ns || b.wasReleased("p1") {
		t.Errorf("losing a secondary took the namespace with it")
	}
}

// A namespace adopted from another control plane is only dropped from this
// one's cache when it idles: its primary is alive and owned elsewhere, so
// it is neither announced down nor released.
func TestIdleAdoptedPrimaryIsNotAnnouncedDown(t *testing.T) {
	s, b, a := newTestScheduler(t)
	fn := testFunction(t)
	ownedElsewhere(t, s, "default")
	p := startFakeContainer(t).member(t, "p-other", proxy.RolePrimary, false)
	ns := s.newNamespace(fn, "default", p)
	ns.lastUsed = time.Now().Add(-time.Hour)
	install(s, ns)
	s.keepAlive()
	select {
	case <-p.client.Done(): // forget closes the client after announcing
	case <-time.After(10 * time.Second):
		t.Fatal("the idle adopted namespace was not dropped")
	}
	if slices.Contains(a.downs(), "p-other") || b.wasReleased("p-other") {
		t.Errorf("another control plane's live primary was announced down (%v) or released", a.downs())
	}
}

// Evicting a session whose primary another control plane owns is a
// conflict, as checkpointing it is: nothing here can checkpoint or release
// it.
func TestEvictOfAdoptedSessionIsAConflict(t *testing.T) {
	s, b, a := newTestScheduler(t)
	fn := testFunction(t)
	ownedElsewhere(t, s, "default")
	ns := s.newNamespace(fn, "default", startFakeContainer(t).member(t, "p-other", proxy.RolePrimary, false))
	install(s, ns)
	if _, err := s.Evict(context.Background(), "f", "default"); apierror.KindOf(err) != apierror.Conflict {
		t.Errorf("Evict: %s %v; want a conflict", apierror.KindOf(err), err)
	}
	if s.active("f", "default") != ns || len(a.downs()) > 0 || b.wasReleased("p-other") {
		t.Errorf("the adopted namespace was dropped (down %v)", a.downs())
	}
}

// SecondaryIdle is how long each secondary may sit idle: one that serves
// nothing is released even while the primary serves a light load.
func TestIdleSecondaryReleasedWhilePrimaryServes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 30 * time.Second
		start := time.Now()
		ns := &namespace{fn: testFunction(t), session: "default", lastUsed: start, members: []*member{
			{c: placement.Container{ID: "p1", Node: "n0"}, role: proxy.RolePrimary, owned: true, lastUsed: start},
			{c: placement.Container{ID: "s1", Node: "n0"}, role: proxy.RoleSecondary, owned: true, lastUsed: start},
		}}
		for time.Since(start) < 2*idle {
			m, err := ns.acquire(context.Background())
			if err != nil || m.c.ID != "p1" {
				t.Fatalf("acquire: %v %v; want the primary", m, err)
			}
			ns.release(m)
			if out := ns.idleSecondaries(idle); len(out) > 0 {
				if out[0].c.ID != "s1" || time.Since(start) < idle {
					t.Fatalf("released %s after %v", out[0].c.ID, time.Since(start))
				}
				return
			}
			time.Sleep(time.Second)
		}
		t.Errorf("the secondary served nothing for %v (SecondaryIdle %v) and is still held", 2*idle, idle)
	})
}

// fakeBackend has nodes (one, n0, unless set) and no containers to claim;
// it records the claims tried and what is released.
type fakeBackend struct {
	lost  chan placement.Container
	nodes []placement.Node

	mu       sync.Mutex
	released []string
	tried    []string // the node of every claim
}

func (b *fakeBackend) Nodes(context.Context) ([]placement.Node, error) {
	if b.nodes != nil {
		return b.nodes, nil
	}
	return []placement.Node{{Name: "n0", Capacity: 8}}, nil
}

func (b *fakeBackend) Claim(_ context.Context, node string, _ placement.Size) (placement.Container, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tried = append(b.tried, node)
	return placement.Container{}, false, placement.ErrNoCapacity
}

func (b *fakeBackend) Release(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.released = append(b.released, id)
	return nil
}

func (b *fakeBackend) wasReleased(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Contains(b.released, id)
}

func (b *fakeBackend) claims() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.tried)
}

func (b *fakeBackend) Lost() <-chan placement.Container { return b.lost }
func (b *fakeBackend) Close(context.Context) error      { return nil }

// fakeAnnouncer records the containers announced down.
type fakeAnnouncer struct {
	mu   sync.Mutex
	down []string
}

func (a *fakeAnnouncer) Announce(r registry.Registration, up bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !up {
		a.down = append(a.down, r.Container)
	}
}

func (a *fakeAnnouncer) downs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.down)
}

func newTestScheduler(t *testing.T) (*Scheduler, *fakeBackend, *fakeAnnouncer) {
	b := &fakeBackend{lost: make(chan placement.Container)}
	a := &fakeAnnouncer{}
	s := NewScheduler(SchedulerOptions{Backend: b, Registry: registry.NewMemory(), Announcer: a})
	t.Cleanup(s.Close)
	return s, b, a
}

// fakeContainer takes wire connections on a Unix socket and never answers:
// a container that is alive but busy.
type fakeContainer struct {
	addr string
	ln   net.Listener
	// requests gets a value when a request arrives (after a connection's
	// preface); values are dropped while one is waiting.
	requests chan struct{}

	// reply, when set, answers every call (startAnsweringContainer).
	reply []byte

	mu    sync.Mutex
	conns []net.Conn
	dead  bool
	calls int // answered calls
}

func startFakeContainer(t *testing.T) *fakeContainer { return startFake(t, nil) }

// startAnsweringContainer is a fake primary of session "default" of
// function "f" that answers every call with the same JSON: enough for
// adopt's Status, and a retire's Checkpoint gets seq 7, durable.
func startAnsweringContainer(t *testing.T) *fakeContainer {
	return startFake(t, []byte(`{"role":"primary","function":"f","session":"default","seq":7,"durable":true}`))
}

func startFake(t *testing.T, reply []byte) *fakeContainer {
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeContainer{addr: "unix://" + path, ln: ln, requests: make(chan struct{}, 1), reply: reply}
	t.Cleanup(c.die)
	go c.accept()
	return c
}

func (c *fakeContainer) accept() {
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
		go c.read(conn)
	}
}

func (c *fakeContainer) read(conn net.Conn) {
	if _, err := io.ReadFull(conn, make([]byte, len(wire.Preface))); err != nil {
		return
	}
	if c.reply != nil {
		wire.ServeConn(context.Background(), conn, wire.HandlerFunc(func(context.Context, *wire.Conn, uint8, []byte) ([]byte, error) {
			c.mu.Lock()
			c.calls++
			c.mu.Unlock()
			return c.reply, nil
		}))
		return
	}
	buf := make([]byte, 4096)
	for {
		if _, err := conn.Read(buf); err != nil {
			return
		}
		select {
		case c.requests <- struct{}{}:
		default:
		}
	}
}

func (c *fakeContainer) answered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func (c *fakeContainer) taken() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

// stopListening refuses new connections and keeps the ones it has.
func (c *fakeContainer) stopListening() { c.ln.Close() }

// die breaks every connection, as the container's end would.
func (c *fakeContainer) die() {
	c.ln.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = true
	for _, conn := range c.conns {
		conn.Close()
	}
}

// member connects to the container as a member of a namespace, once the
// container has taken the connection (a listener closed before that would
// reset it).
func (c *fakeContainer) member(t *testing.T, id string, role proxy.Role, owned bool) *member {
	before := c.taken()
	m := dialMember(t, c.addr, id, role, owned)
	for deadline := time.Now().Add(10 * time.Second); c.taken() == before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fake container did not take the connection")
		}
	}
	return m
}

// dialMember connects to the container at addr as a member of a namespace
// on node n0; the connection closes with the test.
func dialMember(t *testing.T, addr, id string, role proxy.Role, owned bool) *member {
	t.Helper()
	cl, err := proxy.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return &member{c: placement.Container{ID: id, Node: "n0", Addr: addr}, role: role, client: cl, owned: owned}
}

func testFunction(t *testing.T) *Function {
	cfg, err := fnconfig.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Function{Name: "f", Version: 1, Config: cfg}
}

// install makes ns the active namespace of its session, as a ColdSession
// does.
func install(s *Scheduler, ns *namespace) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.namespaces[nsKey{ns.fn.Name, ns.session}] = ns
}

// A request that arrives while the scheduler closes starts no ColdSession:
// Close waits for the ones under way, and one started during or after that
// wait would claim a container that nothing releases.
func TestClosedSchedulerStartsNoSession(t *testing.T) {
	s, b, _ := newTestScheduler(t)
	fn := testFunction(t)
	s.Close()
	_, err := s.Invoke(context.Background(), fn, "s2", []byte("x"))
	if kind := apierror.KindOf(err); kind != apierror.Unavailable {
		t.Errorf("Invoke after Close: %s %v; want unavailable", kind, err)
	}
	if got := b.claims(); len(got) != 0 {
		t.Errorf("a closed scheduler claimed containers on %v", got)
	}
}

// A secondary goes on its primary's node while that node has a free slot,
// and fails there, trying nothing, when the node has no room for the
// function's container: it does not go further from the primary's state.
// A primary's node without a free slot sends it to the least-loaded node
// that fits, as before.
func TestSecondaryStaysOnThePrimarysNode(t *testing.T) {
	s, b, _ := newTestScheduler(t)
	size := placement.SizeOf(testFunction(t).Config) // 2000 millicores, 1376 MiB
	tight := &placement.Resources{Millicores: 1999, MemoryMB: 4096}
	roomy := &placement.Resources{Millicores: 4000, MemoryMB: 4096}
	b.nodes = []placement.Node{
		{Name: "n0", Capacity: 8, Claimed: 1, Free: tight, Allocatable: roomy},
		{Name: "n1", Capacity: 8, Free: roomy, Allocatable: roomy},
	}
	_, _, err := s.claim(context.Background(), "n0", size)
	if want := "no capacity: the primary's node n0 has no room"; apierror.KindOf(err) != apierror.Unavailable || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("claim beside the primary: %v; want %q", err, want)
	}
	if got := b.claims(); len(got) != 0 {
		t.Errorf("claims on %v; want none", got)
	}
	b.nodes[0].Claimed = b.nodes[0].Capacity
	if _, _, err := s.claim(context.Background(), "n0", size); err == nil || !slices.Equal(b.claims(), []string{"n1"}) {
		t.Errorf("claim beside a full primary's node: %v, on %v; want a claim on n1", err, b.claims())
	}
}
