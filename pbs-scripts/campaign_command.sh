# Sourced by the job scripts of pbs-scripts/: the launcher's command line, from the job's variables.
#   APP (default moldesign), CONFIG (a campaign file, optional), RUN_DIR (default runs/pbs-<job id>),
#   WORKERS_PER_NODE (optional: workers of the 'cpu' pool per node, e.g. 32 for one per physical core of
#   Polaris; by default the pool starts one per CPU Dragon reports, hardware threads included),
#   CAMPAIGN_ARGS (more launcher options, e.g. "--progress-interval 60").
# With CHECK_ONLY=1 the command is validated with --dry-run instead of run (tests/test_pbs_scripts.py).
CAMPAIGN=(launchers/run_campaign.py --app "${APP:-moldesign}" --run-dir "${RUN_DIR:-runs/pbs-${PBS_JOBID%%.*}}")
if [ -n "${CONFIG:-}" ]; then CAMPAIGN+=(--config "$CONFIG"); fi
if [ -n "${WORKERS_PER_NODE:-}" ]; then
    CAMPAIGN+=(--workers "$(( WORKERS_PER_NODE * $(sort -u "$PBS_NODEFILE" | wc -l) ))")
fi
# shellcheck disable=SC2206  # CAMPAIGN_ARGS is a list of options, split on spaces on purpose
CAMPAIGN+=(${CAMPAIGN_ARGS:-})

run_campaign() {
    if [ "${CHECK_ONLY:-0}" = 1 ]; then
        python "${CAMPAIGN[@]}" --dry-run
    else
        echo "started $(date -u): dragon ${CAMPAIGN[*]}"
        dragon "${CAMPAIGN[@]}"
    fi
}
