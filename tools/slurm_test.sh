#!/usr/bin/env bash
# Testing on a slurm cluster: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# Environment: GPUS, GPUS_PER_NODE, TASKS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PORT as for
# tools/slurm_train.sh.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
source "$(dirname "${BASH_SOURCE[0]}")/_python.sh"
require_config "$CONFIG"
require_local_checkpoint "$CHECKPOINT"
srun_exec "$PARTITION" "$JOB_NAME" test.py "$CONFIG" "$CHECKPOINT" --launcher slurm "$@"
