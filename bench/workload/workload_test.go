package workload

import (
	"bytes"
	"testing"

	"github.com/xfaas/xfaas/internal/testwasm"
)

func TestEmbeddedModulesAreCurrent(t *testing.T) {
	for guest, embedded := range Embedded() {
		if fresh := testwasm.Bytes(t, guest); !bytes.Equal(fresh, embedded) {
			t.Errorf("the embedded %s (%d bytes) differs from a fresh build (%d bytes): rebuild as the package doc says",
				guest, len(embedded), len(fresh))
		}
	}
}

func TestByName(t *testing.T) {
	for _, w := range All() {
		got, err := ByName(w.Name)
		if err != nil || got.Guest != w.Guest || len(got.Module) == 0 {
			t.Errorf("ByName(%q) = %v, %v", w.Name, got.Guest, err)
		}
	}
	if _, err := ByName("nope"); err == nil {
		t.Error("ByName(nope) succeeded")
	}
}
