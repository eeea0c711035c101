#!/usr/bin/env bash
# Creates .venv (once) and installs aerec with its test extras into it. Idempotent and quick when
# everything is already there. Used by quickstart.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first, pinned: on the project's machines this finds the local CPU build; a looser
# requirement would pull a multi-GB CUDA build. Elsewhere pip fetches 2.13.0 from PyPI.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
stamp=.venv/.aerec-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet -e ".[test]"
  touch "$stamp"
fi
