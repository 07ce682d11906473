#!/usr/bin/env bash
# Training on a slurm cluster: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]
#
#   GPUS=16 GPUS_PER_NODE=8 tools/slurm_train.sh dev beitv2 configs/beitv2_vitb_mim.py work_dirs/beitv2
#
# Environment: GPUS (total tasks, default 8), GPUS_PER_NODE (default 8; 0 on a CPU cluster, with
# TASKS_PER_NODE), CPUS_PER_TASK (default 5), SRUN_ARGS (extra srun arguments, e.g.
# "--quotatype=auto"), PORT (the rendezvous port; default 29500 + job id mod 2000, so that jobs
# sharing a node differ).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [tools/train.py args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
WORK_DIR_ARGS=()
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
    WORK_DIR_ARGS=(--work-dir "$1")
    shift
fi
source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
require_config "$CONFIG"
srun_exec "$PARTITION" "$JOB_NAME" train.py "$CONFIG" "${WORK_DIR_ARGS[@]}" --launcher slurm "$@"
