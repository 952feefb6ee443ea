#!/usr/bin/env bash
# The GPU check, in one command, on a node with NVIDIA GPUs (a few minutes; see comparisons/gpu_check.py):
#   bash comparisons/gpu_check.sh              # every check on the GPUs; fails where there is none
#   bash comparisons/gpu_check.sh --allow-cpu  # the same checks on CPU workers (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " != *" --allow-cpu "* ]]; then
    nvidia-smi -L || { echo "gpu_check.sh: nvidia-smi finds no NVIDIA GPU (run with --allow-cpu to check on CPU workers)" >&2; exit 2; }
fi
export PATH="$PWD/.venv/bin:$PATH"
exec timeout --foreground 300 dragon comparisons/gpu_check.py "$@"
