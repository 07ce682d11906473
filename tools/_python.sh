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

# torchrun_exec SCRIPT ARGS...: replace this shell by torchrun running tools/SCRIPT on GPUS
# processes per node. NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT: on one node
# without PORT a free port (two jobs on one machine do not collide), else 29500 (several
# nodes: the same port on every node).
torchrun_exec() {
    local script="$1"; shift
    local nnodes="${NNODES:-1}" port="${PORT:-}"
    if [ -z "$port" ] && [ "$nnodes" = 1 ]; then
        port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
    fi
    exec "$PYTHON" -m torch.distributed.run \
        --nnodes="$nnodes" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$GPUS" \
        --master_port="${port:-29500}" \
        "$_TOOLS_DIR/$script" "$@"
}

# srun_exec PARTITION JOB_NAME SCRIPT ARGS...: replace this shell by srun running tools/SCRIPT
# as GPUS tasks (8), GPUS_PER_NODE per node (8), CPUS_PER_TASK cores each (5), plus SRUN_ARGS.
srun_exec() {
    local partition="$1" job_name="$2" script="$3"; shift 3
    local gpus_per_node="${GPUS_PER_NODE:-8}"
    # shellcheck disable=SC2086  # SRUN_ARGS is a list of words on purpose
    exec srun -p "$partition" \
        --job-name="$job_name" \
        --gres=gpu:"$gpus_per_node" \
        --ntasks="${GPUS:-8}" \
        --ntasks-per-node="$gpus_per_node" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        "$PYTHON" -u "$_TOOLS_DIR/$script" "$@"
}
