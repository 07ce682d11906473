# Sourced by the launch scripts: pick the interpreter and make the checkout importable.
# PYTHON overrides; else the repository's .venv when present; else python on PATH.
_TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_REPO_ROOT="$(dirname "$_TOOLS_DIR")"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$_REPO_ROOT/.venv/bin/python" ]; then
        PYTHON="$_REPO_ROOT/.venv/bin/python"
    else
        PYTHON=python
    fi
fi
export PYTHONPATH="$_REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"

# usage_error MESSAGE: print it as the launch scripts' usage errors and exit 2.
usage_error() {
    echo "$(basename "$0"): error: $1" >&2
    exit 2
}

# require_config PATH: the config must exist before any process starts (else every rank
# reports it, followed by torchrun's / srun's failure report).
require_config() {
    [ -f "$1" ] || usage_error "config file not found: $1"
}

# require_count NAME VALUE: a positive integer (a process count), else a usage error naming it.
require_count() {
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || usage_error "$1 must be a positive integer, got '$2'"
}

# require_local_checkpoint PATH: a URL is refused before any process starts (nothing is
# downloaded at run time; tools/test.py would refuse it on every rank).
require_local_checkpoint() {
    if [[ "$1" == *://* ]]; then
        usage_error "CHECKPOINT is a URL: $1; nothing is downloaded at run time: download \
the file and pass its local path"
    fi
}

# torchrun_exec SCRIPT ARGS...: replace this shell by torchrun running tools/SCRIPT on GPUS
# processes per node. NNODES (1), NODE_RANK (0 on one node; needed for several: a forgotten
# one made every node rank 0), MASTER_ADDR (127.0.0.1 on one node; needed for several: the
# other nodes would wait on their own address), PORT: on one node without PORT a free port
# (two jobs on one machine do not collide), else 29500 (several nodes: the same port on every
# node).
torchrun_exec() {
    local script="$1"; shift
    local nnodes="${NNODES:-1}" port="${PORT:-}" node_rank="${NODE_RANK:-}"
    require_count GPUS "$GPUS"
    require_count NNODES "$nnodes"
    if [ "$nnodes" != 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
        usage_error "NNODES=$nnodes needs MASTER_ADDR (the address of the node with \
NODE_RANK=0), the same on every node"
    fi
    if [ "$nnodes" != 1 ] && [ -z "$node_rank" ]; then
        usage_error "NNODES=$nnodes needs NODE_RANK (0 on the node at MASTER_ADDR, 1 to \
$((nnodes - 1)) on the others), one per node"
    fi
    # else torchrun waits silently for nodes that never come (NODE_RANK=1 with NNODES unset)
    node_rank="${node_rank:-0}"
    if ! [[ "$node_rank" =~ ^(0|[1-9][0-9]*)$ ]] || [ "$node_rank" -ge "$nnodes" ]; then
        usage_error "NODE_RANK must be an integer from 0 to NNODES-1 ($((nnodes - 1))), got \
'$node_rank' with NNODES=$nnodes; set NNODES to the number of nodes"
    fi
    if [ -z "$port" ] && [ "$nnodes" = 1 ]; then
        port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
    fi
    exec "$PYTHON" -m torch.distributed.run \
        --nnodes="$nnodes" \
        --node_rank="$node_rank" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$GPUS" \
        --master_port="${port:-29500}" \
        "$_TOOLS_DIR/$script" "$@"
}

# srun_exec PARTITION JOB_NAME SCRIPT ARGS...: replace this shell by srun running tools/SCRIPT
# as GPUS tasks (8), GPUS_PER_NODE per node (8; a job smaller than a node asks for its GPUS
# only), CPUS_PER_TASK cores each (5), plus SRUN_ARGS. GPUS_PER_NODE=0: a CPU cluster (no
# --gres), TASKS_PER_NODE processes per node (default: all on one node).
srun_exec() {
    local partition="$1" job_name="$2" script="$3"; shift 3
    local tasks="${GPUS:-8}" gpus_per_node="${GPUS_PER_NODE:-8}" gres=()
    require_count GPUS "$tasks"
    [[ "$gpus_per_node" =~ ^[0-9]+$ ]] ||
        usage_error "GPUS_PER_NODE must be a number, got '$gpus_per_node'"
    local per_node="${TASKS_PER_NODE:-$gpus_per_node}"
    if [ "$gpus_per_node" = 0 ]; then
        per_node="${TASKS_PER_NODE:-$tasks}"
    fi
    require_count TASKS_PER_NODE "$per_node"
    if [ "$tasks" -lt "$per_node" ]; then
        per_node="$tasks"
    fi
    if [ "$gpus_per_node" != 0 ]; then
        gres=(--gres=gpu:"$per_node")
    fi
    # shellcheck disable=SC2086  # SRUN_ARGS is a list of words on purpose
    exec srun -p "$partition" \
        --job-name="$job_name" \
        ${gres[@]+"${gres[@]}"} \
        --ntasks="$tasks" \
        --ntasks-per-node="$per_node" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        "$PYTHON" -u "$_TOOLS_DIR/$script" "$@"
}
