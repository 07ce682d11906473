#!/usr/bin/env bash
# The GPU measurements issue #7 still waits for, in one call per phase (each run under a time
# limit, its JSON and log written to OUT, a one-line summary printed):
#   data  the MIM loader at batch 128 on 2048 ImageNet-sized JPEGs (made if missing, as g17):
#         the official order (configs/beitv2_vitb_mim.py, as g17/g21), the jitter after the crop,
#         and the device views with their preprocessor on the GPU (--preprocess --profile: the
#         GPU's share, never measured so far)
#   mim   the MIM step compiled against mmpretrain's stock step, with the kernel profile (as
#         g15), then the fast side alone under torch.compile's max-autotune (GEMM templates with
#         fused epilogues: the memory-bound half of the step is what 40% MFU needs)
#   det   the detector's backbone at 1024 px: GPU memory and step time of WindowedBEiTViT
#         (ViTDet's 14x14 windows, 4 global blocks; configs/_base_/det_mask_rcnn_beit_vitdet.py)
#         and of FastBEiTViT (global attention in every block, 4097 tokens, what the detector
#         used before 2026-11-24) against mmpretrain's BEiTViT, inside the UperNet step at
#         1024 px (mmdet's Mask R-CNN needs compiled mmcv ops this host lacks; mmseg imports
#         through g24's stand-in): each fast side alone, then each against the stock backbone
#         (one process holds both models), 2 images each (the least UperNet's BatchNorm trains
#         with; at 1024 px the UperNet head alone should take ~4x g24's 8.8 GB)
#   ft    the ImageNet fine-tuning step (configs/finetune_in1k.py: FastBEiTViT, fused AdamW)
#         against mmpretrain's own BEiT v2 fine-tuning config, eager and compiled (never
#         measured on a GPU; on the CPU 1.07x, c13)
#
#   bash benchmarks/gpu/run_pending.sh OUT [data|mim|det|ft|all]   # from the repository root
#
# The stack must be importable (on a host without network: benchmarks/gpu/fetch_wheels.sh, and
# WHEELS=DIR here installs those wheels into /tmp/site first and puts it on PYTHONPATH).
# Environment: ARCH (base), BATCH (128), PRECISION (bf16), IMAGES (/tmp/inet), STEPS (20) and
# WARMUP (4) of the mim and ft phases, DATA_STEPS (40) of the data phase, DET_STEPS (8) and DET_WARMUP
# (2) of the det phase, LIMIT (seconds per run, 150), AUTOTUNE_LIMIT (300), DET_LIMIT (130: the
# det phase's four runs fit one 10-minute device call), PY (python3), DET_IMG (1024), WHEELS.
set -uo pipefail
out="${1:?usage: run_pending.sh OUT [data|mim|det|ft|all]}"
phase="${2:-all}"
case "$phase" in data|mim|det|ft|all) ;; *) echo "phase must be data, mim, det, ft or all, got '$phase'" >&2; exit 2;; esac
ARCH="${ARCH:-base}" BATCH="${BATCH:-128}" PRECISION="${PRECISION:-bf16}"
IMAGES="${IMAGES:-/tmp/inet}" STEPS="${STEPS:-20}" WARMUP="${WARMUP:-4}"
LIMIT="${LIMIT:-150}" AUTOTUNE_LIMIT="${AUTOTUNE_LIMIT:-300}" DET_LIMIT="${DET_LIMIT:-130}"
DATA_STEPS="${DATA_STEPS:-40}" DET_STEPS="${DET_STEPS:-8}" DET_WARMUP="${DET_WARMUP:-2}"
PY="${PY:-python3}"
export PYTHONUNBUFFERED=1
mkdir -p "$out"
out="$(cd "$out" && pwd)"  # absolute: the runs start in the repository root
here="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$here"
if [[ -n "${WHEELS:-}" ]]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$here${PYTHONPATH:+:$PYTHONPATH}"
fi

TOOL="${TOOL:-tools/benchmark.py}"
run() {  # run NAME LIMIT ARGS...: $TOOL ARGS --json OUT/NAME.json, log OUT/NAME.log
    local name="$1" limit="$2"; shift 2
    echo "=== $name ($(date -u +%H:%M:%S) UTC): $TOOL $*"
    timeout "$limit" "$PY" "$TOOL" "$@" --json "$out/$name.json" >"$out/$name.log" 2>&1
    local rc=$?
    grep -E "^(mim|data|vqkd|tokenize|upernet|finetune)|loss on|Error|error:" "$out/$name.log" | cut -c1-400
    echo "rc=$rc"
}

echo "host: $(nproc) CPUs; $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")')"
if [[ "$phase" == data || "$phase" == all ]]; then
    [[ -f "$IMAGES/meta/train.txt" ]] ||
        "$PY" benchmarks/h100-2026-11-23/g17_make_imagenet_sized_jpegs.py "$IMAGES" || exit 1
    D=(data --data-root "$IMAGES" --batch "$BATCH" --steps "$DATA_STEPS")
    run data_official "$LIMIT" "${D[@]}" --config configs/beitv2_vitb_mim.py
    run data_jitter_after_crop "$LIMIT" "${D[@]}" --config configs/beitv2_vitb_mim_jitter_after_crop.py
    run data_device_views "$LIMIT" "${D[@]}" --config configs/beitv2_vitb_mim_device_views.py \
        --preprocess --profile
fi
if [[ "$phase" == mim || "$phase" == all ]]; then
    M=(mim --arch "$ARCH" --batch "$BATCH" --precision "$PRECISION" --steps "$STEPS" --warmup "$WARMUP")
    run mim_compile "$LIMIT" "${M[@]}" --compare mmpretrain --compile --profile
    run mim_max_autotune "$AUTOTUNE_LIMIT" "${M[@]}" --compile max-autotune --no-loss-check
fi
if [[ "$phase" == det || "$phase" == all ]]; then
    U=(upernet --arch "$ARCH" --img-size "${DET_IMG:-1024}" --precision "$PRECISION"
       --steps "$DET_STEPS" --warmup "$DET_WARMUP")
    TOOL=benchmarks/h100-2026-11-23/g24_upernet_without_mmcv_ops.py
    run det_backbone_windowed_b2 "$DET_LIMIT" "${U[@]}" --batch 2 --window-size 14
    run det_backbone_fast_b2 "$DET_LIMIT" "${U[@]}" --batch 2
    run det_backbone_windowed_compare_b2 "$DET_LIMIT" "${U[@]}" --batch 2 --window-size 14 --compare mmpretrain
    run det_backbone_compare_b2 "$DET_LIMIT" "${U[@]}" --batch 2 --compare mmpretrain
fi
if [[ "$phase" == ft || "$phase" == all ]]; then
    F=(finetune --arch "$ARCH" --batch "$BATCH" --precision "$PRECISION" --steps "$STEPS"
       --warmup "$WARMUP" --compare mmpretrain)
    run finetune_eager "$LIMIT" "${F[@]}" --profile
    run finetune_compile "$LIMIT" "${F[@]}" --compile --profile
fi
