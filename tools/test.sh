#!/usr/bin/env bash
# The test command of README.md and CI: installs what is missing, then runs the fast suite
# (tests marked `large` are skipped; `python -m pytest --run_large` runs them too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
python -m pytest -q "$@"
