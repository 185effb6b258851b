#!/usr/bin/env bash
# Build a Debian bookworm base image from Debian packages, for machines that cannot pull
# from an image registry: debootstrap (minbase + python3, python3-venv, ca-certificates)
# then `docker import`. The host's CA bundle replaces the image's, so pip and apt inside
# builds trust what the host trusts (a proxy's CA included).
#
#   deploy/build-base-image.sh [IMAGE]        # default gpu-router-base:bookworm
#
# Does nothing when IMAGE exists. Needs root, debootstrap and a Docker daemon.
# $GPU_ROUTER_ROOTFS: keep the debootstrap tree there and reuse it (default: a temp dir).
set -euo pipefail
IMAGE="${1:-gpu-router-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "build-base-image: $IMAGE exists" >&2
  exit 0
fi
command -v debootstrap >/dev/null || { echo "build-base-image: debootstrap missing" >&2; exit 2; }

if [ -n "${GPU_ROUTER_ROOTFS:-}" ]; then
  DIR="$GPU_ROUTER_ROOTFS"
  KEEP=1
else
  DIR="$(mktemp -d /var/tmp/gpu-router-rootfs.XXXXXX)"
  KEEP=0
fi
cleanup() { if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; fi; }
trap cleanup EXIT

if [ ! -x "$DIR/usr/bin/python3" ]; then
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$DIR" "$MIRROR" >&2
fi
if [ -f "$CA" ]; then
  cp "$CA" "$DIR/etc/ssl/certs/ca-certificates.crt"
fi
rm -rf "$DIR"/var/lib/apt/lists/* "$DIR"/var/cache/apt/archives/*.deb
tar -C "$DIR" --exclude="./proc/*" --exclude="./sys/*" --exclude="./dev/*" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$IMAGE" >/dev/null
echo "build-base-image: built $IMAGE from $DIR" >&2
