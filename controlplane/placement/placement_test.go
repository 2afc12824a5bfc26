package placement

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/xfaas/xfaas/internal/apierror"
)

func TestSpread(t *testing.T) {
	small := Size{Workers: 1, WorkerCPUMillicores: 100, WorkerMemoryMB: 128} // 1100 millicores, 224 MiB
	big := Size{Workers: 4, WorkerCPUMillicores: 500, WorkerMemoryMB: 512}   // 3000 millicores, 2144 MiB
	room := &Resources{Millicores: 4000, MemoryMB: 4096}
	nodes := []Node{
		{Name: "a", Capacity: 10, Claimed: 5, Free: room, Allocatable: room},
		{Name: "b", Capacity: 20, Claimed: 6, Free: &Resources{Millicores: 2000, MemoryMB: 4096}, Allocatable: room},
		{Name: "c", Capacity: 4, Claimed: 4, Free: room, Allocatable: room}, // full of claims
		{Name: "d", Capacity: 10, Claimed: 3, Free: &Resources{}, Allocatable: room,
			PoolSizes: []Size{{Workers: 2, WorkerCPUMillicores: 100, WorkerMemoryMB: 128}}},
		{Name: "e", Capacity: 10, Claimed: 5}, // counts no resources: any size fits
	}
	for _, tc := range []struct {
		size Size
		want []string
	}{
		// By share claimed (b and d 30 %, a and e 50 %), ties in order;
		// d's pool container holds small though d has nothing else free.
		{small, []string{"b", "d", "a", "e"}},
		// b has too little CPU free, d's pool container is too small.
		{big, []string{"a", "e"}},
	} {
		got, err := Spread(nodes, tc.size)
		var names []string
		for _, n := range got {
			names = append(names, n.Name)
		}
		if err != nil || !slices.Equal(names, tc.want) {
			t.Errorf("Spread(%s) = %v, %v; want %v", tc.size, names, err, tc.want)
		}
	}

	counted := []Node{nodes[0], nodes[1], nodes[3]}
	huge := Size{Workers: 8, WorkerCPUMillicores: 500, WorkerMemoryMB: 512} // 5000 millicores
	for _, tc := range []struct {
		name  string
		nodes []Node
		size  Size
		want  string
		retry bool
	}{
		{"too big", counted, huge, "function too big for any node: a container of 8 workers x 500 millicores x 512 MB needs 5000 millicores and 4192 MiB; none of the 3 nodes can start one of more than 4000 millicores or 4096 MiB", false},
		{"too big, full", []Node{nodes[2]}, huge, "function too big for any node", false},
		{"no room now", []Node{nodes[1], nodes[3]}, big, "no capacity: no node has room for a container of 4 workers x 500 millicores x 512 MB (3000 millicores, 2144 MiB) now", true},
		{"every node full", []Node{nodes[2]}, small, ErrNoCapacity.Message, true},
		{"no nodes", nil, small, ErrNoCapacity.Message, true},
	} {
		got, err := Spread(tc.nodes, tc.size)
		var ae *apierror.Error
		if got != nil || !errors.As(err, &ae) || ae.Kind != apierror.Unavailable || !strings.HasPrefix(ae.Message, tc.want) || (ae.RetryAfter > 0) != tc.retry {
			t.Errorf("%s: Spread = %v, %#v; want a 503 %q, retry %v", tc.name, got, err, tc.want, tc.retry)
		}
	}
}
