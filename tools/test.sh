#!/usr/bin/env bash
# The test command of README.md and CI: installs what is missing, then runs the fast suite
# (tests marked `large` are skipped; `python -m pytest --run_large` runs them too) on
# TEST_WORKERS pytest-xdist workers (default 2, the cores of the CI machine and of ours), a test
# file per worker at a time (`--dist loadfile`: a file's module-scoped trained runs are built once).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# One code style (pyproject.toml [tool.ruff]): `ruff format .` fixes what the first line finds.
ruff format --check --quiet . || { echo "error: files above are not formatted: run 'ruff format .'" >&2; exit 1; }
ruff check --quiet .
export TF_CPP_MIN_LOG_LEVEL=2
python -m pytest -q -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
