#!/usr/bin/env bash
# The multi-node tier: tests/multinode/ under one Dragon runtime over two nodes of an emulated cluster on
# this machine (network, PID, UTS and mount namespaces, one sshd per node, Dragon's SSH launcher with the
# HSTA transport over TCP; tests/multinode/cluster/, from the project's shared multinode scripts).
# Needs root, openssh-server and iproute2 (.ci/run installs them). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
export MN_VENV="$PWD/.venv" MN_NODES="1 2"
export MN_DIR=${MN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/multinode.XXXXXX")}
CLUSTER="$PWD/tests/multinode/cluster"
OUTPUT="$MN_DIR/pytest-output.txt"
trap '"$CLUSTER"/mn_down.sh' EXIT

run_tier() {
    "$CLUSTER"/mn_up.sh
    "$CLUSTER"/mn_exec.sh fe "$CLUSTER"/run_fe.sh \
        dragon -w ssh -t hsta --hostlist n1,n2 "$MN_VENV/bin/pytest" -p no:cacheprovider tests/multinode "$@" 2>&1 | tee "$OUTPUT"
    return "${PIPESTATUS[0]}"
}

status=0
run_tier "$@" || status=$?
# On 2 cores, a transport agent sometimes misses the runtime's start-up handshake (dragonhpc 0.15:
# "Expected TAUp during startup"); no test ran then, so the tier starts once more on fresh nodes.
if [ "$status" -ne 0 ] && grep -q "during startup but received" "$OUTPUT"; then
    echo "The two-node runtime did not start; starting it again on fresh nodes"
    "$CLUSTER"/mn_down.sh
    status=0
    run_tier "$@" || status=$?
fi
exit "$status"
