#!/bin/bash
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 .whl/mk_inet_par.py /tmp/inet  # the script is g17_make_imagenet_sized_jpegs.py here
date -u
for cfg in configs/beitv2_vitb_mim.py benchmarks/h100-2026-11-23/g23_nojitter_cfg.py; do
  echo "=== g23 $cfg, 10 workers"
  timeout 100 python3 tools/benchmark.py data --config $cfg --data-root /tmp/inet --batch 128 --steps 48 --json $OUT/g23_$(basename $cfg .py).json 2>&1 | grep "^data" | cut -c1-200
done
date -u
