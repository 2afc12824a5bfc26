// Package cgroup creates, limits, measures and removes Linux control groups
// for xfaas, on cgroup v1 (one hierarchy per controller, as on this
// project's CI machine) and v2 (the unified hierarchy of most production
// hosts).
//
// # Two kinds of groups
//
// A container group holds one session container: the `xfaas proxy`
// process, with the container's CPU, memory and pids limits. Its spawner
// (the Nomad driver, or the local placement backend) creates it, sizes it
// and moves the process in with [Group.AddProcess].
//
// A worker group ([Group.Thread]) is a child of a container group that holds
// the OS thread of one worker slot: a goroutine that called
// runtime.LockOSThread and then moved its thread in with [Group.AddThread].
// It carries only that worker's CPU quota. Memory is not limited per worker
// by cgroups: v1 charges memory to the process (the mm), not the thread, and
// v2's memory controller is not threaded; the wasm memory limit bounds each
// worker and the container group's memory limit bounds them all.
//
// # v1 and v2
//
// On v1 a group is one directory per controller hierarchy; cpu and cpuacct
// may be separate mounts (this machine) or one co-mounted "cpu,cpuacct"
// hierarchy (systemd hosts). Mounts are found in /proc/self/mountinfo, so
// both layouts work. Container groups use cpu, cpuacct, memory and, where
// mounted, pids; worker groups use cpu and cpuacct. A thread joins a worker
// group by writing its TID to "tasks"; the quota is cpu.cfs_quota_us over
// cpu.cfs_period_us.
//
// On v2 a group is one directory. Controllers must be enabled in every
// ancestor's cgroup.subtree_control, which [Group.Create] does. A worker
// group is made "threaded" (written to its cgroup.type) after "+cpu" is
// enabled in the container group, which thereby becomes a threaded-subtree
// root ("domain threaded"); the container group itself enables no domain
// controller (memory, pids) for its children, as the kernel requires. A
// thread joins by writing its TID to cgroup.threads, and only threads of a
// process in the container group's subtree may. The quota is cpu.max,
// "quota period".
//
// Hybrid hosts (v1 controllers and a v2 mount at /sys/fs/cgroup/unified,
// usually with no controllers) are used as v1.
//
// # Paths
//
// A group is named by its path below the hierarchy's mount point, e.g.
// "/xfaas/node-0/c-12ab", the same in every v1 hierarchy. That is the path
// /proc/self/cgroup shows, except where a mount's root is not the
// hierarchy's root (a container's view without a cgroup namespace);
// [Hierarchy.Self] translates.
//
// Limits are described with the OCI runtime-spec's LinuxResources, as the
// Nomad driver's API does; [MilliCPU], [Memory] and [Resources] build them.
// See RATIONALE.md, "Workers and cgroups", for why workers are threads in
// groups of their own.
package cgroup
