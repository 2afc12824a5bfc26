#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, if any is
# missing: clang + lld + wasi-libc (C guests), wabt (WAT test guests),
# redis-server (the benchmark baseline), nats-server, shellcheck (make check),
# wrk (scripts/throughput.sh), curl (scripts/cluster-up.sh and cluster-down.sh
# talk to the agents' HTTP APIs with it).
# Runs apt-get as root, or through sudo when not root.
set -euo pipefail

packages=(clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt redis-server nats-server shellcheck wrk curl)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if ! command -v apt-get >/dev/null; then
	echo "install-deps: missing ${missing[*]} and no apt-get to install them" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
		exit 1
	fi
	sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
