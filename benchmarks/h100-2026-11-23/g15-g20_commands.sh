#!/bin/bash
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
B="python3 tools/benchmark.py"
M="$B mim --arch base --batch 128 --precision bf16 --steps 20 --warmup 4"
(python3 .whl/mk_inet_par.py /tmp/inet > $OUT/mk_inet.log 2>&1 &)
date -u
echo "=== g15: mim compile + profile"
timeout 150 $M --compare mmpretrain --compile --profile --json $OUT/g15_mim_bf16_compile.json > $OUT/g15.log 2>&1; echo rc=$?
grep "^mim\|loss on\|Error" $OUT/g15.log | cut -c1-420
date -u
echo "=== g16: mim eager"
timeout 110 $M --compare mmpretrain --json $OUT/g16_mim_bf16.json > $OUT/g16.log 2>&1; echo rc=$?
grep "^mim\|loss on\|Error" $OUT/g16.log | cut -c1-300
date -u
echo "=== g17: data pipeline"
cat $OUT/mk_inet.log
timeout 90 $B data --config configs/beitv2_vitb_mim.py --data-root /tmp/inet --batch 128 --steps 40 --json $OUT/g17_data.json > $OUT/g17.log 2>&1; echo rc=$?
grep "^data\|Error\|warming" $OUT/g17.log | cut -c1-300
date -u
echo "=== g18: mim reduce-overhead"
timeout 150 $M --compile reduce-overhead --no-loss-check --json $OUT/g18_mim_bf16_cudagraphs.json > $OUT/g18.log 2>&1; echo rc=$?
grep "^mim\|Error" $OUT/g18.log | cut -c1-300
date -u
echo "=== g19: vqkd, tokenize"
timeout 80 $B vqkd --arch base --batch 128 --precision bf16 --steps 20 --warmup 3 --compare explicit --compile --json $OUT/g19_vqkd_bf16_compile.json > $OUT/g19.log 2>&1; echo rc=$?
grep "^vqkd\|Error" $OUT/g19.log | cut -c1-300
timeout 60 $B tokenize --arch base --batch 256 --precision bf16 --steps 20 --warmup 3 --compare mmpretrain --compile --json $OUT/g20_tokenize_bf16_compile.json > $OUT/g20.log 2>&1; echo rc=$?
grep "^tokenize\|Error" $OUT/g20.log | cut -c1-300
date -u
