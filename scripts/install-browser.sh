#!/usr/bin/env bash
# Install the headless browser that tests/inspect/test_gallery.py drives (Debian's `chromium`).
# Called by scripts/install.sh. Idempotent: does nothing when a chromium binary is already on PATH. Needs root (apt-get).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium || command -v chromium-browser)"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
echo "installed: $(chromium --version)"
