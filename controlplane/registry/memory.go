package registry

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Memory is a Registry for one process.
type Memory struct {
	mu       sync.Mutex
	services map[string]Registration // by container
	owners   map[[2]string]Registration
}

var _ Registry = (*Memory)(nil)

// NewMemory returns an empty registry.
func NewMemory() *Memory {
	return &Memory{services: map[string]Registration{}, owners: map[[2]string]Registration{}}
}

// Register records r.
func (m *Memory) Register(_ context.Context, r Registration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.services[r.Container] = r
	return nil
}

// Deregister removes the container's registration.
func (m *Memory) Deregister(_ context.Context, container string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.services, container)
	return nil
}

// ClaimPrimary claims the namespace for r unless it has an owner.
func (m *Memory) ClaimPrimary(_ context.Context, r Registration) (Registration, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := [2]string{r.Function, r.Session}
	if owner, ok := m.owners[key]; ok {
		return owner, false, nil
	}
	r.Role = RolePrimary
	m.owners[key] = r
	m.services[r.Container] = r
	return r, true, nil
}

// ReleasePrimary drops the claim if container holds it.
func (m *Memory) ReleasePrimary(_ context.Context, function, session, container string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := [2]string{function, session}
	if owner, ok := m.owners[key]; ok && owner.Container == container {
		delete(m.owners, key)
	}
	return nil
}

// Primary returns the namespace's owner.
func (m *Memory) Primary(_ context.Context, function, session string) (Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if owner, ok := m.owners[[2]string{function, session}]; ok {
		return owner, nil
	}
	return Registration{}, ErrNotFound
}

// List returns the function's registrations sorted by container.
func (m *Memory) List(_ context.Context, function string) ([]Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Registration
	for _, r := range m.services {
		if function == "" || r.Function == function {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Registration) int { return strings.Compare(a.Container, b.Container) })
	return out, nil
}
