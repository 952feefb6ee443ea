#!/usr/bin/env bash
# Create .venv/ in the repository root and install dragon-campaign with everything its tests and
# benchmarks use. Safe to run again. Usage: bash install.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
# redis-server: the Redis data path is measured and tested against a real server on 127.0.0.1
if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y -q redis-server >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q redis-server >/dev/null; } \
        || { echo "install.sh: could not install redis-server (apt-get); install it and run again" >&2; exit 1; }
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch 2.13.0 is the CPU build on machines without CUDA; a plain "torch" would pull several GB of CUDA wheels.
.venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[all]"
.venv/bin/python -c "import dragon, dragon_campaign; print('dragon-campaign', dragon_campaign.__version__, 'installed in .venv/')"
