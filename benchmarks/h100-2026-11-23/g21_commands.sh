#!/bin/bash
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 .whl/mk_inet_par.py /tmp/inet  # the script is g17_make_imagenet_sized_jpegs.py here
lscpu | grep -i "model name\|^CPU(s)"
D="tools/benchmark.py data --config configs/beitv2_vitb_mim.py --data-root /tmp/inet --batch 128"
for w in 10 15; do
  echo "=== g21 workers $w (cv2 threads 0, as the runner)"
  timeout 100 python3 $D --workers $w --steps 48 --json $OUT/g21_data_w$w.json 2>&1 | grep "^data" | cut -c1-200
done
echo "=== g21 workers 10, without set_multi_processing (the g17 setting)"
timeout 100 python3 -c "
import sys, runpy
import mmengine.utils.dl_utils as d
d.set_multi_processing = lambda **k: None
sys.argv = ['tools/benchmark.py'] + '$D --workers 10 --steps 48 --json $OUT/g21_data_w10_cv2threads.json'.split()[1:]
runpy.run_path('tools/benchmark.py', run_name='__main__')" 2>&1 | grep "^data" | cut -c1-200
echo "=== per-transform cost, one process"
python3 .whl/pipe_prof.py configs/beitv2_vitb_mim.py 2>&1 | tail -9
