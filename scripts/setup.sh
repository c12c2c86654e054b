#!/usr/bin/env bash
# One-time set-up on a fresh machine: the Fashion-MNIST data (Debian package,
# where apt is available), the pinned CPU build of PyTorch, and robustmix itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
      || echo "robustmix setup: could not install dataset-fashion-mnist; set ROBUSTMIX_DATA to a folder with the IDX files" >&2
  else
    echo "robustmix setup: run 'sudo apt-get install dataset-fashion-mnist' or set ROBUSTMIX_DATA" >&2
  fi
fi

# Pinned: an unpinned 'torch' would pull a multi-GB CUDA build.
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
