package controlplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane/bus"
	"github.com/xfaas/xfaas/controlplane/cptest"
	"github.com/xfaas/xfaas/internal/natstest"
)

// A function that declares depends_on pulls state from another function's
// session through pull_state; the address comes from the NATS bus, and the
// pull follows the session when its primary moves to another container.
func TestPullFollowsTheSessionAcrossAMove(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 2})
	nc := natstest.Connect(t, e.NATS)
	updates := make(chan bus.Update, 64)
	table, err := bus.NewTable(context.Background(), nc, bus.TableOptions{All: true, OnChange: func(u bus.Update) {
		select {
		case updates <- u:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()

	e.Deploy("counter", "c/counter", "")
	e.Deploy("reader", "test/pull", `{"depends_on": ["counter"]}`)
	e.Deploy("stranger", "test/pull", "")
	session := e.SessionID("counter", "alice")
	pull := "counter " + session + " count"

	first := e.MustInvoke("counter", "alice", "incr 41")
	if got := e.MustInvoke("reader", "", pull).Body; got != "41" {
		t.Fatalf("pull = %q, want 41", got)
	}
	// The placement was announced on the session's subject.
	waitUpdate(t, updates, func(u bus.Update) bool {
		return u.Function == "counter" && u.Session == session && u.Container == first.Container && u.State == bus.Up && u.Role == bus.RolePrimary
	})
	// Undeclared functions and malformed sessions are refused (-7), an
	// unknown session is unavailable (-8): the request itself succeeds.
	if got := e.MustInvoke("stranger", "", pull).Body; got != "-7" {
		t.Fatalf("pull without depends_on = %q, want -7", got)
	}
	if got := e.MustInvoke("reader", "", "counter not-a-session count").Body; got != "-7" {
		t.Fatalf("pull of a malformed session = %q, want -7", got)
	}
	if got := e.MustInvoke("reader", "", "counter 0123456789abcdef0123456789abcdef count").Body; got != "-8" {
		t.Fatalf("pull of an unknown session = %q, want -8", got)
	}

	// The primary dies; the next request of the session places it anew
	// (state restore comes with checkpoints) and the reader follows.
	e.Kill(first.Container)
	waitUpdate(t, updates, func(u bus.Update) bool { return u.Container == first.Container && u.State == bus.Down })
	var moved cptest.Invocation
	deadline := time.Now().Add(20 * time.Second)
	for {
		moved = e.Invoke("counter", "alice", "incr 7")
		if moved.Status == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if moved.Status != 200 || moved.Container == first.Container {
		t.Fatalf("after the kill: %+v", moved)
	}
	want := moved.Body
	if got := e.MustInvoke("reader", "", pull).Body; got != want {
		t.Fatalf("pull after the move = %q, want %q from container %s", got, want, moved.Container)
	}
}

func waitUpdate(t *testing.T, updates <-chan bus.Update, match func(bus.Update) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case u := <-updates:
			if match(u) {
				return
			}
		case <-timeout:
			t.Fatal("no matching address update within 10s")
		}
	}
}
