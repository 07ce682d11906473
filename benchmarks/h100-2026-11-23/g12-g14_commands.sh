#!/bin/bash
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
B="python3 tools/benchmark.py mim --arch base --batch 128 --precision bf16 --steps 20 --warmup 4 --compare mmpretrain"
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== g12: eager"
timeout 170 $B --json $OUT/g12_mim_bf16.json > $OUT/g12.log 2>&1; echo rc=$?
grep "^mim\|loss on\|Error" $OUT/g12.log | cut -c1-300
date -u
echo "=== g13: compile + profile"
timeout 230 $B --compile --profile --json $OUT/g13_mim_bf16_compile.json > $OUT/g13.log 2>&1; echo rc=$?
grep "^mim\|loss on\|Error" $OUT/g13.log | cut -c1-300
date -u
echo "=== g14: sync / attention experiment"
timeout 200 python3 benchmarks/h100-2026-11-23/g14_sync_and_attention.py $OUT/g14_sync_and_attention.json > $OUT/g14.log 2>&1; echo rc=$?
grep "^\[" $OUT/g14.log | cut -c1-400
tail -3 $OUT/g14.log | cut -c1-300
date -u
