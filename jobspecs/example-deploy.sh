#!/usr/bin/env bash
# Deploys the example counter function to the control plane running as a
# Nomad job (scripts/cluster-up.sh), invokes it in two sessions, and shows
# where the sessions' primaries run: in the control plane's session list, in
# Nomad (each container is an allocation) and in Consul.
#
#   jobspecs/example-deploy.sh            # against http://127.0.0.1:8080
#   XFAAS_ADDR=http://host:8080 jobspecs/example-deploy.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.cache/cluster/bin:$root/.cache/bin:$PATH"
export NOMAD_ADDR=${NOMAD_ADDR:-http://127.0.0.1:4646}
consul=${CONSUL_HTTP_ADDR:-127.0.0.1:8500}

# deploy keeps the function's hint keyset in the local keystore, so that
# invoke --session can seal labels; durability "log" loses no acknowledged
# write when a container dies.
xfaas deploy counter "$root/cmd/xfaas/example/counter.wasm" --config '{"durability": "log", "max_workers": 4}'
for label in alice alice alice bob; do
	echo "counter, session $label: $(xfaas invoke counter --session "$label" -d incr)"
done
xfaas sessions counter

echo
echo "the containers, as Nomad allocations:"
nomad job status xfaas-pool | sed -n '/^Allocations/,$p'
echo
echo "the sessions' primaries, from Consul's health API:"
# (add passing=1 for those whose check passes: a new one's first check runs
# within a second)
primaries=$(curl -sf --get "http://$consul/v1/health/service/xfaas-session" \
	--data-urlencode 'filter=Service.Meta.function == "counter" and Service.Meta.role == "primary"')
if command -v jq >/dev/null; then
	jq -r '.[] | "\(.Service.ID) at \(.Service.Address):\(.Service.Port), session \(.Service.Meta.session), checks \([.Checks[].Status] | join(","))"' <<<"$primaries"
else
	echo "$primaries"
fi
