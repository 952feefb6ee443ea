#!/usr/bin/env bash
# Run a campaign on this node under the Dragon runtime; arguments go to launchers/run_campaign.py
# (try: bash run.sh --help). Without arguments it runs the default campaign.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PWD/.venv/bin:$PATH"   # dragon finds dragon-config and the workers find Python here
exec dragon launchers/run_campaign.py "$@"
