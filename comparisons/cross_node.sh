#!/usr/bin/env bash
# Cross-node reads (comparisons/cross_node.py) on the emulated two-node cluster (see two_nodes.sh).
# Arguments go to the script.
exec bash "$(dirname "$0")/two_nodes.sh" comparisons/cross_node.py "$@"
