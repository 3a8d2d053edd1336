#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine: the Debian Fashion-MNIST package,
# Chromium and its driver (tests/test_web.py), Node.js/npm, the pinned onnxruntime-web of the
# export's web demo (npm ci from as_introvae_tf/serving/web_page/package-lock.json) and the
# pinned Python packages of requirements.txt. Safe to run again (it skips what is there).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=""
apt_install() {  # apt_install PACKAGE...: one `apt-get update` per run, then install
  if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
  || [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist)..."
  apt_install dataset-fashion-mnist
fi

# Headless Chromium + chromedriver for the browser test of the web demo (tests/test_web.py).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "Installing Chromium and ChromeDriver (Debian packages chromium, chromium-driver)..."
  apt_install chromium chromium-driver
fi

# onnxruntime-web for the export's web demo (`export --web`), pinned in ONE place: the
# package.json (and its package-lock.json) of as_introvae_tf/serving/web_page/. Installed
# into its node_modules/ (not in git), which as_introvae_tf/serving/web.py copies from.
WEB_PAGE=as_introvae_tf/serving/web_page
if ! command -v npm >/dev/null 2>&1; then
  echo "Installing Node.js and npm (Debian packages nodejs, npm)..."
  apt_install nodejs npm
fi
ORT_WEB_PIN=$(node -p "require('./$WEB_PAGE/package.json').dependencies['onnxruntime-web']")
ORT_WEB_HAVE=$(node -p "try { require('./$WEB_PAGE/node_modules/onnxruntime-web/package.json').version } catch (e) { '' }")
if [ "$ORT_WEB_HAVE" != "$ORT_WEB_PIN" ] || [ ! -f "$WEB_PAGE/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm" ]; then
  echo "Installing onnxruntime-web $ORT_WEB_PIN (npm ci --prefix $WEB_PAGE)..."
  npm ci --prefix "$WEB_PAGE" --ignore-scripts --no-audit --no-fund --loglevel=error
fi

if ! python -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)"; then
  echo "Python >= 3.10 is required" >&2
  exit 1
fi
# uv installs requirements.txt (TensorFlow's 600 MB among them) with parallel downloads; on a
# machine that has everything this script takes 3.7 s with it against 9.1 s with pip (AMD EPYC,
# AVX2, 2 logical CPUs; docs/measurements.md, session 16). Its version is pinned in requirements.txt; pip installs
# it first. uv reads no pip settings (pip.conf, PIP_*
# indexes, certificates) and cannot install into a user site: where it fails, pip installs.
# --compile-bytecode as pip does: without .pyc files (and with PYTHONDONTWRITEBYTECODE=1, as
# on our machines) every process would compile TensorFlow's Python at import, twice as slow.
echo "Installing Python packages (requirements.txt)..."
UV_PIN=$(grep -E '^uv==' requirements.txt | tr -d '\r' | cut -d'#' -f1 | xargs || true)  # none: pip
if ! { python -m pip install -q --disable-pip-version-check "$UV_PIN" \
       && python -m uv pip install -q --compile-bytecode \
         --python "$(python -c 'import sys; print(sys.executable)')" -r requirements.txt; }; then
  echo "uv could not install requirements.txt; installing with pip" >&2
  python -m pip install -q --disable-pip-version-check -r requirements.txt
fi
