"""Run c6 (one-off): the host's time per batch in DeviceMIMDataPreprocessor, before (20ed23c)
and after the batched jitter and resize, side by side.

On a GPU the preprocessor's kernels run asynchronously; what the training process's thread
spends is the time to issue them (Python, dispatch, launch), between two steps. On the CPU
that time is hidden inside the compute, so here the images are tiny (32x24 JPEGs, 16 px
views): the arithmetic is negligible and the forward's time is close to the per-operation
overhead of issuing the batch's operations. It is a proxy: a CUDA launch costs more than a CPU
dispatch, so on a GPU both sides take longer; the GPU itself is not measured (none available).
Then the time the host spends on PIL's resize coefficients for a batch of ImageNet-sized crops,
computed and cached.

    python benchmarks/cpu-2026-11-23/c6_device_views_host_time.py [BATCH] [ROUNDS]
The old preprocessor is the committed file of 20ed23c, read with `git show` (old_device_views.py).
"""
import json
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

import beitv2_mm  # noqa: F401
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from old_device_views import register_old_preprocessor  # beside this script

batch_size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
torch.set_num_threads(1)
init_default_scope('mmpretrain')

old_name = register_old_preprocessor()  # 20ed23c's, from git

views = dict(type='DrawMIMViews', transforms=[
    dict(type='PILColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TwoViewRandomResizedCrop', size=16, second_size=16, scale=(0.2, 1.0),
         interpolation='bicubic', second_interpolation='bicubic')])
pipeline = Compose([dict(type='LoadEncodedImage'), views,
                    dict(type='PackInputs', meta_keys=('sample_idx', 'img_path', 'ori_shape',
                                                       'img_shape', 'mim_views'))])
norm = dict(mean=[127.5] * 3, std=[127.5] * 3, second_mean=[127.5] * 3, second_std=[127.5] * 3)
sides = {'before (20ed23c)': MODELS.build(dict(type=old_name, **norm)),
         'after': MODELS.build(dict(type='DeviceMIMDataPreprocessor', **norm))}

rng = np.random.default_rng(0)
with tempfile.TemporaryDirectory() as folder:
    samples = []
    for i in range(batch_size):
        path = f'{folder}/{i}.JPEG'
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8)).save(path, quality=90)
        np.random.seed(i)
        samples.append(pipeline(dict(img_path=path, sample_idx=i)))
batch = pseudo_collate(samples)

seconds = {name: [] for name in sides}
for pre in sides.values():
    pre(batch, training=True)
for _ in range(rounds):
    for name, pre in sides.items():
        start = time.perf_counter()
        pre(batch, training=True)
        seconds[name].append(time.perf_counter() - start)
medians = {name: float(np.median(s)) for name, s in seconds.items()}
for name, s in seconds.items():
    print(f'{name}: {batch_size} tiny images, median {medians[name] * 1000:.1f} ms per batch '
          f'({medians[name] / batch_size * 1e6:.0f} us per image; rounds '
          f'{[round(x * 1000, 1) for x in s]})')
a, b = seconds['before (20ed23c)'], seconds['after']
print(f"before / after: {medians['before (20ed23c)'] / medians['after']:.2f}x (per round "
      f"{[round(x / y, 2) for x, y in zip(a, b)]})")

# the host's share of the new resize that the tiny images do not show: PIL's coefficients for
# ImageNet-sized crops (two passes per image, 224 px), computed cold and from the cache
from beitv2_mm.datasets import device_views  # noqa: E402

plans = [(int(rng.integers(100, 500)), 224, 'bicubic', bool(i % 2)) for i in range(batch_size)]
plans += [(int(rng.integers(100, 375)), 224, 'bicubic', False) for _ in range(batch_size)]
entries = {}
for state in ('cold', 'warm'):
    if state == 'cold':
        device_views._matrix_entries.cache_clear()
    start = time.perf_counter()
    for plan in plans:
        device_views._matrix_entries(*plan)
    entries[state] = time.perf_counter() - start
print(f"PIL's coefficients for {len(plans)} ImageNet-sized passes: cold "
      f"{entries['cold'] * 1000:.1f} ms, cached {entries['warm'] * 1000:.2f} ms")
print(json.dumps(dict(batch=batch_size, rounds=rounds, threads=1, torch=torch.__version__,
                      seconds=seconds, median_s=medians, coefficients_s=entries)))
