#!/usr/bin/env bash
# Create .venv/ in the repository root and install dragon-campaign into it; no root needed, safe to run again.
#   bash install.sh          what campaigns use: Dragon, torch (CPU build), RDKit, tblite, Parsl, ProxyStore, mpi4py
#   bash install.sh --dev    also the tests, benchmarks' peers and docs (pytest, Colmena, Ray, Dask, EQSQL, MkDocs)
# PYTHON picks the interpreter (3.11+, default python3); TORCH_VERSION the torch wheel (default 2.13.0, CPU here;
# "none" keeps the interpreter's own, with VENV_ARGS=--system-site-packages); EXTRAS the extras (default
# ml,chem,bridge,mpi; without mpi on Polaris, where mpi4py is built against cray-mpich: docs/polaris.md).
# Nothing here uses apt-get: the Redis tests and benchmarks need a redis-server on PATH (apt-get install
# redis-server, conda install redis, or a module); .ci/run installs one. On Polaris see docs/polaris.md.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-ml,chem,bridge,mpi}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
case "${1:-}" in
    "") ;;
    --dev) EXTRAS="all" ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (try --dev or --help)" >&2; exit 2 ;;
esac
started=$SECONDS
step() { echo "install.sh [$(( SECONDS - started )) s] $*"; }

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "install.sh: $PYTHON is not Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    step "creating .venv/ with $("$PYTHON" --version)"
    # shellcheck disable=SC2086  # VENV_ARGS: options of venv, split on purpose
    "$PYTHON" -m venv ${VENV_ARGS:-} .venv
fi
step "upgrading pip"
.venv/bin/python -m pip install --quiet --upgrade pip
# torch 2.13.0 is the CPU build on machines without CUDA; a plain "torch" would pull several GB of CUDA wheels.
if [ "$TORCH_VERSION" != none ]; then
    step "installing torch $TORCH_VERSION (the largest download)"
    .venv/bin/python -m pip install --quiet "torch==$TORCH_VERSION"
fi
step "installing dragon-campaign[$EXTRAS]"
.venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
[ "$EXTRAS" = all ] && touch .venv/.dev-extras
.venv/bin/python -c "import dragon, dragon_campaign; print('dragon-campaign', dragon_campaign.__version__, 'installed in .venv/')"
command -v redis-server >/dev/null || step "note: no redis-server on PATH; the Redis tests and benchmarks need one (see above)"
step "done: bash run.sh runs the default campaign (or .venv/bin/dragon-campaign run ...), bash run-tests.sh the tests"
