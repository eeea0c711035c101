#!/usr/bin/env bash
# Runs the test suite (set up first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
# The browser test drives Debian's headless Chromium; install it once on a fresh (root) machine.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      chromium chromium-driver; } >/dev/null 2>&1 \
    || echo "test.sh: could not install chromium; the browser test will be skipped" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
