#!/usr/bin/env bash
# Run a campaign longer than one job's walltime as a chain of PBS jobs, each resuming where the previous one
# ended (qsub -W depend=afterany: a job starts when the previous one ended, however): from its checkpoint,
# or from the run's journal if PBS killed it at the walltime before it could write one.
#
#   pbs-scripts/submit_chain.sh JOBS SCRIPT [qsub options]
#   e.g. APP=moldesign CONFIG=launchers/configs/moldesign-polaris.yaml WALLTIME=06:00:00 \
#        pbs-scripts/submit_chain.sh 4 pbs-scripts/many_nodes.pbs -A MyProject -q prod -l filesystems=home:eagle
#
# Every job runs in the same RUN_DIR (default runs/chain-<UTC time>) and checkpoints MARGIN_S seconds
# (default 600) before WALLTIME (default 01:00:00) through STOP_AFTER, leaving time for the runtime to
# start, the checkpoint to be written and Dragon to shut down; SIGTERM at the walltime checkpoints too.
# MARGIN_S=0: no STOP_AFTER; each job runs until PBS ends it, and the next resumes from the journal (it
# loses at most the last group commit, and what was running runs again).
# The job scripts take these variables with `#PBS -V`; jobs after the campaign finished do nothing.
set -euo pipefail
if [ $# -lt 2 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 JOBS SCRIPT [qsub options]   (JOBS: how many jobs in the chain)" >&2
    exit 2
fi
jobs=$1 script=$2
shift 2
[ -f "$script" ] || { echo "$script: no such job script" >&2; exit 2; }
WALLTIME=${WALLTIME:-01:00:00}
if ! [[ $WALLTIME =~ ^([0-9]+):([0-9]{2}):([0-9]{2})$ ]]; then
    echo "WALLTIME must read HH:MM:SS, got $WALLTIME" >&2
    exit 2
fi
seconds=$(( 10#${BASH_REMATCH[1]} * 3600 + 10#${BASH_REMATCH[2]} * 60 + 10#${BASH_REMATCH[3]} ))
export RUN_DIR=${RUN_DIR:-runs/chain-$(date -u +%Y%m%d-%H%M%S)}
if [ "${MARGIN_S:-600}" = 0 ]; then
    unset STOP_AFTER
    echo "chain of $jobs job(s) in $RUN_DIR; each runs to its walltime, the next resumes from the journal"
else
    export STOP_AFTER=$(( seconds - ${MARGIN_S:-600} ))
    if [ "$STOP_AFTER" -le 0 ]; then
        echo "WALLTIME ($WALLTIME) leaves no time for the campaign after MARGIN_S (${MARGIN_S:-600} s)" >&2
        exit 2
    fi
    echo "chain of $jobs job(s) in $RUN_DIR; each checkpoints after ${STOP_AFTER} s of campaign"
fi
previous=""
for (( i = 1; i <= jobs; i++ )); do
    depend=()
    if [ -n "$previous" ]; then depend=(-W "depend=afterany:$previous"); fi
    previous=$(qsub "${depend[@]}" -l "walltime=$WALLTIME" "$@" "$script")
    echo "job $i of $jobs: $previous"
done
