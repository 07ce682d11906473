#!/bin/bash
# Run c3: where one data worker's time goes, official jitter order vs jitter after the crop,
# with `tools/benchmark.py data --profile` (per transform and collate, one process, one thread,
# before the workers start), then the loader's rate with 2 workers; four alternating rounds.
# Data: 2048 ImageNet-sized JPEGs (500x375 and similar, random colour blocks plus noise, quality
# 90) in the ImageNet layout at $1 (default /tmp/inet), made by
# benchmarks/h100-2026-11-23/g17_make_imagenet_sized_jpegs.py.
set -e
root=${1:-/tmp/inet}
out=$(dirname "$0")/c3_pipeline_profile
mkdir -p "$out"
for round in 1 2 3 4; do
  for cfg in beitv2_vitb_mim beitv2_vitb_mim_jitter_after_crop; do
    python tools/benchmark.py data --config configs/$cfg.py --data-root "$root" --device cpu \
      --workers 2 --batch 64 --steps 16 --profile --profile-images 512 \
      --json "$out/${cfg}_round$round.json" 2>&1 | grep -v -i warn
  done
done
