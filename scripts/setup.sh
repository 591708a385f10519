#!/usr/bin/env bash
# Create .venv if missing and install the project into it. Used by run.sh and test.sh.
# torch is installed only when the venv has none, from ${TORCH_SPEC:-torch==2.13.0}
# (on CPU machines that is a CPU build; GPU users set TORCH_SPEC to their CUDA build).
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

if ! .venv/bin/python -c 'import torch' >/dev/null 2>&1; then
  # split into words (a spec may carry pip options such as --index-url), never evaluated
  read -ra torch_spec <<< "${TORCH_SPEC:-torch==2.13.0}"
  echo "setup: installing ${torch_spec[*]}" >&2
  "${PIP[@]}" install "${torch_spec[@]}"
fi

target="."
if [ -n "${1:-}" ]; then target=".[$1]"; fi
"${PIP[@]}" install -e "$target"
