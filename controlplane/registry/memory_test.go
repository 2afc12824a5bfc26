package registry_test

import (
	"testing"

	"github.com/xfaas/xfaas/controlplane/registry"
	"github.com/xfaas/xfaas/controlplane/registry/registrytest"
)

func TestMemory(t *testing.T) {
	registrytest.Run(t, func(*testing.T) registry.Registry { return registry.NewMemory() },
		func(_ *testing.T, r registry.Registry) registry.Registry { return r.(*registry.Memory).Replica() })
}
