# xfaas — make run starts the dev platform, make test runs every test.
# Everything a fresh Debian machine lacks is installed or built on demand:
# Debian packages by scripts/install-deps.sh, nomad and consul from their
# pinned tool modules (tools/*/go.mod) into .cache/bin (git-ignored).

SHELL := /bin/bash
GO ?= go
BIN := bin
CACHE := .cache
export PATH := $(CURDIR)/$(CACHE)/bin:$(PATH)
# Test guests and example modules are built once per source hash here.
export XFAAS_WASM_CACHE := $(CURDIR)/$(CACHE)/wasm

# Packages whose tests exercise concurrency run under the race detector.
RACE_PKGS := ./proxy/... ./internal/wire/... ./internal/cgroup/... ./controlplane/... ./driver/...
TEST_TIMEOUT := 20m

.PHONY: all build run test test-race test-sdk check deps tools wasm bench bench-full clean cluster-up cluster-down

all: build

deps:
	@scripts/install-deps.sh

tools: deps
	@scripts/build-tool.sh nomad
	@scripts/build-tool.sh consul

build:
	$(GO) build -o $(BIN)/xfaas ./cmd/xfaas

wasm: deps
	$(GO) run ./internal/testwasm/cmd/buildwasm -out build/wasm

run: deps build
	$(BIN)/xfaas dev

# nomad and consul (real agents in the Consul, driver and e2e tests) are
# built once from their pinned tool modules and cached in .cache/bin.
test: tools
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -race -timeout $(TEST_TIMEOUT) $(RACE_PKGS)
	$(MAKE) --no-print-directory test-sdk

test-sdk:
	cd sdk/go && $(GO) test -count=1 ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...

# make bench: the Go benchmarks, then `xfaas bench --quick` (the paper's
# evaluation against a Redis baseline, < 5 min) into build/bench.
# make bench-full: the full evaluation into build/bench-full.
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./proxy/... ./internal/wire/... ./controlplane/
	$(BIN)/xfaas bench --quick --out build/bench

bench-full: deps build
	$(BIN)/xfaas bench --out build/bench-full

check: deps
	@echo "gofmt"; test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	cd sdk/go && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...
	$(GO) tool -modfile=tools/lint/go.mod staticcheck ./...
	@echo "go mod tidy (tools/nomad and tools/consul are pinned snapshots: their trees do not tidy)"; for d in . sdk/go tools/lint; do \
		(cd $$d && $(GO) mod tidy -diff) || { echo "go.mod of $$d is not tidy"; exit 1; }; done
	shellcheck scripts/*.sh .ci/run

clean:
	rm -rf $(BIN) build

# A real single-node cluster on this machine (as root): consul, nomad with the
# xfaas driver, and NATS, the session pool and the control plane as Nomad jobs
# (jobspecs/); state in .cache/cluster. See jobspecs/README.md.
cluster-up: tools
	@scripts/cluster-up.sh

cluster-down:
	@scripts/cluster-down.sh
