package controlplane

// Crash ends s as the death of its process would: it forgets its
// namespaces without a checkpoint or a release, so that their containers
// serve on and their claims stay; its scheduler stops, and the Close of
// its registry ends its owner leases. What Close does later finds nothing
// left to retire.
func (s *Server) Crash() error {
	sc := s.sched
	sc.mu.Lock()
	namespaces := sc.namespaces
	sc.namespaces = map[nsKey]*namespace{}
	sc.mu.Unlock()
	for _, ns := range namespaces {
		ns.mu.Lock()
		for _, m := range ns.members {
			m.client.Close() // the process's connections end with it
		}
		ns.mu.Unlock()
	}
	sc.Close()
	return sc.opts.Registry.Close()
}
