#!/usr/bin/env bash
# Create .venv/ in the repository root and install dragon-campaign with everything its tests and
# benchmarks use. Safe to run again. Usage: bash install.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
started=$SECONDS
step() { echo "install.sh [$(( SECONDS - started )) s] $*"; }

# redis-server: the Redis data path is measured and tested against a real server on 127.0.0.1
if ! command -v redis-server >/dev/null; then
    step "installing redis-server (apt-get)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y -q redis-server >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q redis-server >/dev/null; } \
        || { echo "install.sh: could not install redis-server (apt-get); install it and run again" >&2; exit 1; }
fi
if [ ! -x .venv/bin/python ]; then
    step "creating .venv/ with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
step "upgrading pip"
.venv/bin/python -m pip install --quiet --upgrade pip
# torch 2.13.0 is the CPU build on machines without CUDA; a plain "torch" would pull several GB of CUDA wheels.
step "installing torch ${TORCH_VERSION:-2.13.0} (the largest download)"
.venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}"
step "installing dragon-campaign and its extras: dragonhpc, RDKit, tblite, Parsl, ProxyStore, mpi4py + MPICH, Colmena, Ray, MkDocs, pytest"
.venv/bin/python -m pip install --quiet -e ".[all]"
.venv/bin/python -c "import dragon, dragon_campaign; print('dragon-campaign', dragon_campaign.__version__, 'installed in .venv/')"
step "done: bash run.sh runs the default campaign, bash run-tests.sh the tests"
