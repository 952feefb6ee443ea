# Sourced by the job scripts of pbs-scripts/: the dragon-campaign command line, from the job's variables.
#   CAMPAIGN (your campaign: FILE.py[:FUNCTION] or MODULE:FUNCTION, relative to the submission folder), else
#   APP (an installed application, default moldesign); CONFIG (a configuration file, optional),
#   SET (--set overrides, space-separated KEY=VALUE), RUN_DIR (default runs/pbs-<job id>),
#   WORKERS_PER_NODE (optional: workers of the 'cpu' pool per node, e.g. 32 for one per physical core of
#   Polaris; by default the pool starts one per CPU Dragon reports, hardware threads included),
#   STOP_AFTER (optional: checkpoint and stop after this many seconds of campaign, before the walltime),
#   CAMPAIGN_ARGS (more launcher options, e.g. "--progress-interval 60").
# A RUN_DIR that holds a checkpoint is resumed (--resume: its configuration is the one it started with);
# one whose campaign finished (summary.json) is left alone. So every job of a chain (submit_chain.sh)
# runs the same script: the first starts the campaign, the next ones carry it on, spare ones do nothing.
# With CHECK_ONLY=1 the command is validated with --dry-run instead of run (tests/test_pbs_scripts.py).
RUN_DIR=${RUN_DIR:-runs/pbs-${PBS_JOBID%%.*}}
if [[ ${CAMPAIGN:-} == *.py* && $CAMPAIGN != /* ]]; then CAMPAIGN="$PBS_O_WORKDIR/$CAMPAIGN"; fi  # where qsub ran
if [ -e "$RUN_DIR/checkpoint/campaign.pkl" ]; then
    COMMAND_LINE=(dragon-campaign run --resume "$RUN_DIR")   # the run's config.yaml names its campaign or app
else
    if [ -n "${CAMPAIGN:-}" ]; then
        COMMAND_LINE=(dragon-campaign run "$CAMPAIGN" --run-dir "$RUN_DIR")
    else
        COMMAND_LINE=(dragon-campaign run --app "${APP:-moldesign}" --run-dir "$RUN_DIR")
    fi
    if [ -n "${CONFIG:-}" ]; then COMMAND_LINE+=(--config "$CONFIG"); fi
    for setting in ${SET:-}; do COMMAND_LINE+=(--set "$setting"); done
fi
if [ -n "${WORKERS_PER_NODE:-}" ]; then
    COMMAND_LINE+=(--workers "$(( WORKERS_PER_NODE * $(sort -u "$PBS_NODEFILE" | wc -l) ))")
fi
if [ -n "${STOP_AFTER:-}" ]; then COMMAND_LINE+=(--stop-after "$STOP_AFTER"); fi
# shellcheck disable=SC2206  # CAMPAIGN_ARGS is a list of options, split on spaces on purpose
COMMAND_LINE+=(${CAMPAIGN_ARGS:-})

run_campaign() {
    if [ -e "$RUN_DIR/summary.json" ] && [ ! -e "$RUN_DIR/checkpoint/campaign.pkl" ]; then
        echo "The campaign in $RUN_DIR has finished (summary.json): nothing to do"
    elif [ "${CHECK_ONLY:-0}" = 1 ]; then
        echo "command: ${COMMAND_LINE[*]}"
        "${COMMAND_LINE[@]}" --dry-run
    else
        echo "started $(date -u): ${COMMAND_LINE[*]}"
        # the command starts dragon itself, as a child (signals reach the campaign; leftovers are removed)
        # 3: checkpointed (STOP_AFTER, or a signal to this job's launcher); the next job of the chain resumes it
        "${COMMAND_LINE[@]}" || { status=$?; [ "$status" -eq 3 ] || exit "$status"; echo "checkpointed to $RUN_DIR/checkpoint"; }
    fi
}
