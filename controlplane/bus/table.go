package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
)

// ErrClosed is returned by the calls of a closed Table.
var ErrClosed = errors.New("address table closed")

// TableOptions configure a Table.
type TableOptions struct {
	// All follows the updates of every function (subject xfaas.addr.>), as
	// a control-plane replica does. Otherwise the table follows Functions and
	// the functions later given to Watch.
	All bool
	// Functions are the functions to follow from the start.
	Functions []string
	// OnChange, when set, is called with every update the table applied
	// (one newer than what it held for that container): an "up" that added
	// or moved a container, a "down" that removed one. Calls come one at a
	// time, in the order the updates were applied, and never after Close
	// returns. OnChange may call Primary and Containers; it must not block
	// or call the table's other methods.
	OnChange func(Update)
	// TombstoneTTL is how long a "down" is remembered, so that a late "up"
	// of the same container does not bring it back. The default is 10
	// minutes.
	TombstoneTTL time.Duration
	// LookupTimeout bounds the lookup that PrimaryAddr makes on a miss (see
	// ServeLookups). The default is 250 ms; a negative value disables
	// lookups.
	LookupTimeout time.Duration
	// LookupBackoff is how long, after a lookup that found no primary,
	// PrimaryAddr answers a miss of that session without asking again. An
	// update on the subject still fills the table at once. The default is
	// 1 s.
	LookupBackoff time.Duration
	Logger        hclog.Logger
}

func (o *TableOptions) fill() error {
	if o.TombstoneTTL <= 0 {
		o.TombstoneTTL = 10 * time.Minute
	}
	if o.LookupTimeout == 0 {
		o.LookupTimeout = 250 * time.Millisecond
	}
	if o.LookupBackoff <= 0 {
		o.LookupBackoff = time.Second
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	for _, fn := range o.Functions {
		if err := CheckFunction(fn); err != nil {
			return err
		}
	}
	return nil
}

// flushTimeout bounds the wait for the server to confirm new subscriptions.
const flushTimeout = 10 * time.Second

// Table is an address table: the latest update of every container of the
// sessions of the functions it follows, learnt from NATS. It is safe for
// concurrent use. See the package documentation for its ordering and
// staleness semantics.
type Table struct {
	nc   *nats.Conn
	opts TableOptions
	log  hclog.Logger

	// applyMu serializes applying an update with its OnChange call, and
	// subscribing with closing. It guards closed and is taken before mu.
	applyMu sync.Mutex
	closed  bool

	mu         sync.RWMutex
	subs       map[string]*nats.Subscription   // by function; "" for all
	sessions   map[sessionKey]map[string]entry // container id -> its latest update
	tombstones int                             // entries that are "down"
	nextSweep  time.Time
	lookups    map[sessionKey]*lookupCall // in flight
	misses     map[sessionKey]time.Time   // lookups that found nothing, until when they count
}

type sessionKey struct{ function, session string }

type entry struct {
	u  Update
	at time.Time // when a "down" was applied, to expire its tombstone
}

// NewTable subscribes to the updates of the functions of opts on nc and
// returns once the server has the subscriptions, so that every update
// published after it returns is seen. nc stays the caller's; close the table
// before it.
func NewTable(ctx context.Context, nc *nats.Conn, opts TableOptions) (*Table, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	t := newTable(nc, opts)
	var err error
	if opts.All {
		err = t.subscribe(ctx, []string{""})
	} else {
		err = t.subscribe(ctx, opts.Functions)
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// newTable returns a table that follows nothing yet.
func newTable(nc *nats.Conn, opts TableOptions) *Table {
	return &Table{
		nc: nc, opts: opts, log: opts.Logger,
		subs:     map[string]*nats.Subscription{},
		sessions: map[sessionKey]map[string]entry{},
		lookups:  map[sessionKey]*lookupCall{},
		misses:   map[sessionKey]time.Time{},
	}
}

// Watch makes the table follow the updates of functions too (a no-op for
// functions it follows already, and for a table that follows all). Like
// NewTable, it returns once the server has the subscriptions; if the
// server cannot be reached now, they are made when the connection is back.
func (t *Table) Watch(ctx context.Context, functions []string) error {
	for _, fn := range functions {
		if err := CheckFunction(fn); err != nil {
			return err
		}
	}
	return t.subscribe(ctx, functions)
}

// subscribe subscribes to the subjects of functions ("" for all) that the
// table does not follow yet, then flushes.
func (t *Table) subscribe(ctx context.Context, functions []string) error {
	t.applyMu.Lock()
	if t.closed {
		t.applyMu.Unlock()
		return ErrClosed
	}
	added := 0
	for _, fn := range functions {
		if t.follows(fn) {
			continue
		}
		subject := SubjectPrefix + ">"
		if fn != "" {
			subject = SubjectPrefix + fn + ".>"
		}
		sub, err := t.nc.Subscribe(subject, t.receive)
		if err != nil {
			t.applyMu.Unlock()
			return fmt.Errorf("subscribe to %s: %w", subject, err)
		}
		t.mu.Lock()
		t.subs[fn] = sub
		t.mu.Unlock()
		added++
	}
	t.applyMu.Unlock()
	if added == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, flushTimeout) // FlushWithContext needs a deadline
	defer cancel()
	if err := t.nc.FlushWithContext(ctx); err != nil {
		t.log.Warn("address subscriptions not confirmed by the server yet", "functions", functions, "error", err)
	}
	return nil
}

// follows reports whether the table follows function ("": all).
func (t *Table) follows(function string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.subs[""] != nil || t.subs[function] != nil
}

// receive handles one message of a subscription.
func (t *Table) receive(m *nats.Msg) {
	u, err := decodeOn(m.Subject, m.Data)
	if err != nil {
		t.log.Warn("ignoring a malformed address update", "subject", m.Subject, "error", err)
		return
	}
	t.Apply(u)
}

// Apply applies u as if it had arrived on its subject: it replaces what the
// table holds for u's container if u is newer (see the package
// documentation), and reports whether it did. An invalid update is ignored.
// The control plane may use it to fill a table from the registry.
func (t *Table) Apply(u Update) bool {
	if u.Validate() != nil {
		return false
	}
	t.applyMu.Lock()
	defer t.applyMu.Unlock()
	if t.closed || !t.store(u) {
		return false
	}
	if t.opts.OnChange != nil {
		t.opts.OnChange(u)
	}
	return true
}

// store keeps u if it is newer than the entry of its container.
func (t *Table) store(u Update) bool {
	k := sessionKey{u.Function, u.Session}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := t.sessions[k]
	old, seen := cs[u.Container]
	if seen && !newer(u, old.u) {
		return false
	}
	if cs == nil {
		cs = map[string]entry{}
		t.sessions[k] = cs
	}
	wasDown := seen && old.u.State == Down
	e := entry{u: u}
	if u.State == Down {
		e.at = now
		if !wasDown {
			t.tombstones++
		}
	} else if wasDown {
		t.tombstones--
	}
	cs[u.Container] = e
	t.sweepLocked(now)
	return true
}

// sweepLocked forgets expired tombstones, at most twice per TombstoneTTL.
func (t *Table) sweepLocked(now time.Time) {
	if t.tombstones == 0 || now.Before(t.nextSweep) {
		return
	}
	t.nextSweep = now.Add(t.opts.TombstoneTTL / 2)
	cutoff := now.Add(-t.opts.TombstoneTTL)
	for k, cs := range t.sessions {
		for id, e := range cs {
			if e.u.State == Down && e.at.Before(cutoff) {
				delete(cs, id)
				t.tombstones--
			}
		}
		if len(cs) == 0 {
			delete(t.sessions, k)
		}
	}
}

// Primary returns the update of the primary of (function, session): of the
// containers that are up in the primary role, the one with the highest seq
// (during a move the new primary is up before the old one is down).
func (t *Table) Primary(function, session string) (Update, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var best Update
	found := false
	for _, e := range t.sessions[sessionKey{function, session}] {
		if e.u.State == Up && e.u.Role == RolePrimary && (!found || e.u.Seq > best.Seq || e.u.Seq == best.Seq && e.u.Container > best.Container) {
			best, found = e.u, true
		}
	}
	return best, found
}

// Containers returns the updates of the containers of (function, session)
// that are up: primaries first, then by container id.
func (t *Table) Containers(function, session string) []Update {
	t.mu.RLock()
	var out []Update
	for _, e := range t.sessions[sessionKey{function, session}] {
		if e.u.State == Up {
			out = append(out, e.u)
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Update) int {
		if a.Role != b.Role {
			if a.Role == RolePrimary {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Container, b.Container)
	})
	return out
}

// PrimaryAddr returns the address of the primary of (function, session).
// On a miss, for a function the table follows, it asks a lookup responder
// (bounded by ctx and LookupTimeout) before giving up; see ServeLookups.
// It is what the session runtime resolves pull_state with.
func (t *Table) PrimaryAddr(ctx context.Context, function, session string) (string, bool) {
	if u, ok := t.Primary(function, session); ok {
		return u.Addr, true
	}
	if !t.lookup(ctx, function, session) {
		return "", false
	}
	u, ok := t.Primary(function, session)
	return u.Addr, ok
}

// Close unsubscribes. After it returns OnChange is not called again. It is
// idempotent.
func (t *Table) Close() error {
	t.applyMu.Lock()
	if t.closed {
		t.applyMu.Unlock()
		return nil
	}
	t.closed = true
	t.applyMu.Unlock()
	t.mu.Lock()
	subs := t.subs
	t.subs = nil
	t.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
