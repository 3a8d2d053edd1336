#!/usr/bin/env bash
# The test command of README.md and CI: installs what is missing, checks the style and builds
# the documentation site, then runs the fast suite
# (tests marked `large` are skipped; `python -m pytest --run_large` runs them too) on
# TEST_WORKERS pytest-xdist workers (default 3 on the 2-core CI machine and ours: a third worker
# fills the moments a worker waits on a subprocess; docs/measurements.md), each test to whichever
# worker is free, except that the tests sharing a module-scoped fixture (a trained
# run, an export) stay together (`--dist loadgroup`; tests/conftest.py marks them), so it is
# built once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# One code style (pyproject.toml [tool.ruff]): `ruff format .` fixes what the first line finds.
ruff format --check --quiet . || { echo "error: files above are not formatted: run 'ruff format .'" >&2; exit 1; }
ruff check --quiet .
# The reference site (mkdocs.yml): a broken link, a missing page or a docstring that no longer
# renders fails here. Not --quiet: it drops the warnings before --strict counts them, and the
# build passes whatever they say; the log is printed only when the build fails.
docs_log=$(mktemp)
NO_MKDOCS_2_WARNING=1 mkdocs build --strict > "$docs_log" 2>&1 || {   # into site/ (git-ignored)
  grep -v '^INFO' "$docs_log" >&2 || true
  rm -f "$docs_log"
  echo "error: the documentation site does not build strictly (warnings above)" >&2
  exit 1
}
rm -f "$docs_log"
export TF_CPP_MIN_LOG_LEVEL=2
# tests/test_web.py fails (not skips) without Chromium or onnxruntime-web: setup.sh installs them.
export AS_INTROVAE_REQUIRE_BROWSER=1
# The real-data tests (Fashion-MNIST, CIFAR-10 in ../shared/data) fail, not skip, without their
# data: setup.sh installs Fashion-MNIST, and ../shared/ is there on every machine and in CI.
export AS_INTROVAE_REQUIRE_DATA=1
python -m pytest -q -n "${TEST_WORKERS:-3}" --dist loadgroup "$@"
