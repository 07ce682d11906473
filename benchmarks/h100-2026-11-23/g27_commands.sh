#!/bin/bash
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
U="python3 benchmarks/h100-2026-11-23/g24_upernet_without_mmcv_ops.py upernet --arch base --batch 2 --img-size 512 --precision bf16 --steps 20 --warmup 4 --compare mmpretrain"
date -u
echo "=== g27: eager, compat fixes 6 and 7, profile"
timeout 200 $U --profile --json $OUT/g27_upernet_bf16.json > $OUT/g27.log 2>&1; echo rc=$?
grep "^upernet\|Error" $OUT/g27.log | cut -c1-400
date -u
