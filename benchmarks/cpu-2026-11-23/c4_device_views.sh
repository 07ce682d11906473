#!/bin/bash
# Run c4: the data workers' share of the MIM views made on the device
# (configs/beitv2_vitb_mim_device_views.py) against the official order and the jitter after the
# crop: `tools/benchmark.py data --profile` (per transform and collate, one process, one thread,
# before the workers start), then the loader's rate with 2 workers (the workers alone: the
# device part is not run); three alternating rounds. Then one `--preprocess` run of the device
# config: the workers plus DeviceMIMDataPreprocessor, here on the CPU (on a GPU run it is the
# GPU's work; not measured here: no GPU was available).
# Data: 2048 ImageNet-sized JPEGs (500x375 and similar, quality 90) in the ImageNet layout at $1
# (default /tmp/inet), made by benchmarks/h100-2026-11-23/g17_make_imagenet_sized_jpegs.py.
set -e
root=${1:-/tmp/inet}
out=$(dirname "$0")/c4_device_views
mkdir -p "$out"
for round in 1 2 3; do
  for cfg in beitv2_vitb_mim beitv2_vitb_mim_jitter_after_crop beitv2_vitb_mim_device_views; do
    python tools/benchmark.py data --config configs/$cfg.py --data-root "$root" --device cpu \
      --workers 2 --batch 64 --steps 16 --profile --profile-images 512 \
      --json "$out/${cfg}_round$round.json" 2>&1 | grep -v -i warn
  done
done
OMP_NUM_THREADS=2 python tools/benchmark.py data --config configs/beitv2_vitb_mim_device_views.py \
  --data-root "$root" --device cpu --workers 2 --batch 64 --steps 8 --preprocess \
  --json "$out/beitv2_vitb_mim_device_views_preprocess_cpu.json" 2>&1 | grep -v -i warn
