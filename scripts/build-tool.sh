#!/usr/bin/env bash
# Builds a pinned tool binary (nomad, consul) from its own Go module under
# tools/<name> into .cache/bin/<name>, unless a binary built from the same
# go.mod and go.sum is already there. The version lives in tools/<name>/go.mod.
set -euo pipefail

name=$1
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/tools/$name"
out="$root/.cache/bin/$name"
stamp="$root/.cache/bin/.$name.stamp"

[ -f "$dir/go.mod" ] || { echo "build-tool: no module at $dir" >&2; exit 1; }
want=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -d' ' -f1)
if [ -x "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi

# The tool's package: `tool PKG`, or the first line of a `tool ( ... )` block.
pkg=$(awk '/^tool \(/{getline; print $1; exit} /^tool [^(]/{print $2; exit}' "$dir/go.mod")
[ -n "$pkg" ] || { echo "build-tool: no tool directive in $dir/go.mod" >&2; exit 1; }
echo "build-tool: building $name ($pkg) — a few minutes on 2 cores, cached afterwards"
mkdir -p "$(dirname "$out")"
start=$(date +%s)
(cd "$dir" && GONOSUMDB=github.com/hashicorp/consul-awsauth GOFLAGS=-mod=mod go build -o "$out.tmp" "$pkg")
mv "$out.tmp" "$out"
echo "$want" > "$stamp"
echo "build-tool: $name built in $(( $(date +%s) - start ))s"
