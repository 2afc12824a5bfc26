#!/usr/bin/env bash
# Starts a real single-node xfaas cluster on this machine: a consul agent
# (-dev, HTTP on 8500, DNS on 8600), a nomad agent (server and client, HTTP on
# 4646) with the xfaas task driver configured by jobspecs/agent.hcl, and, as
# Nomad jobs from jobspecs/, NATS with JetStream (4222), the session pool and
# the control plane (API on 127.0.0.1:8080). Its state lives in .cache/cluster
# (git-ignored); scripts/cluster-down.sh stops everything and removes it.
#
# Needs root (the driver places containers in cgroups), the nomad and consul
# binaries (`make tools`), and Debian's nats-server (installed if missing).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.cache/cluster"
bin="$root/.cache/bin"
export PATH="$bin:$PATH"
export NOMAD_ADDR=http://127.0.0.1:4646
export CONSUL_HTTP_ADDR=127.0.0.1:8500
pool_count=${XFAAS_POOL:-3}

say() { echo "cluster-up: $*"; }
die() {
	echo "cluster-up: $*" >&2
	exit 1
}

# wait_for DESCRIPTION SECONDS COMMAND...: runs COMMAND every 0.2 s until it
# succeeds, or fails with DESCRIPTION after SECONDS.
wait_for() {
	local what=$1 seconds=$2
	shift 2
	local deadline=$((SECONDS + seconds))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			die "timed out after ${seconds}s waiting for $what (logs in $state/*.log)"
		fi
		sleep 0.2
	done
}

# run_job FILE [ARGS...]: nomad job run, quiet unless it fails.
run_job() {
	local file=$1 out
	shift
	say "running jobspecs/$(basename "$file")"
	out=$(nomad job run -detach "$@" "$file" 2>&1) || die "nomad job run $file: $out"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ "$(id -u)" -eq 0 ] || die "run as root: the xfaas driver places containers in cgroups"
command -v curl >/dev/null || die "curl is not installed (scripts/install-deps.sh installs it)"
if [ -f "$state/nomad.pid" ] && kill -0 "$(cat "$state/nomad.pid")" 2>/dev/null; then
	die "a cluster is already running (scripts/cluster-down.sh stops it)"
fi
for port in 8500 8600 4646 4647 4648 4222 8080; do
	port_free "$port" || die "port $port is in use; the cluster needs 8500, 8600, 4646-4648, 4222 and 8080"
done

# Binaries: nomad and consul from their tool modules (`make tools`; built
# here if there are none on PATH), nats-server from Debian, xfaas and the
# driver from this tree.
for tool in nomad consul; do
	command -v "$tool" >/dev/null || "$root/scripts/build-tool.sh" "$tool"
done
nats_server=$(command -v nats-server || true)
if [ -z "$nats_server" ]; then
	say "installing Debian's nats-server"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
	nats_server=$(command -v nats-server) || die "nats-server is not installed"
fi
mkdir -p "$state/bin" "$state/plugins" "$state/nats" "$state/cache"
say "building xfaas and the xfaas driver"
(cd "$root" && go build -o "$state/bin/xfaas" ./cmd/xfaas)
# Nomad refuses a plugin whose version is not semantic.
(cd "$root" && go build -ldflags "-X main.version=0.0.0-cluster" -o "$state/plugins/xfaas" ./cmd/xfaas-driver)

say "starting consul (log: $state/consul.log)"
setsid consul agent -dev -node xfaas-cluster -bind 127.0.0.1 -client 127.0.0.1 \
	-log-level warn >"$state/consul.log" 2>&1 </dev/null &
echo $! >"$state/consul.pid"
wait_for "a consul leader" 30 bash -c 'curl -sf http://127.0.0.1:8500/v1/status/leader | grep -q ":"'

# What agent.hcl leaves to the machine: paths, and the driver's cgroup
# parent of this cluster's own, which cluster-down.sh removes. (Nomad's own
# task groups are under /nomad whatever client.cgroup_parent says: Nomad
# 1.10 does not apply it. cluster-down.sh removes this agent's.)
cat >"$state/local.hcl" <<EOF
data_dir   = "$state/nomad"
plugin_dir = "$state/plugins"

plugin "xfaas" {
  config {
    proxy_path    = "$state/bin/xfaas"
    nats          = "nats://127.0.0.1:4222"
    cache_dir     = "$state/cache"
    cgroup_parent = "xfaas-cluster"
  }
}
EOF
say "starting nomad (log: $state/nomad.log)"
setsid nomad agent -config "$root/jobspecs/agent.hcl" -config "$state/local.hcl" \
	>"$state/nomad.log" 2>&1 </dev/null &
echo $! >"$state/nomad.pid"
node_ready() {
	curl -sf --get --data-urlencode 'filter=Status == "ready" and Drivers.xfaas.Healthy == true' \
		http://127.0.0.1:4646/v1/nodes | grep -q '"ID"'
}
wait_for "a ready nomad node with a healthy xfaas driver" 60 node_ready

run_job "$root/jobspecs/nats.nomad.hcl" -var "nats_server=$nats_server" -var "store_dir=$state/nats"
wait_for "NATS on 4222" 60 port_open 4222

run_job "$root/jobspecs/xfaas-pool.nomad.hcl" -var "count=$pool_count"
pool_ready() {
	[ "$(curl -sf --get --data-urlencode 'filter=Service.Meta.role == "pool"' \
		'http://127.0.0.1:8500/v1/health/service/xfaas-session?passing=1' | grep -o '"ServiceID"' | wc -l)" -ge "$pool_count" ]
}
wait_for "$pool_count passing pool containers in consul" 90 pool_ready

run_job "$root/jobspecs/xfaas-controlplane.nomad.hcl" -var "xfaas=$state/bin/xfaas"
wait_for "the control plane on 127.0.0.1:8080" 90 curl -sf http://127.0.0.1:8080/healthz

cat <<EOF

xfaas runs on Nomad: API http://127.0.0.1:8080, Nomad UI http://127.0.0.1:4646,
Consul UI http://127.0.0.1:8500. Try:

  export PATH=$state/bin:$bin:\$PATH NOMAD_ADDR=$NOMAD_ADDR
  $root/jobspecs/example-deploy.sh        # deploy and invoke a counter
  xfaas invoke counter --session alice -d incr
  nomad job status                         # pool, one-off sessions, control plane, NATS
  nomad job status xfaas-pool
  nomad alloc status -stats <alloc id>     # a container's CPU and memory
  curl -s --get 'http://127.0.0.1:8500/v1/health/service/xfaas-session' \\
    --data-urlencode 'filter=Service.Meta.function == "counter" and Service.Meta.role == "primary"'
  dig @127.0.0.1 -p 8600 primary.xfaas-session.service.consul SRV   # Consul DNS (dnsutils)

Stop it all with: make cluster-down
EOF
