package registry

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
)

// Memory is a Registry for one process. Replica returns another Registry
// on the same records, standing for a second control-plane process: owner
// leases tell the two apart, so tests can run replicas without Consul.
type Memory struct {
	st *memoryState
}

// memoryState is what the replicas of a Memory share.
type memoryState struct {
	mu       sync.Mutex
	services map[string]Registration // by container
	claims   map[[2]string]Registration
	leases   map[[2]string]*Memory // namespace -> owner lease holder
}

var _ Registry = (*Memory)(nil)

// NewMemory returns an empty registry.
func NewMemory() *Memory {
	return &Memory{st: &memoryState{services: map[string]Registration{},
		claims: map[[2]string]Registration{}, leases: map[[2]string]*Memory{}}}
}

// Replica returns a Registry on m's records with owner leases of its own,
// as another control-plane process on the same cluster has.
func (m *Memory) Replica() *Memory { return &Memory{st: m.st} }

// Register records r.
func (m *Memory) Register(_ context.Context, r Registration) error {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	m.st.services[r.Container] = r
	return nil
}

// Deregister removes the container's registration.
func (m *Memory) Deregister(_ context.Context, container string) error {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	delete(m.st.services, container)
	return nil
}

// ClaimPrimary claims the namespace for r unless it has a primary.
func (m *Memory) ClaimPrimary(_ context.Context, r Registration) (Registration, bool, error) {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	key := [2]string{r.Function, r.Session}
	if owner, ok := m.st.claims[key]; ok {
		return owner, false, nil
	}
	r.Role = RolePrimary
	m.st.claims[key] = r
	m.st.services[r.Container] = r
	return r, true, nil
}

// ReleasePrimary drops the claim if container holds it.
func (m *Memory) ReleasePrimary(_ context.Context, function, session, container string) error {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	key := [2]string{function, session}
	if owner, ok := m.st.claims[key]; ok && owner.Container == container {
		delete(m.st.claims, key)
	}
	return nil
}

// Primary returns the namespace's primary.
func (m *Memory) Primary(_ context.Context, function, session string) (Registration, error) {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	if owner, ok := m.st.claims[[2]string{function, session}]; ok {
		return owner, nil
	}
	return Registration{}, ErrNotFound
}

// List returns the function's registrations sorted by container.
func (m *Memory) List(_ context.Context, function string) ([]Registration, error) {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	var out []Registration
	for _, r := range m.st.services {
		if function == "" || r.Function == function {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Registration) int { return strings.Compare(a.Container, b.Container) })
	return out, nil
}

// AcquireOwner takes or keeps the namespace's owner lease for m.
func (m *Memory) AcquireOwner(_ context.Context, function, session string) (bool, error) {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	key := [2]string{function, session}
	if holder, ok := m.st.leases[key]; ok {
		return holder == m, nil
	}
	m.st.leases[key] = m
	return true, nil
}

// ReleaseOwner ends the namespace's owner lease if m holds it.
func (m *Memory) ReleaseOwner(_ context.Context, function, session string) error {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	key := [2]string{function, session}
	if m.st.leases[key] == m {
		delete(m.st.leases, key)
	}
	return nil
}

// Unowned returns the claims of namespaces without an owner lease, sorted
// by function and session.
func (m *Memory) Unowned(context.Context) ([]Registration, error) {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	var out []Registration
	for key, r := range m.st.claims {
		if _, held := m.st.leases[key]; !held {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Registration) int {
		return cmp.Or(strings.Compare(a.Function, b.Function), strings.Compare(a.Session, b.Session))
	})
	return out, nil
}

// Close ends every owner lease m holds, as the death of its process would.
func (m *Memory) Close() error {
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	for key, holder := range m.st.leases {
		if holder == m {
			delete(m.st.leases, key)
		}
	}
	return nil
}
