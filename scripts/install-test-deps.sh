#!/bin/sh
# System packages the test suite needs beyond the Python ones: Debian's chromium, which
# tests/bench/test_run.py uses to render the bench report headless (the test is skipped without it).
set -eu
if command -v chromium >/dev/null 2>&1; then
    echo "chromium: $(chromium --version 2>/dev/null || echo installed)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
chromium --version
