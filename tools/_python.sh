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
