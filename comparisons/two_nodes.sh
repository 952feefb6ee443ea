#!/usr/bin/env bash
# Runs a comparison script under one Dragon runtime over the multi-node tier's emulated two-node cluster:
# starts the cluster, runs the script, tears the cluster down. Needs root, openssh-server and iproute2,
# like bash run-multinode-tests.sh.  Usage: bash comparisons/two_nodes.sh comparisons/SCRIPT.py [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
export MN_VENV=${MN_VENV:-$PWD/.venv} MN_NODES="1 2"
OWN_DIR=0
if [ -z "${MN_DIR:-}" ]; then MN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/multinode.XXXXXX"); OWN_DIR=1; fi
export MN_DIR
CLUSTER="$PWD/tests/multinode/cluster"
trap '"$CLUSTER"/mn_down.sh; [ "$OWN_DIR" -eq 0 ] || rm -rf "$MN_DIR"' EXIT  # the script writes its results elsewhere (--output)
"$CLUSTER"/mn_up.sh
timeout --kill-after=30 "${TWO_NODES_TIMEOUT:-900}" "$CLUSTER"/mn_exec.sh fe "$CLUSTER"/run_fe.sh \
    dragon -w ssh -t hsta --hostlist n1,n2 "$MN_VENV/bin/python" "$@"
