#!/usr/bin/env bash
# Set up .venv if needed, measure the default config (or the arguments given), then write the
# report of that run (results/report/report.html, or under --results-dir) and print its path:
#   scripts/run.sh                       # the packaged default config (harness/data/default.yaml)
#   scripts/run.sh configs/tiny-llama.yaml --set train.batch_size=4
# Arguments go to `harness run` unchanged; --report is added.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/harness run --report "$@"
