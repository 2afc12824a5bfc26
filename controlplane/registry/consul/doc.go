// Package consul is the registry.Registry of a cluster: containers are
// Consul services, namespace owners are Consul KV entries written by
// compare-and-swap (DESIGN.md, "Consul").
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
// of claims to rebuild.
package consul
