#!/usr/bin/env bash
# Run a campaign on this node under the Dragon runtime; arguments go to launchers/run_campaign.py
# (try: bash run.sh --help). Without arguments it runs the default campaign.
# The launcher checks the configuration, then starts `dragon` as its child (not with exec): Ctrl-C then
# reaches the campaign, which checkpoints, instead of Dragon's launcher, and `setsid bash run.sh` works.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PWD/.venv/bin:$PATH"   # dragon finds dragon-config and the workers find Python here
export DRAGON_CAMPAIGN_COMMAND="bash run.sh"   # the command the resume hint names
exec python launchers/run_campaign.py "$@"
