#!/usr/bin/env bash
# The multi-node tier: tests/multinode/ under one Dragon runtime over two nodes of an emulated cluster on
# this machine (network, PID, UTS and mount namespaces, one sshd per node, Dragon's SSH launcher with the
# HSTA transport over TCP; tests/multinode/cluster/, from the project's shared multinode scripts).
# Needs root, openssh-server and iproute2 (.ci/run installs them). Arguments go to pytest.
#
# The verdict comes from pytest's JUnit report, not from the launcher's exit status: dragonhpc 0.15's
# multi-node launcher exits 0 whatever its head process returned. A tier that runs past MN_TIER_TIMEOUT
# seconds (default 1200; it takes about 8 minutes) is stopped: a hung runtime must not hang CI.
set -euo pipefail
cd "$(dirname "$0")"
export MN_VENV="$PWD/.venv" MN_NODES="1 2"
OWN_DIR=0
if [ -z "${MN_DIR:-}" ]; then MN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/multinode.XXXXXX"); OWN_DIR=1; fi
export MN_DIR
CLUSTER="$PWD/tests/multinode/cluster"
OUTPUT="$MN_DIR/pytest-output.txt"
REPORT="$MN_DIR/junit.xml"
status=1
# The cluster's folder (its nodes' files, pytest's output and report) goes once the cluster is down, unless the
# tier failed (kept for a look, and named) or the caller chose it (MN_DIR).
finish() {
    "$CLUSTER"/mn_down.sh
    if [ "$status" -eq 0 ] && [ "$OWN_DIR" -eq 1 ]; then rm -rf "$MN_DIR"; else echo "The tier's output and the cluster's files: $MN_DIR"; fi
}
trap finish EXIT

run_tier() {
    rm -f "$REPORT"
    "$CLUSTER"/mn_up.sh
    timeout --kill-after=30 "${MN_TIER_TIMEOUT:-1200}" "$CLUSTER"/mn_exec.sh fe "$CLUSTER"/run_fe.sh \
        dragon -w ssh -t hsta --hostlist n1,n2 "$MN_VENV/bin/pytest" -p no:cacheprovider --junitxml="$REPORT" \
        -o timeout_method=thread tests/multinode "$@" 2>&1 | tee "$OUTPUT" || true
    "$MN_VENV/bin/python" - "$REPORT" <<'PY'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

report = Path(sys.argv[1])
if not report.exists():
    print("The two-node runtime ended before pytest finished (no JUnit report)")
    sys.exit(75)
suite = ET.parse(report).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
tests, failures, errors = (int(suite.get(key, 0)) for key in ("tests", "failures", "errors"))
print(f"multi-node tier: {tests} tests, {failures} failed, {errors} errors")
sys.exit(0 if tests > 0 and failures == errors == 0 else 1)
PY
}

status=0
run_tier "$@" || status=$?
# On 2 cores, the runtime sometimes dies or hangs under the tests rather than because of them (dragonhpc
# 0.15: a transport agent missing the start-up handshake, "Expected TAUp during startup"; local services
# crashing with SIGSEGV; a killed worker never reported, with local services left unresponsive). pytest
# has then given no verdict (a test that hangs past pytest's timeout dumps every thread's stack and exits
# without one too), so the tier runs once more on fresh nodes.
if [ "$status" -eq 75 ]; then
    echo "Starting the tier again on fresh nodes"
    "$CLUSTER"/mn_down.sh
    status=0
    run_tier "$@" || status=$?
fi
exit "$status"
