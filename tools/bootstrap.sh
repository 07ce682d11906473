#!/usr/bin/env bash
# Create .venv/ at the repository root and install the pinned OpenMMLab stack into it.
#
# Idempotent: when the stamp in .venv/ matches setup.cfg and this script, and the stack
# imports, it returns in seconds. Why each pin exists: the comments in setup.cfg, and
# beitv2_mm/engine/compat.py for what the pinned stack needs fixed at run time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
PY="$VENV/bin/python"
STAMP="$VENV/.beitv2_mm-bootstrap"

# The matching torch / torchvision pair (PyPI builds: they run on CPU-only machines too).
# Not 2.14: its headers need C++20 and mmcv 2.1.0's setup.py compiles with -std=c++17.
TORCH_PIN="torch==2.13.0"
TORCHVISION_PIN="torchvision==0.28.0"
MMCV_PIN="mmcv==2.1.0"

log() { printf '[bootstrap %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

want_stamp() {
  cat "$ROOT/setup.cfg" "$ROOT/tools/bootstrap.sh" | sha256sum | cut -d' ' -f1
}

# Full check after an install: the whole stack imports (mmseg/mmdet models need mmcv._ext).
stack_imports() {
  "$PY" - <<'PY' >/dev/null 2>&1
import torch, torchvision, mmcv, mmcv.ops, mmengine, mmpretrain, mmseg, mmdet, timm, open_clip
import mmseg.models, mmdet.models
assert '+cpu' not in torch.__version__
PY
}

# Quick check for the up-to-date path (seconds): pinned versions present, compiled ops load.
stack_present() {
  "$PY" - <<PY >/dev/null 2>&1
from importlib.metadata import version
pins = {'torch': '${TORCH_PIN#torch==}', 'torchvision': '${TORCHVISION_PIN#torchvision==}',
        'mmcv': '2.1.0', 'mmengine': '0.10.7', 'mmpretrain': '1.2.0',
        'mmsegmentation': '1.2.2', 'mmdet': '3.3.0'}
for name, want in pins.items():
    assert version(name) == want, (name, version(name), want)
version('open_clip_torch'); version('timm'); version('beitv2_mm')
import importlib.util
assert importlib.util.find_spec('mmcv._ext') is not None
PY
}

# The CUDA build of torch is ~5 GB installed, plus its wheels while pip unpacks them: check
# first, so a full disk is named here rather than as an OSError halfway through step 2.
NEED_FREE_GB="${BOOTSTRAP_NEED_FREE_GB:-10}"
check_free_space() {
  local dir free_gb
  for dir in "$VENV" "${TMPDIR:-/tmp}"; do
    while [[ ! -d "$dir" ]]; do dir="$(dirname "$dir")"; done  # the nearest existing folder
    free_gb=$(df -Pk "$dir" | awk 'NR==2 {print int($4 / 1048576)}')
    if (( free_gb < NEED_FREE_GB )); then
      log "ERROR: $free_gb GB free on the disk of $dir; installing torch needs about $NEED_FREE_GB GB"
      log "  there (the venv and pip's unpacked wheels). Free some space, or set VENV= / TMPDIR= to"
      log "  a disk with room (BOOTSTRAP_NEED_FREE_GB=N lowers the check if you know better)."
      exit 1
    fi
  done
}

if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$(want_stamp)" ]] && stack_present; then
  log ".venv is up to date ($("$PY" -c 'from importlib.metadata import version as v; print("torch", v("torch"), "| mmcv", v("mmcv"))'))"
  exit 0
fi

if [[ ! -x "$PY" ]] || ! "$PY" -c "import torch" 2>/dev/null; then
  check_free_space
fi
if [[ ! -x "$PY" ]]; then
  log "creating $VENV with $PYTHON ($("$PYTHON" --version))"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$PY" -m pip --disable-pip-version-check)

# setuptools < 82 keeps pkg_resources, which mmcv's setup.py (build time) and mmengine's
# `mmseg::` configs (run time) import; torch 2.14 asks for >= 77.0.3. One pin serves all.
SETUPTOOLS_PIN="setuptools>=77.0.3,<82"
log "step 1/5: pip, $SETUPTOOLS_PIN, wheel"
"${PIP[@]}" install -q --upgrade "pip<27" "$SETUPTOOLS_PIN" wheel ninja

log "step 2/5: $TORCH_PIN + $TORCHVISION_PIN (a matching pair; several GB on a fresh machine)"
# A CPU-only torch offered by a machine's pip configuration (find-links: '2.13.0+cpu' sorts
# above '2.13.0') breaks PyPI's torchvision ('operator torchvision::nms does not exist'), so
# this pair is installed from the package index alone, ignoring pip config and find-links.
if ! "$PY" -c "import torch, torchvision; assert torch.__version__ == '${TORCH_PIN#torch==}'" 2>/dev/null; then
  env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
    "${PIP[@]}" install -q "$TORCH_PIN" "$TORCHVISION_PIN" "$SETUPTOOLS_PIN"
fi
"$PY" -c "import torch, torchvision; print('  torch', torch.__version__, 'torchvision', torchvision.__version__)"

log "step 3/5: build dependencies of mmcv (mmengine, numpy, opencv)"
"${PIP[@]}" install -q "$SETUPTOOLS_PIN" "mmengine==0.10.7" "numpy>=1.26,<2" "opencv-python-headless<4.12" \
  "opencv-python<4.12" packaging addict pyyaml yapf

if "$PY" -c "import mmcv, mmcv.ops; from mmcv import _ext; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  log "step 4/5: $MMCV_PIN with compiled ops already installed"
else
  CUDA_OPS=0
  if command -v nvcc >/dev/null && "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    CUDA_OPS=1
  fi
  log "step 4/5: building $MMCV_PIN from source with $([[ $CUDA_OPS == 1 ]] && echo CUDA+CPU || echo CPU) ops."
  log "         This takes about 17 minutes on 2 cores the first time (pip caches the wheel"
  log "         afterwards). A line is printed every minute while it compiles."
  start=$(date +%s)
  ( while sleep 60; do log "  ... still compiling mmcv ($(( ($(date +%s) - start) / 60 )) min)"; done ) &
  heartbeat=$!
  trap 'kill $heartbeat 2>/dev/null || true' EXIT
  MMCV_WITH_OPS=1 FORCE_CUDA=$CUDA_OPS MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "${PIP[@]}" install -q --no-build-isolation "$MMCV_PIN"
  kill $heartbeat 2>/dev/null || true
  log "  mmcv installed in $(( ($(date +%s) - start) / 60 )) min"
fi

log "step 5/5: mmpretrain, mmsegmentation, mmdet, timm, open_clip and this package (editable)"
"${PIP[@]}" install -q --no-build-isolation -e "$ROOT[test]" "$SETUPTOOLS_PIN"

if ! stack_imports; then
  log "ERROR: the stack does not import after installation; run this to see why:"
  log "  $PY -c 'import mmseg.models, mmdet.models, mmpretrain, open_clip'"
  exit 1
fi
want_stamp > "$STAMP"
log "done: $("$PY" -c 'import torch, mmcv, mmpretrain, mmseg, mmdet; print("torch", torch.__version__, "| mmcv", mmcv.__version__, "| mmpretrain", mmpretrain.__version__, "| mmseg", mmseg.__version__, "| mmdet", mmdet.__version__)')"
