#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT as for tools/dist_train.sh (one node without
# PORT: a free port).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py args...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
require_config "$CONFIG"
require_local_checkpoint "$CHECKPOINT"
[ -f "$CHECKPOINT" ] ||
    usage_error "checkpoint not found: $CHECKPOINT (usage: $0 CONFIG CHECKPOINT GPUS)"
torchrun_exec test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
