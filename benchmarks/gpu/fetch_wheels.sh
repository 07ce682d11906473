#!/usr/bin/env bash
# Download the pure-Python wheels this project needs on a GPU host that has its own PyTorch
# (CUDA build, Python 3.12, x86_64) but no network: the OpenMMLab stack without compiled mmcv
# ops (mmcv-lite: enough for the mim, vqkd, tokenize and data benchmarks; UperNet needs
# benchmarks/h100-2026-11-23/g24_upernet_without_mmcv_ops.py) and what such an image usually
# lacks (the wheel folder of runs g1-g27 was not kept: this list was rebuilt from their logs).
#
#   bash benchmarks/gpu/fetch_wheels.sh [DIR]        # here, with network (default DIR: .whl)
#   # there, in the repository root:
#   python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site DIR/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
#
# Everything else (torch, torchvision: the device-views config decodes with its nvJPEG, numpy,
# pillow, opencv-python-headless, scipy, matplotlib, timm, rich, pyyaml, regex, einops) is taken
# from the host: check `python3 -m pip list` there first. benchmarks/gpu/run_pending.sh installs
# the wheels itself when given WHEELS=DIR.
set -euo pipefail
dir="${1:-.whl}"
PY_VERSION="${PY_VERSION:-3.12}"
mkdir -p "$dir"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$dir" \
    mmengine==0.10.7 mmcv-lite==2.1.0 mmpretrain==1.2.0 mmsegmentation==1.2.2 \
    'open_clip_torch>=2.24,<4' addict yapf platformdirs termcolor ftfy wcwidth mat4py
ls -1 "$dir"
