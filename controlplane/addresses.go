package controlplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/xfaas/xfaas/controlplane/bus"
	"github.com/xfaas/xfaas/controlplane/registry"
)

// addresses connects the scheduler to the NATS address bus (DESIGN.md,
// "NATS"): it publishes every placement and release of this control plane
// on xfaas.addr.<function>.<session>, follows every other replica's updates
// in a table, answers address lookups (for session containers whose
// pull_state misses) from that table and then the registry, and tells the
// scheduler when a primary it adopted from another replica has moved or
// gone, so that its routing cache does not outlive the namespace.
type addresses struct {
	pub    *bus.Publisher
	table  *bus.Table
	lookup *nats.Subscription
	log    hclog.Logger
}

// newAddresses returns the bus connection of a control plane; it publishes
// at once and follows the bus after follow.
func newAddresses(nc *nats.Conn, log hclog.Logger) *addresses {
	return &addresses{pub: bus.NewPublisher(nc), log: log}
}

// follow subscribes to every address update and answers lookups from the
// table and reg (see known). onPrimary is called (from the table's delivery
// goroutine; it must not block) with each update about a primary.
func (a *addresses) follow(ctx context.Context, nc *nats.Conn, reg registry.Registry, onPrimary func(bus.Update)) error {
	var err error
	a.table, err = bus.NewTable(ctx, nc, bus.TableOptions{All: true, Logger: a.log,
		// A replica answers lookups from this table; asking the bus on its
		// own misses would only ask itself.
		LookupTimeout: -1,
		OnChange: func(u bus.Update) {
			if u.Role == bus.RolePrimary {
				onPrimary(u)
			}
		}})
	if err != nil {
		return fmt.Errorf("follow session addresses: %w", err)
	}
	if a.lookup, err = bus.ServeLookups(nc, a.known(reg)); err != nil {
		return fmt.Errorf("serve address lookups: %w", err)
	}
	return nil
}

// registryLookupTimeout bounds the registry query behind one address
// lookup; the asking container gives up sooner anyway.
const registryLookupTimeout = 2 * time.Second

// known answers an address lookup: what the table holds, and, when it
// knows no primary, the primary the registry names. A table knows only
// what was published after it subscribed, so a replica that (re)started
// while sessions kept running would otherwise answer that they have none,
// and their dependents' pull_state would fail until the next placement.
// The registry's answer carries the lowest sequence number: any update the
// bus carried about that container, a "down" above all, wins over it.
func (a *addresses) known(reg registry.Registry) func(function, session string) []bus.Update {
	return func(function, session string) []bus.Update {
		found := a.table.Containers(function, session)
		for _, u := range found {
			if u.Role == bus.RolePrimary {
				return found
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), registryLookupTimeout)
		defer cancel()
		p, err := reg.Primary(ctx, function, session)
		if err != nil {
			if !errors.Is(err, registry.ErrNotFound) {
				a.log.Warn("address lookup: the registry did not answer", "function", function, "session", session, "error", err)
			}
			return found
		}
		return append(found, bus.Update{Function: function, Session: session, Role: bus.RolePrimary,
			Container: p.Container, Node: p.Node, Addr: p.Addr, State: bus.Up, Seq: 1})
	}
}

// Announce publishes where a container of a namespace is (up) or that it is
// gone. A registration without a session (a pool container) has no
// subject and is not published.
func (a *addresses) Announce(r registry.Registration, up bool) {
	if r.Function == "" || r.Session == "" {
		return
	}
	state := bus.Down
	if up {
		state = bus.Up
	}
	u := bus.Update{Function: r.Function, Session: r.Session, Role: r.Role, Container: r.Container,
		Node: r.Node, Addr: r.Addr, State: state}
	if _, err := a.pub.Publish(u); err != nil {
		a.log.Warn("failed to publish an address update", "function", r.Function, "session", r.Session, "container", r.Container, "error", err)
	}
}

// close stops following; it works after a failed follow.
func (a *addresses) close() {
	if a.lookup != nil {
		_ = a.lookup.Unsubscribe()
	}
	if a.table != nil {
		_ = a.table.Close()
	}
}
