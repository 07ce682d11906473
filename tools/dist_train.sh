#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG GPUS [train.py args...]
#
# One node:      tools/dist_train.sh configs/beitv2_vitb_mim.py 8
# Several nodes: on each node, with the same MASTER_ADDR / PORT,
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 tools/dist_train.sh CONFIG 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 PORT=29500 tools/dist_train.sh CONFIG 8
# Without GPUs, GPUS is the number of CPU processes and the gloo backend is used.
# On one node without PORT, a free port is picked (two jobs on one machine do not collide).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [tools/train.py args...]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
require_config "$CONFIG"
torchrun_exec train.py "$CONFIG" --launcher pytorch "${@:3}"
