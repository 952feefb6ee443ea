#!/usr/bin/env bash
# Run a campaign on this node under the Dragon runtime: `dragon-campaign run` from the repository's .venv/
# (try: bash run.sh --help). Without arguments it runs the default campaign; a first argument FILE.py runs
# your own (bash run.sh my_campaign.py --workers 4).
# The command checks the configuration, then starts `dragon` as its child (not with exec): Ctrl-C then
# reaches the campaign, which checkpoints, instead of Dragon's launcher, and `setsid bash run.sh` works.
set -euo pipefail
export DRAGON_CAMPAIGN_COMMAND="bash run.sh"   # the command the resume hint names
exec "$(dirname "$0")/.venv/bin/dragon-campaign" run "$@"   # from here: FILE.py and run directories are relative to it
