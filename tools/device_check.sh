#!/usr/bin/env bash
# One-shot GPU check (docs/gpu-check.md): installs what is missing, runs the GPU-relevant
# tests (mixed precision, --deterministic, XLA), then times the reference networks' training
# steps (tools/device_check.py) and writes OUT/device_check.json and OUT/device_check.md.
# Sized to finish within 8 minutes on one GPU.
#
#   bash tools/device_check.sh [--out DIR] [--wheels DIR] [--cpu_dry_run]
#
#   --out DIR      where the JSON, the Markdown table and the test log go (default runs/device_check)
#   --wheels DIR   install from these wheels only (a machine without internet); otherwise pip
#                  installs tensorflow[and-cuda] at requirements.txt's version and the rest of
#                  requirements.txt when TensorFlow does not see a GPU yet
#   --cpu_dry_run  no install, no GPU: the same steps with tiny sizes and a few tests (CI/tests)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/device_check
WHEELS=""
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --cpu_dry_run) DRY=1; shift ;;
    *) echo "error: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2
PY=${PYTHON:-python3}
START=$(date +%s)

if [ "$DRY" -eq 0 ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  if ! "$PY" -c "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" 2>/dev/null; then
    TF_VERSION=$(grep -E '^tensorflow==' requirements.txt | cut -d= -f3)
    if [ -n "$WHEELS" ]; then
      "$PY" -m pip install -q --no-index --find-links "$WHEELS" "tensorflow[and-cuda]==$TF_VERSION" -r requirements.txt
    else
      "$PY" -m pip install -q "tensorflow[and-cuda]==$TF_VERSION" -r requirements.txt
    fi
  fi
  "$PY" -c "import tensorflow as tf, sys; g = tf.config.list_physical_devices('GPU'); print('TensorFlow', tf.__version__, 'GPUs:', g); sys.exit(0 if g else 1)" \
    || { echo "error: TensorFlow sees no GPU after the install (driver/CUDA mismatch?)" >&2; exit 1; }
  TESTS=(tests/test_mixed_precision.py tests/test_mixed_precision_runs.py
    tests/test_xla_and_steps_per_execution.py
    tests/test_train_lib.py::test_resumed_run_equals_uninterrupted_run)
  # With their large cases (bfloat16, XLA + float16, ...): left out of the CPU suite for time,
  # they are the precisions a GPU runs.
  SELECT=(--run_large)
else
  TESTS=(tests/test_mixed_precision.py tests/test_xla_and_steps_per_execution.py)
  SELECT=(-k "mixed_precision_flag_values or jit_compile_is_refused")
fi

echo "== GPU-relevant tests"
set +e
TEST_CPU_LOG= "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "${SELECT[@]}" 2>&1 | tee "$OUT/tests.log" | tail -5
TEST_RC=${PIPESTATUS[0]}
set -e

echo "== steps/s"
DRY_FLAG=()
[ "$DRY" -eq 1 ] && DRY_FLAG=(--cpu_dry_run)
"$PY" tools/device_check.py --out="$OUT" "${DRY_FLAG[@]}"
echo "device check finished in $(( $(date +%s) - START )) s; tests exit code $TEST_RC; results in $OUT"
exit "$TEST_RC"
