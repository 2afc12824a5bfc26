#!/usr/bin/env bash
# Measures warm-invoke throughput through a real `xfaas dev`: the trivial C
# guest (sdk/c/examples/hello.c) deployed, then wrk from another process
# against POST /v1/functions/hello/invoke. Prints one line per run (req/s, and
# the CPU time xfaas dev and its containers spent per request) and the mean.
# Needs wrk and make wasm's toolchain, both from make deps.
#
#   scripts/throughput.sh [-c CONNECTIONS] [-d SECONDS] [-n RUNS] [-- DEV FLAGS]
#
# Example: scripts/throughput.sh -c 8 -n 6; scripts/throughput.sh -- --no-cgroups
set -euo pipefail

conns=8 secs=3 runs=5
while getopts "c:d:n:" o; do
	case $o in
	c) conns=$OPTARG ;;
	d) secs=$OPTARG ;;
	n) runs=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift

command -v wrk >/dev/null || { echo "throughput: wrk is not installed (make deps installs it)" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
go build -o bin/xfaas ./cmd/xfaas
go run ./internal/testwasm/cmd/buildwasm -out build/wasm >/dev/null

data=$(mktemp -d)
echo 'wrk.method = "POST"' >"$data/post.lua"
port=$((20000 + RANDOM % 20000))
addr=127.0.0.1:$port
bin/xfaas dev --data "$data" --listen "$addr" --log-level warn "$@" >"$data/dev.log" 2>&1 &
dev=$!
trap 'kill -INT $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
	curl -fs "http://$addr/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
export XFAAS_ADDR=http://$addr
bin/xfaas deploy hello build/wasm/c/hello.wasm >/dev/null
curl -fs -X POST "http://$addr/v1/functions/hello/invoke" >/dev/null
wrk -t1 -c "$conns" -d 1s -s "$data/post.lua" "http://$addr/v1/functions/hello/invoke" >/dev/null

# cpu_ticks: user and system clock ticks of xfaas dev and its containers
# (its children), which steadies a comparison on a machine whose speed moves.
cpu_ticks() {
	local t=0 pid
	for pid in $dev $(pgrep -P "$dev"); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
hz=$(getconf CLK_TCK)

sum=0
for i in $(seq "$runs"); do
	t0=$(cpu_ticks)
	out=$(wrk -t2 -c "$conns" -d "${secs}s" -s "$data/post.lua" "http://$addr/v1/functions/hello/invoke")
	t1=$(cpu_ticks)
	if grep -q "Non-2xx" <<<"$out"; then
		echo "throughput: some requests failed:" >&2
		echo "$out" >&2
		exit 1
	fi
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	n=$(awk '/ requests in / {print $1}' <<<"$out")
	awk -v i="$i" -v r="$rps" -v t=$((t1 - t0)) -v hz="$hz" -v n="$n" \
		'BEGIN {printf "run %d: %s req/s, %.0f µs of xfaas CPU per request\n", i, r, t * 1e6 / hz / n}'
	sum=$(awk -v a="$sum" -v b="$rps" 'BEGIN {print a + b}')
done
awk -v s="$sum" -v n="$runs" -v c="$conns" 'BEGIN {printf "mean: %.0f req/s at %d connections\n", s / n, c}'
