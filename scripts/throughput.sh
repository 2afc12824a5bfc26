#!/usr/bin/env bash
# Measures warm-invoke throughput through a real `xfaas dev`: the trivial C
# guest (sdk/c/examples/hello.c) deployed, then wrk from another process
# against POST /v1/functions/hello/invoke. Prints one req/s line per run and
# the mean. Needs wrk and make wasm's toolchain, both from make deps.
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

sum=0
for i in $(seq "$runs"); do
	out=$(wrk -t2 -c "$conns" -d "${secs}s" -s "$data/post.lua" "http://$addr/v1/functions/hello/invoke")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "throughput: some requests failed:" >&2
		echo "$out" >&2
		exit 1
	fi
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	echo "run $i: $rps req/s"
	sum=$(awk -v a="$sum" -v b="$rps" 'BEGIN {print a + b}')
done
awk -v s="$sum" -v n="$runs" -v c="$conns" 'BEGIN {printf "mean: %.0f req/s at %d connections\n", s / n, c}'
