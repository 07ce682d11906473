#!/bin/bash
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
U="python3 benchmarks/h100-2026-11-23/g24_upernet_without_mmcv_ops.py upernet --arch base --batch 2 --img-size 512 --precision bf16 --steps 20 --warmup 4 --compare mmpretrain"
date -u
echo "=== g24: eager"
timeout 150 $U --json $OUT/g24_upernet_bf16.json > $OUT/g24.log 2>&1; echo rc=$?
grep "^upernet\|Error" $OUT/g24.log | cut -c1-300
echo "=== g25: channels_last"
timeout 150 $U --channels-last --json $OUT/g25_upernet_bf16_channels_last.json > $OUT/g25.log 2>&1; echo rc=$?
grep "^upernet\|Error" $OUT/g25.log | cut -c1-300
echo "=== g26: compile + channels_last + profile"
timeout 200 $U --channels-last --compile --profile --json $OUT/g26_upernet_bf16_compile_cl.json > $OUT/g26.log 2>&1; echo rc=$?
grep "^upernet\|Error" $OUT/g26.log | cut -c1-400
tail -3 $OUT/g26.log | cut -c1-300
date -u
