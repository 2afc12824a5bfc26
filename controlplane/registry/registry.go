// Package registry records where session containers are and who owns each
// session namespace. The memory implementation serves one control plane
// (xfaas dev); the Consul one (DESIGN.md, "Consul") serves replicas on a
// cluster. Both decide which container is a namespace's primary by
// compare-and-swap, so two control-plane replicas can never create two
// primaries for one session, and which control-plane process may retire it
// by an owner lease that ends with that process (RATIONALE.md, "Who retires
// a namespace.").
package registry

import (
	"context"
	"errors"
)

// Roles of a registered container.
const (
	RolePool      = "pool"
	RolePrimary   = "primary"
	RoleSecondary = "secondary"
)

// Registration is one container: service "xfaas-session" with the
// container id as service id, the proxy address, and the Meta of DESIGN.md.
type Registration struct {
	Container string `json:"container"`
	Function  string `json:"function,omitempty"`
	Session   string `json:"session,omitempty"`
	Role      string `json:"role"`
	Node      string `json:"node"`
	Addr      string `json:"addr"`
}

// ErrNotFound is returned for an unknown container or namespace.
var ErrNotFound = errors.New("not registered")

// Registry is where containers and namespace owners are recorded.
type Registry interface {
	// Register records or updates a container's registration.
	Register(ctx context.Context, r Registration) error
	// Deregister removes a container's registration. It does not release a
	// primary claim: that is ReleasePrimary's job.
	Deregister(ctx context.Context, container string) error
	// ClaimPrimary makes r the primary of (r.Function, r.Session) unless the
	// namespace has one; then it returns that one and false.
	ClaimPrimary(ctx context.Context, r Registration) (owner Registration, won bool, err error)
	// ReleasePrimary removes the namespace's claim if container holds it.
	ReleasePrimary(ctx context.Context, function, session, container string) error
	// Primary returns the namespace's primary, or ErrNotFound.
	Primary(ctx context.Context, function, session string) (Registration, error)
	// List returns the registrations of a function, or all with "".
	List(ctx context.Context, function string) ([]Registration, error)

	// AcquireOwner takes the owner lease of the namespace (function,
	// session) for this Registry, or keeps it if this Registry holds it
	// already, and reports whether it holds it now: false means another
	// Registry holds it (or, on Consul, held it until it was lost and the
	// lock delay has not yet passed). One Registry stands for one
	// control-plane process; the holder is the one process that may
	// checkpoint, evict, upgrade and release the namespace's primary. A
	// lease ends with ReleaseOwner, with Close, or when its process dies;
	// it is separate from the primary claim, which outlives a dead control
	// plane on purpose.
	AcquireOwner(ctx context.Context, function, session string) (bool, error)
	// ReleaseOwner ends the namespace's owner lease if this Registry holds
	// it, and does nothing otherwise.
	ReleaseOwner(ctx context.Context, function, session string) error
	// Unowned returns the primary claims of the namespaces whose owner
	// lease nobody holds, in a read or two of the registry whatever their
	// number: what a control-plane replica sweeps for namespaces left to
	// nobody (RATIONALE.md, "Who retires a namespace."). A claim shows
	// here also for the moment between ClaimPrimary and its placer's
	// AcquireOwner, and while a lease whose holder ended is closed by
	// Consul's lock delay.
	Unowned(ctx context.Context) ([]Registration, error)
	// Close ends every owner lease this Registry holds, as its process's
	// death would, and stops its background work. Registrations and claims
	// stay. It is idempotent.
	Close() error
}
