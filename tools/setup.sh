#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine: the Debian Fashion-MNIST package
# and the pinned Python packages of requirements.txt. Safe to run again (it skips what is there).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist)..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

if ! python -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)"; then
  echo "Python >= 3.10 is required" >&2
  exit 1
fi
echo "Installing Python packages (requirements.txt)..."
python -m pip install -q --disable-pip-version-check -r requirements.txt
