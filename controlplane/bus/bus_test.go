package bus

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const (
	sessA = "0123456789abcdef0123456789abcdef"
	sessB = "fedcba9876543210fedcba9876543210"
)

func up(container, role, addr string, seq uint64) Update {
	return Update{Function: "orders", Session: sessA, Role: role, Container: container, Node: "n1", Addr: addr, State: Up, Seq: seq}
}

func down(container, role string, seq uint64) Update {
	return Update{Function: "orders", Session: sessA, Role: role, Container: container, Node: "n1", State: Down, Seq: seq}
}

// The JSON form is DESIGN.md's, field for field.
func TestEncodeIsTheContract(t *testing.T) {
	u := up("c-1", RolePrimary, "unix:///run/c-1.sock", 42)
	want := `{"function":"orders","session":"` + sessA + `","role":"primary","container":"c-1","node":"n1","addr":"unix:///run/c-1.sock","state":"up","seq":42}`
	if got := string(u.Encode()); got != want {
		t.Fatalf("Encode =\n%s\nwant\n%s", got, want)
	}
	back, err := Decode([]byte(want))
	if err != nil || back != u {
		t.Fatalf("Decode = %+v, %v", back, err)
	}
	if got := Subject("orders", sessA); got != "xfaas.addr.orders."+sessA {
		t.Fatalf("Subject = %s", got)
	}
}

func TestTokens(t *testing.T) {
	for _, fn := range []string{"orders", "a", "0-x_y", strings.Repeat("f", 63)} {
		if err := CheckFunction(fn); err != nil {
			t.Errorf("CheckFunction(%q) = %v", fn, err)
		}
	}
	for _, fn := range []string{"", "Orders", "a.b", "a*", ">", "a b", "_x", "-x", "ü", strings.Repeat("f", 64)} {
		if err := CheckFunction(fn); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckFunction(%q) = %v; want ErrInvalid", fn, err)
		}
	}
	for _, s := range []string{sessA, "default"} {
		if err := CheckSession(s); err != nil {
			t.Errorf("CheckSession(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "s1", "alice", strings.ToUpper(sessA), sessA + "0", sessA[:31], sessA[:31] + "g", "*", ">", "a.b", "Default"} {
		if err := CheckSession(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckSession(%q) = %v; want ErrInvalid", s, err)
		}
	}
	fn, sess, err := ParseSubject(Subject("orders", sessA))
	if err != nil || fn != "orders" || sess != sessA {
		t.Fatalf("ParseSubject = %q %q %v", fn, sess, err)
	}
	for _, subj := range []string{"xfaas.addr.orders", "xfaas.addr.orders.s1", "xfaas.addr.Orders." + sessA, "xfaas.other.orders." + sessA, "xfaas.addr.orders." + sessA + ".x"} {
		if _, _, err := ParseSubject(subj); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSubject(%q) = %v; want ErrInvalid", subj, err)
		}
	}
}

func TestValidate(t *testing.T) {
	mutate := map[string]func(*Update){
		"function":        func(u *Update) { u.Function = "a.b" },
		"session":         func(u *Update) { u.Session = "s1" },
		"role":            func(u *Update) { u.Role = "pool" },
		"state":           func(u *Update) { u.State = "gone" },
		"container":       func(u *Update) { u.Container = "" },
		"container chars": func(u *Update) { u.Container = "c 1" },
		"addr":            func(u *Update) { u.Addr = "" },
		"long addr":       func(u *Update) { u.Addr = strings.Repeat("a", maxAddrLen+1) },
		"long node":       func(u *Update) { u.Node = strings.Repeat("n", maxNodeLen+1) },
		"seq":             func(u *Update) { u.Seq = 0 },
	}
	if err := up("c-1", RolePrimary, "tcp://h:1", 1).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := down("c-1", RoleSecondary, 1).Validate(); err != nil {
		t.Fatalf("a down needs no address: %v", err)
	}
	for name, m := range mutate {
		u := up("c-1", RolePrimary, "tcp://h:1", 1)
		m(&u)
		if err := u.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v; want ErrInvalid", name, err)
		}
	}
	u := up("c-1", RolePrimary, "tcp://h:1", 1)
	if _, err := decodeOn(Subject("orders", sessB), u.Encode()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an update on another session's subject: %v", err)
	}
}

// newer is a total order: of two different updates of a container exactly
// one supersedes the other, so the arrival order never matters.
func TestNewerIsTotal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	for range 10000 {
		a := Update{Seq: uint64(r.IntN(3) + 1), State: pick(Up, Down), Addr: pick("a", "b"), Role: pick(RolePrimary, RoleSecondary), Node: pick("n1", "n2")}
		b := Update{Seq: uint64(r.IntN(3) + 1), State: pick(Up, Down), Addr: pick("a", "b"), Role: pick(RolePrimary, RoleSecondary), Node: pick("n1", "n2")}
		if a == b {
			if newer(a, b) || newer(b, a) {
				t.Fatalf("%+v is newer than itself", a)
			}
			continue
		}
		if newer(a, b) == newer(b, a) {
			t.Fatalf("newer(%+v, %+v) = %v both ways", a, b, newer(a, b))
		}
	}
}

// Any arrival order of the same updates leaves the same table.
func TestApplyOrderDoesNotMatter(t *testing.T) {
	updates := []Update{
		up("c-1", RolePrimary, "tcp://h:1", 10),
		down("c-1", RolePrimary, 30),
		up("c-1", RolePrimary, "tcp://h:1", 20),
		up("c-2", RolePrimary, "tcp://h:2", 25),
		up("c-3", RoleSecondary, "tcp://h:3", 26),
		up("c-3", RoleSecondary, "tcp://h:33", 27),
		down("c-3", RoleSecondary, 27),
	}
	var want []Update
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		tb := testTable(TableOptions{})
		for _, j := range r.Perm(len(updates)) {
			tb.Apply(updates[j])
		}
		got := tb.Containers("orders", sessA)
		if i == 0 {
			want = got
			if len(want) != 1 || want[0].Container != "c-2" {
				t.Fatalf("containers %+v; want only c-2", want)
			}
			continue
		}
		if !slices.Equal(got, want) {
			t.Fatalf("order %d: %+v; want %+v", i, got, want)
		}
	}
}

// A "down" is remembered for TombstoneTTL, then forgotten, so that a table
// of a long-lived control plane does not grow with every released container.
func TestTombstonesExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := testTable(TableOptions{TombstoneTTL: time.Minute})
		tb.Apply(up("c-1", RolePrimary, "tcp://h:1", 1))
		tb.Apply(down("c-1", RolePrimary, 2))
		if tb.Apply(up("c-1", RolePrimary, "tcp://h:1", 1)) {
			t.Fatal("a late up brought back a released container")
		}
		time.Sleep(2 * time.Minute)
		other := up("c-9", RolePrimary, "tcp://h:9", 3)
		other.Session = sessB
		tb.Apply(other) // sweeps
		tb.mu.RLock()
		defer tb.mu.RUnlock()
		if tb.tombstones != 0 || len(tb.sessions) != 1 {
			t.Fatalf("after the TTL: %d tombstones, %d sessions", tb.tombstones, len(tb.sessions))
		}
	})
}

func TestPrimaryDuringAMove(t *testing.T) {
	tb := testTable(TableOptions{})
	tb.Apply(up("c-old", RolePrimary, "tcp://h:1", 10))
	tb.Apply(up("c-sec", RoleSecondary, "tcp://h:3", 11))
	if p, ok := tb.Primary("orders", sessA); !ok || p.Container != "c-old" {
		t.Fatalf("primary %+v %v", p, ok)
	}
	tb.Apply(up("c-new", RolePrimary, "tcp://h:2", 12))
	if p, ok := tb.Primary("orders", sessA); !ok || p.Container != "c-new" {
		t.Fatalf("primary after the new one is up: %+v %v", p, ok)
	}
	tb.Apply(down("c-old", RolePrimary, 13))
	got := tb.Containers("orders", sessA)
	if len(got) != 2 || got[0].Container != "c-new" || got[1].Container != "c-sec" {
		t.Fatalf("containers %+v; want c-new then c-sec", got)
	}
	if _, ok := tb.Primary("orders", sessB); ok {
		t.Fatal("a primary for an unknown session")
	}
}

func TestClock(t *testing.T) {
	var c Clock
	const workers, each = 8, 1000
	seen := make(chan uint64, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			last := uint64(0)
			for range each {
				v := c.Next()
				if v <= last {
					t.Errorf("Next went from %d to %d", last, v)
				}
				last = v
				seen <- v
			}
		})
	}
	wg.Wait()
	close(seen)
	unique := map[uint64]bool{}
	for v := range seen {
		unique[v] = true
	}
	if len(unique) != workers*each {
		t.Fatalf("%d distinct values of %d", len(unique), workers*each)
	}
	if now := uint64(time.Now().UnixNano()); c.Next() < now-uint64(time.Second) {
		t.Fatal("the clock is not near wall time")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(up("c-1", RolePrimary, "unix:///run/c.sock", 1).Encode())
	f.Add(down("c-2", RoleSecondary, 1<<62).Encode())
	f.Add([]byte(`{"function":"orders","session":"default","role":"primary","container":"c","node":"","addr":"x","state":"up","seq":1,"extra":[1]}`))
	f.Add([]byte(`{"seq":-1}`))
	f.Add([]byte(`{"seq":1e30}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"function":"a.b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := u.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid update: %v", err)
		}
		back, err := Decode(u.Encode())
		if err != nil || back != u {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, u)
		}
		if fn, sess, err := ParseSubject(Subject(u.Function, u.Session)); err != nil || fn != u.Function || sess != u.Session {
			t.Fatalf("the subject of an accepted update does not parse: %v", err)
		}
	})
}

// testTable is a table without a connection, for Apply and the queries.
func testTable(opts TableOptions) *Table {
	if err := opts.fill(); err != nil {
		panic(err)
	}
	return newTable(nil, opts)
}
