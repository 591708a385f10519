#!/usr/bin/env bash
# One GPU check (scripts/gpu_check.py): timing, energy, matmul peak, compile, fp8, DDP/FSDP on this
# machine's GPUs, records under results/reference/. Without a GPU: one line, exit 0.
#   scripts/gpu_check.sh [--out DIR]
# Python: $PYTHON, else .venv/bin/python (scripts/setup.sh makes it), else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" scripts/gpu_check.py "$@"
