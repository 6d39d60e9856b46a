#!/usr/bin/env bash
# Install the headless browser that tests/inspect/test_gallery.py drives (Debian's `chromium`) where this user can.
# Called by scripts/install.sh, which must succeed without root: only the gallery tests need a browser, so where it
# cannot be installed this prints one line with the command to run, exits 0, and those tests skip naming the same
# command. Idempotent: does nothing when a chromium binary is already on PATH.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium || command -v chromium-browser)"
    exit 0
fi
WHY="only the gallery tests use it; they are skipped until then"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium not installed (no apt-get here): install Chromium with your package manager so that \`chromium\` is on PATH ($WHY)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "chromium not installed (apt-get needs root): run \`sudo bash $0\` ($WHY)"
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
echo "installed: $(chromium --version)"
