# Sourced by the job scripts of pbs-scripts/: the launcher's command line, from the job's variables.
#   APP (default moldesign), CONFIG (a campaign file, optional), RUN_DIR (default runs/pbs-<job id>),
#   WORKERS_PER_NODE (optional: workers of the 'cpu' pool per node, e.g. 32 for one per physical core of
#   Polaris; by default the pool starts one per CPU Dragon reports, hardware threads included),
#   STOP_AFTER (optional: checkpoint and stop after this many seconds of campaign, before the walltime),
#   CAMPAIGN_ARGS (more launcher options, e.g. "--progress-interval 60").
# A RUN_DIR that holds a checkpoint is resumed (--resume: its configuration is the one it started with);
# one whose campaign finished (summary.json) is left alone. So every job of a chain (submit_chain.sh)
# runs the same script: the first starts the campaign, the next ones carry it on, spare ones do nothing.
# With CHECK_ONLY=1 the command is validated with --dry-run instead of run (tests/test_pbs_scripts.py).
RUN_DIR=${RUN_DIR:-runs/pbs-${PBS_JOBID%%.*}}
if [ -e "$RUN_DIR/checkpoint/campaign.pkl" ]; then
    CAMPAIGN=(launchers/run_campaign.py --app "${APP:-moldesign}" --resume "$RUN_DIR")
else
    CAMPAIGN=(launchers/run_campaign.py --app "${APP:-moldesign}" --run-dir "$RUN_DIR")
    if [ -n "${CONFIG:-}" ]; then CAMPAIGN+=(--config "$CONFIG"); fi
fi
if [ -n "${WORKERS_PER_NODE:-}" ]; then
    CAMPAIGN+=(--workers "$(( WORKERS_PER_NODE * $(sort -u "$PBS_NODEFILE" | wc -l) ))")
fi
if [ -n "${STOP_AFTER:-}" ]; then CAMPAIGN+=(--stop-after "$STOP_AFTER"); fi
# shellcheck disable=SC2206  # CAMPAIGN_ARGS is a list of options, split on spaces on purpose
CAMPAIGN+=(${CAMPAIGN_ARGS:-})

run_campaign() {
    if [ -e "$RUN_DIR/summary.json" ] && [ ! -e "$RUN_DIR/checkpoint/campaign.pkl" ]; then
        echo "The campaign in $RUN_DIR has finished (summary.json): nothing to do"
    elif [ "${CHECK_ONLY:-0}" = 1 ]; then
        echo "command: python ${CAMPAIGN[*]}"
        python "${CAMPAIGN[@]}" --dry-run
    else
        echo "started $(date -u): python ${CAMPAIGN[*]}"
        # the launcher starts dragon itself, as a child (signals reach the campaign; leftovers are removed)
        # 3: checkpointed (STOP_AFTER, or a signal to this job's launcher); the next job of the chain resumes it
        python "${CAMPAIGN[@]}" || { status=$?; [ "$status" -eq 3 ] || exit "$status"; echo "checkpointed to $RUN_DIR/checkpoint"; }
    fi
}
