#!/usr/bin/env bash
# Debian packages the test suite needs: headless Chromium for the dashboard's browser test.
# Idempotent; skips quietly when already present. Needs root (as on CI) to install.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-system-deps: chromium missing and not root; the browser test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
