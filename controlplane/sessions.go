package controlplane

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Sessions reports the active namespaces of function fn, asking each
// container for its status (this is not on the request path).
func (s *Scheduler) Sessions(ctx context.Context, fn string) []SessionInfo {
	out := []SessionInfo{}
	for _, ns := range s.all() {
		if ns.fn.Name != fn {
			continue
		}
		out = append(out, ns.info(ctx))
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (ns *namespace) info(ctx context.Context) SessionInfo {
	ns.mu.Lock()
	members := slices.Clone(ns.members)
	inflight := make([]int, len(members))
	for i, m := range members {
		inflight[i] = m.inflight
	}
	info := SessionInfo{ID: ns.session, Status: "active", LastActive: ns.lastUsed.UTC(), Secondaries: []ContainerInfo{}}
	ns.mu.Unlock()
	cs := make([]ContainerInfo, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		cs[i] = ContainerInfo{Container: m.c.ID, Node: m.c.Node, Addr: m.c.Addr, InFlight: inflight[i]}
		wg.Go(func() {
			st, err := m.client.Status(ctx)
			if err != nil {
				cs[i].Error = err.Error()
				return
			}
			cs[i].Workers = st.Workers.Live
			if i == 0 && st.State != nil {
				info.StateBytes, info.StateKeys = st.State.Bytes, st.State.Keys
			}
		})
	}
	wg.Wait()
	for i, c := range cs {
		info.Workers += c.Workers
		info.InFlight += c.InFlight
		if i == 0 {
			info.Primary = &cs[0]
		} else {
			info.Secondaries = append(info.Secondaries, c)
		}
	}
	return info
}
