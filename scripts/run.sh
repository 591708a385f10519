#!/usr/bin/env bash
# Set up .venv if needed, then measure the default config (or the arguments given):
#   scripts/run.sh                       # configs/default.yaml
#   scripts/run.sh configs/tiny-llama.yaml --set train.batch_size=4
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/harness run "$@"
