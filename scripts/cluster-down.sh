#!/usr/bin/env bash
# Stops the cluster of scripts/cluster-up.sh and removes what it left: its
# Nomad jobs (and so every session container), the nomad and consul agents,
# the cgroups of its containers, the mounts Nomad made for its tasks and the
# state in .cache/cluster. Safe to run twice, or after a failed start.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.cache/cluster"
export PATH="$root/.cache/bin:$PATH"
export NOMAD_ADDR=http://127.0.0.1:4646

say() { echo "cluster-down: $*"; }

# alive PIDFILE: whether the process of PIDFILE runs.
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop PIDFILE NAME: SIGINT, then SIGKILL after 20 s.
stop() {
	local pidfile=$1 name=$2 pid
	alive "$pidfile" || return 0
	pid=$(cat "$pidfile")
	say "stopping $name (pid $pid)"
	kill -INT "$pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# The agent's allocations, whose task cgroups are removed below: listed
# before their jobs are purged, and from the agent's data directory.
allocs=$( {
	alive "$state/nomad.pid" && command -v curl >/dev/null && curl -sf http://127.0.0.1:4646/v1/allocations | grep -o '"ID":"[0-9a-f-]*"' | cut -d'"' -f4
	ls "$state/nomad/alloc" 2>/dev/null
} | sort -u || true)

if alive "$state/nomad.pid"; then
	# The control plane first: it releases its sessions' containers.
	jobs=$(nomad job status -short 2>/dev/null | awk 'NR > 1 && $1 != "" {print $1}' || true)
	for job in xfaas-controlplane $jobs; do
		nomad job stop -purge -detach "$job" >/dev/null 2>&1 || true
	done
	if ! command -v curl >/dev/null; then
		say "curl is not installed (scripts/install-deps.sh installs it): not waiting for the allocations to stop"
	else
		say "waiting for the allocations to stop"
		for _ in $(seq 150); do
			running=$(curl -sf --get --data-urlencode 'filter=ClientStatus == "running" or ClientStatus == "pending"' \
				http://127.0.0.1:4646/v1/allocations | grep -o '"ID"' | wc -l || true)
			[ "${running:-0}" -eq 0 ] && break
			sleep 0.2
		done
	fi
fi
stop "$state/nomad.pid" nomad
stop "$state/consul.pid" consul

# procs DIR: the processes in the cgroup DIR and the groups below it.
procs() { find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null || true; }

# removegroup DIR: kills what is left in the cgroup DIR and the groups below
# it, and removes them, deepest first, once their processes have exited: a
# group is busy until then, SIGKILL or not. The kill is repeated, for
# processes forked meanwhile, for up to 10 s.
removegroup() {
	local dir=$1 left pid
	for _ in $(seq 50); do
		left=$(procs "$dir")
		[ -z "$left" ] && break
		for pid in $left; do
			kill -KILL "$pid" 2>/dev/null || true
		done
		sleep 0.2
	done
	find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
	if [ -d "$dir" ]; then
		say "could not remove cgroup $dir (processes: $(procs "$dir" | tr '\n' ' '))"
	fi
}

# Whatever is left in this cluster's cgroups (a container whose agent was
# killed).
for dir in /sys/fs/cgroup/*/xfaas-cluster /sys/fs/cgroup/xfaas-cluster; do
	[ -d "$dir" ] || continue
	removegroup "$dir"
done

# Nomad's own task groups of this agent's allocations: Nomad 1.10 makes them
# under /nomad (cgroup v1) or nomad.slice (v2) whatever client.cgroup_parent
# says, and removes them in the background after a task stops, which an
# agent stopped right after its jobs (or while they ran) never finishes.
# Only this agent's: another agent's allocations have other ids.
for id in $allocs; do
	for dir in /sys/fs/cgroup/*/nomad/"$id".* /sys/fs/cgroup/*/nomad/*/"$id".* /sys/fs/cgroup/nomad.slice/*/"$id".*.scope; do
		[ -d "$dir" ] || continue
		removegroup "$dir"
	done
done

# Nomad mounts a tmpfs in every task's secrets and private directories.
if [ -d "$state" ]; then
	{ grep -o " $state/[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r mnt; do
		umount -l "$mnt" 2>/dev/null || true
	done
	rm -rf "$state"
fi
say "done"
