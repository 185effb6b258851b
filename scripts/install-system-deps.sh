#!/usr/bin/env bash
# Debian packages the test suite needs, and a running Docker daemon:
#   chromium        the dashboard's browser test
#   prometheus      promtool: the alert-rule unit tests and the dashboards' query check
#   docker.io, docker-compose, debootstrap
#                   the container test (tests/deploy/test_compose_stack.py) builds a
#                   base image from Debian packages and runs the test stack
#   postgresql      the PostgreSQL store's tests (initdb/pg_ctl: tests/shim/store/pg_server.py)
# Idempotent and quick when everything is present (a few `command -v` and one `docker
# info`). Installing needs root (as on CI); otherwise it says what is missing and the
# tests that need it skip, saying why.
set -euo pipefail

# package -> a command it provides
declare -A NEED=(
  [chromium]=chromium
  [prometheus]=promtool
  [docker.io]=dockerd
  [docker-compose]=docker-compose
  [debootstrap]=debootstrap
  [postgresql]=/usr/lib/postgresql
)
missing=()
for pkg in "${!NEED[@]}"; do
  probe="${NEED[$pkg]}"
  if [[ "$probe" == /* ]]; then
    [ -e "$probe" ] || missing+=("$pkg")
  else
    command -v "$probe" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$probe" \
      >/dev/null 2>&1 || missing+=("$pkg")
  fi
done

root=0
[ "$(id -u)" = "0" ] && root=1

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$root" = 0 ]; then
    echo "install-system-deps: missing ${missing[*]} and not root; the tests that need them will be skipped" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # postgresql's package starts a cluster only under an init system; that is fine.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# A Docker daemon: start one when there is none and we may (no systemd here: plain dockerd).
DOCKERD="$(PATH="$PATH:/usr/sbin:/sbin" command -v dockerd || true)"
if [ -n "$DOCKERD" ] && ! docker info >/dev/null 2>&1; then
  if [ "$root" = 1 ]; then
    if [ -d /run/systemd/system ]; then
      systemctl start docker
    else
      nohup "$DOCKERD" >/var/log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
    docker info >/dev/null 2>&1 \
      || echo "install-system-deps: dockerd did not start (see /var/log/dockerd.log); the container test will be skipped" >&2
  else
    echo "install-system-deps: no Docker daemon and not root; the container test will be skipped" >&2
  fi
fi
