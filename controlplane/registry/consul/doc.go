// Package consul is the registry.Registry of a cluster: containers are
// Consul services, namespace primaries are Consul KV entries written by
// compare-and-swap (DESIGN.md, "Consul"), and owner leases are KV locks
// held by a Consul session per control-plane process.
//
// # Services
//
// Each container is service "xfaas-session" with the container id as service
// id, registered through the control plane's local agent. Meta holds
// function, session, role, node and addr (the proxy address, tcp://host:port
// or unix:///path). A tcp container also gets Address and Port, and an HTTP
// check on http://host:port/healthz run by Consul. A unix container has no
// address Consul could reach (nor Address and Port: DNS answers with the
// agent node's address for it), so it gets a TTL check instead, which this
// registry refreshes by probing /healthz over the socket itself every
// CheckInterval: passing on 200, critical otherwise. That refresh lives as
// long as the Registry that registered the container; after a restart a
// control plane must re-register its unix containers, or their checks expire
// and, after DeregisterAfter, Consul drops the services.
//
// Registrations go through the agent, which syncs them to the catalog in the
// background; Register and Deregister wait (a blocking query, bounded by
// SyncTimeout) until the catalog shows the change, so List right after them
// reads its own writes. A service belongs to the agent that registered it:
// Deregister through another agent is registry.ErrNotFound, and Consul itself
// drops a service whose check stayed critical for DeregisterAfter.
//
// Tags make the services findable through Consul DNS, where a lookup can
// filter on one tag: the role ("primary.xfaas-session.service.consul"),
// "fn-<function>", "s-<session>", and "<role>-<function>-<session>", which
// names a namespace's primary (or its secondaries):
//
//	dig @127.0.0.1 -p 8600 primary-counter-alice.xfaas-session.service.consul SRV
//
// DNS labels are case-insensitive and at most 63 bytes, so this works for
// short DNS-safe names only; the health API with a Meta filter always works:
//
//	curl 'localhost:8500/v1/health/service/xfaas-session?filter=Service.Meta.function=="counter" and Service.Meta.session=="alice" and Service.Meta.role=="primary"'
//
// # Namespace ownership
//
// Key xfaas/primary/<function>/<session> (both path-escaped) holds the JSON
// registry.Registration of the namespace's primary. ClaimPrimary writes it
// with a CAS put at index 0, which only creates, so of racing control-plane
// replicas exactly one wins; the losers read and return the winner.
// ReleasePrimary deletes it with a CAS delete at the ModifyIndex it read,
// and only if the entry still names the releasing container, so it never
// drops a claim made after the read.
//
// Claims are not tied to a Consul session, on purpose. A claim names a
// container, not a control plane: when a replica dies its containers keep
// running and serving their sessions, and a session-tied claim would be
// deleted under a live primary, letting another replica start a second one
// with no state. A claim ends when a control plane releases it (eviction,
// keep-alive expiry, or finding the primary gone). A replica that starts
// adopts a namespace on its first request, from Primary: it keeps no table
// of claims to rebuild. Unowned lists the claims and the leases, a read of
// each prefix, for the scheduler's sweep of namespaces whose owner is gone.
//
// # Owner leases
//
// Which control-plane process may checkpoint, evict and release a
// namespace's primary is a lease beside the claim: key
// xfaas/owner/<function>/<session> (escaped as the claim's key), taken by
// AcquireOwner with a KV acquire under the Registry's Consul session. There
// is one session per Registry, that is per process, created on the first
// lease with TTL OwnerTTL (15 s), renewed every third of it, behavior
// delete, and destroyed by Close. When the process dies its session ends
// one to two TTLs later and Consul deletes its keys; after OwnerLockDelay
// (15 s, Consul's default, kept on purpose) another replica's AcquireOwner
// takes them over. The lock delay is what makes a lease safe to act on: a
// retire confirms the lease with AcquireOwner right before it checkpoints,
// and even if the session ends just after that, no other replica holds the
// lease until a lock delay later. A session that ended under a live
// process (a partition, an operator) is replaced on the next AcquireOwner,
// which then answers false for every lease another replica took meanwhile
// or the lock delay still closes. ReleaseOwner deletes the key with a CAS,
// which has no lock delay.
package consul
