#!/usr/bin/env bash
# Runs docker-compose.yaml with whichever compose tool works here (`make docker-up`, `docker-down`,
# `docker-test`):
#   1. Docker's `docker compose` (the Compose plugin) with a Docker daemon that answers;
#   2. Podman: `podman compose` (Podman 4.7+), or `podman-compose` on PATH or in $COMPOSE_VENV.
# `tools/compose.sh detect` only says which one it found (or what is missing and how to get it);
# `tools/compose.sh ARGS...` runs `<that tool> ARGS...`. COMPOSE_ENGINE=docker|podman skips the other.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_VENV=${COMPOSE_VENV:-.venv-compose}
COMPOSE_ENGINE=${COMPOSE_ENGINE:-}
missing=()

find_docker() {
  if ! command -v docker >/dev/null 2>&1; then
    missing+=("Docker: no \`docker\` command (Docker Engine with its Compose plugin: https://docs.docker.com/engine/install/, or Docker Desktop)")
    return 1
  fi
  if ! docker compose version >/dev/null 2>&1; then
    missing+=("Docker: \`docker\` is installed but not its Compose plugin (\`docker compose version\` fails; \`docker-compose-plugin\` from Docker's apt/dnf repository, or Docker Desktop)")
    return 1
  fi
  if ! docker info >/dev/null 2>&1; then
    missing+=("Docker: Compose is installed but no Docker daemon answers (\`docker info\` fails; start it: \`sudo systemctl start docker\`, or start Docker Desktop)")
    return 1
  fi
  COMPOSE=(docker compose)
}

find_podman() {
  if ! command -v podman >/dev/null 2>&1; then
    missing+=("Podman: no \`podman\` command (Debian/Ubuntu: \`apt-get install podman\`; Fedora: \`dnf install podman\`)")
    return 1
  fi
  # `podman compose` exists from Podman 4.7 on and itself needs docker-compose or podman-compose.
  if podman compose version >/dev/null 2>&1; then
    COMPOSE=(podman compose)
  elif command -v podman-compose >/dev/null 2>&1; then
    COMPOSE=(podman-compose)
  elif [ -x "$COMPOSE_VENV/bin/podman-compose" ]; then
    COMPOSE=("$COMPOSE_VENV/bin/podman-compose")
  else
    missing+=("Podman: \`podman\` is installed but no compose tool (\`make compose-tools\` installs podman-compose from PyPI into $COMPOSE_VENV; Debian's podman-compose 1.0 cannot run this file's host networking)")
    return 1
  fi
  podman_settings
}

# What Podman needs on some machines, in a containers.conf of ours unless the user selected their own:
# container limits that a root which may not raise its own can set (Podman's default of about a million
# open files fails there with `setrlimit ... Operation not permitted`), and runc where it is installed
# (crun refuses hybrid cgroup v1 hosts; runc runs on every cgroup layout).
podman_settings() {
  [ -n "${CONTAINERS_CONF:-}" ] && return 0
  mkdir -p target/compose
  local conf=target/compose/containers.conf
  {
    echo '[containers]'
    echo 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]'
    if command -v runc >/dev/null 2>&1; then
      echo '[engine]'
      echo 'runtime = "runc"'
    fi
  } > "$conf"
  export CONTAINERS_CONF="$PWD/$conf"
}

COMPOSE=()
case "$COMPOSE_ENGINE" in
  docker) find_docker || true ;;
  podman) find_podman || true ;;
  "") find_docker || find_podman || true ;;
  *) echo "COMPOSE_ENGINE=$COMPOSE_ENGINE: docker or podman" >&2; exit 2 ;;
esac

if [ ${#COMPOSE[@]} -eq 0 ]; then
  echo "No way to run docker-compose.yaml here:" >&2
  for m in "${missing[@]}"; do echo "  - $m" >&2; done
  echo "Install one of them (README, \"Docker Compose or Podman\"), or use 'make run', which needs neither." >&2
  exit 1
fi

if [ "${1:-}" = detect ]; then
  echo "compose: ${COMPOSE[*]}"
  exit 0
fi
echo "compose: ${COMPOSE[*]} $*" >&2
exec "${COMPOSE[@]}" "$@"
