#!/usr/bin/env bash
# Run the whole test suite under one real Dragon runtime (dragon returns pytest's exit code); installs the
# test, benchmark and docs extras first if .venv/ has only the campaign's (bash install.sh --dev).
# Arguments go to pytest, e.g. bash run-tests.sh -k priority -x
set -euo pipefail
cd "$(dirname "$0")"
[ -e .venv/.dev-extras ] || bash install.sh --dev
export PATH="$PWD/.venv/bin:$PATH"   # dragon finds dragon-config and the workers find Python here
exec dragon "$PWD/.venv/bin/pytest" -p no:cacheprovider "$@"
