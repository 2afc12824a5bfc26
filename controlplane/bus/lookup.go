package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// LookupPrefix starts the subjects of address lookups: a request on
// xfaas.addrlookup.<function>.<session> asks for the containers of that
// session. It is how a table that subscribed after a session was placed
// learns where the session is: core NATS delivers only what is published
// after a subscription.
const LookupPrefix = "xfaas.addrlookup."

// lookupQueue is the queue group of lookup responders: one of them answers.
const lookupQueue = "xfaas-addr-lookup"

// LookupSubject is the subject of a lookup of (function, session).
func LookupSubject(function, session string) string {
	return LookupPrefix + function + "." + session
}

// ServeLookups answers lookups on nc with what source returns for the
// session: its containers, as updates with the seq they were published with
// (the updates a registry or a table holds). Responders form a queue group,
// so each lookup gets one answer. The caller unsubscribes the returned
// subscription to stop.
func ServeLookups(nc *nats.Conn, source func(function, session string) []Update) (*nats.Subscription, error) {
	return nc.QueueSubscribe(LookupPrefix+"*.*", lookupQueue, func(m *nats.Msg) {
		function, session, ok := strings.Cut(strings.TrimPrefix(m.Subject, LookupPrefix), ".")
		var found []Update
		if ok && CheckFunction(function) == nil && CheckSession(session) == nil {
			for _, u := range source(function, session) {
				if u.Function == function && u.Session == session && u.Validate() == nil {
					found = append(found, u)
				}
			}
		}
		data, _ := json.Marshal(found)
		_ = m.Respond(data) // the requester times out if the reply is lost
	})
}

// lookupCall is one lookup in flight; concurrent misses of a session wait
// for it rather than asking again.
type lookupCall struct {
	done  chan struct{}
	found bool // a primary is known after it
}

// lookup asks a lookup responder about (function, session) and applies the
// answer. It reports whether the table knows a primary afterwards.
func (t *Table) lookup(ctx context.Context, function, session string) bool {
	if t.opts.LookupTimeout < 0 || CheckSession(session) != nil || !t.follows(function) {
		return false
	}
	k := sessionKey{function, session}
	t.mu.Lock()
	if until, ok := t.misses[k]; ok && time.Now().Before(until) {
		t.mu.Unlock()
		return false
	}
	if c := t.lookups[k]; c != nil {
		t.mu.Unlock()
		select {
		case <-c.done:
			return c.found
		case <-ctx.Done():
			return false
		}
	}
	c := &lookupCall{done: make(chan struct{})}
	t.lookups[k] = c
	t.mu.Unlock()

	err := t.ask(ctx, function, session)
	_, c.found = t.Primary(function, session)

	t.mu.Lock()
	delete(t.lookups, k)
	if !c.found {
		t.rememberMissLocked(k)
	}
	t.mu.Unlock()
	close(c.done)
	if err != nil && !errors.Is(err, nats.ErrNoResponders) {
		t.log.Warn("address lookup failed", "function", function, "session", session, "error", err)
	}
	return c.found
}

// rememberMissLocked records a lookup that found nothing, dropping expired
// records once there are many.
func (t *Table) rememberMissLocked(k sessionKey) {
	now := time.Now()
	if len(t.misses) >= 1024 {
		for mk, until := range t.misses {
			if now.After(until) {
				delete(t.misses, mk)
			}
		}
	}
	t.misses[k] = now.Add(t.opts.LookupBackoff)
}

// ask sends one lookup and applies the updates of the answer.
func (t *Table) ask(ctx context.Context, function, session string) error {
	ctx, cancel := context.WithTimeout(ctx, t.opts.LookupTimeout)
	defer cancel()
	m, err := t.nc.RequestWithContext(ctx, LookupSubject(function, session), nil)
	if err != nil {
		return err
	}
	var updates []Update
	if err := json.Unmarshal(m.Data, &updates); err != nil {
		return fmt.Errorf("%w: lookup answer: %v", ErrInvalid, err)
	}
	for _, u := range updates {
		if u.Function == function && u.Session == session {
			t.Apply(u)
		}
	}
	return nil
}
