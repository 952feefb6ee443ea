# Sourced by the job scripts of pbs-scripts/: the dragon-campaign command line, from the job's variables.
#   CAMPAIGN (your campaign: FILE.py[:FUNCTION] or MODULE:FUNCTION, relative to the submission folder), else
#   APP (an installed application, default moldesign); CONFIG (a configuration file, optional),
#   SET (--set overrides, space-separated KEY=VALUE), RUN_DIR (default runs/pbs-<job id>),
#   WORKERS_PER_NODE (optional: workers of the 'cpu' pool per node, e.g. 32 for one per physical core of
#   Polaris; by default the pool starts one per CPU Dragon reports, hardware threads included),
#   STOP_AFTER (optional: checkpoint and stop after this many seconds of campaign, before the walltime),
#   CAMPAIGN_ARGS (more launcher options, e.g. "--progress-interval 60").
# A RUN_DIR whose campaign can go on is resumed (--resume: its configuration is the one it started with),
# whatever ended the job before: a checkpoint, or its journal after SIGKILL at the walltime or a lost node
# (dragon-campaign status RUN_DIR says which); one whose campaign finished is left alone. So every job of
# a chain (submit_chain.sh) runs the same script: the first starts the campaign, the next ones carry it on,
# spare ones do nothing. With CHECK_ONLY=1 the command is validated with --dry-run instead of run
# (tests/test_pbs_scripts.py).
RUN_DIR=${RUN_DIR:-runs/pbs-${PBS_JOBID%%.*}}
if [[ ${CAMPAIGN:-} == *.py* && $CAMPAIGN != /* ]]; then CAMPAIGN="$PBS_O_WORKDIR/$CAMPAIGN"; fi  # where qsub ran
# dragon-campaign status: 0 finished, 3 it can resume, 1 it cannot (still running), 2 no run directory
run_state() { if [ -d "$RUN_DIR" ]; then dragon-campaign status "$RUN_DIR" >/dev/null 2>&1; echo $?; else echo 2; fi; }
state=$(run_state)
for _ in 1 2 3; do  # the previous job ran on another node and was killed: its journal's heartbeat goes stale in 20 s
    if [ "$state" != 1 ] || [ ! -e "$RUN_DIR/journal.sqlite" ]; then break; fi
    sleep 10
    state=$(run_state)
done
finished=0
if [ "$state" = 0 ] || { [ ! -e "$RUN_DIR/journal.sqlite" ] && [ -e "$RUN_DIR/summary.json" ] && [ "$state" != 3 ]; }; then
    finished=1
fi
if [ "$state" = 3 ]; then
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
    if [ "$finished" = 1 ]; then
        echo "The campaign in $RUN_DIR has finished: nothing to do"
    elif [ "${CHECK_ONLY:-0}" = 1 ]; then
        echo "command: ${COMMAND_LINE[*]}"
        "${COMMAND_LINE[@]}" --dry-run
    else
        echo "started $(date -u): ${COMMAND_LINE[*]}"
        # the command starts dragon itself, as a child (signals reach the campaign; leftovers are removed)
        # 3: checkpointed (STOP_AFTER, or a signal to this job's launcher); the next job of the chain resumes it,
        # as it does after a SIGKILL (its journal)
        "${COMMAND_LINE[@]}" || { status=$?; [ "$status" -eq 3 ] || exit "$status"; echo "checkpointed to $RUN_DIR/checkpoint"; }
    fi
}
