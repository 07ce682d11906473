"""Run c2 (one-off): the colour jitter after the crop (DrawColorJitter + ApplyColorJitter,
configs/beitv2_vitb_mim_jitter_after_crop.py) against the official order (PILColorJitter on
the full image, configs/beitv2_vitb_mim.py). One process, one thread, alternating rounds.

1. Contrast level: estimate_contrast_mean against PIL's level computed after the operations
   that precede the contrast, 1000 random draws.
2. Pixels: both pipelines with the same seed draw the same jitter, flip and crop; the student
   views are compared (mean |difference|, share of differing values, max |difference|),
   200 draws.
   1 and 2 on each data set given: the synthetic JPEGs (random 16 px colour blocks plus noise:
   hard saturated edges, a worst case) and real photographs.
3. ms per image of the whole MIM train pipeline plus default_collate per 64 images (what one
   data-loader worker spends), and of the jitter steps alone.

    python benchmarks/cpu-2026-11-23/c2_jitter_after_crop.py IMAGENET_ROOT PHOTO_ROOT
Both roots in the ImageNet layout (train/<class>/*.JPEG). IMAGENET_ROOT: 2048 ImageNet-sized
JPEGs made by benchmarks/h100-2026-11-23/g17_make_imagenet_sized_jpegs.py (also timed).
PHOTO_ROOT: 9 photographs resized to a 500 px long side (bicubic) and saved as JPEGs (quality
90): astronaut, chelsea, coffee, hubble_deep_field, ihc, motorcycle_left, retina, rocket from the
skimage/data folder of the scikit-image 0.26 wheel (`pip download --no-deps scikit-image`,
unzipped), and matplotlib's sample_data/grace_hopper.jpg; each drawn from many times.
"""
import glob
import statistics
import sys
import time
from collections import defaultdict

import cv2
import numpy as np
import torch

import beitv2_mm  # noqa: F401
from beitv2_mm.datasets.mim_transforms import (estimate_contrast_mean, pil_color_jitter,
                                               pil_contrast_mean)
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmpretrain.registry import TRANSFORMS

init_default_scope('mmpretrain')
cv2.setNumThreads(0)
torch.set_num_threads(1)
OFFICIAL, AFTER = 'configs/beitv2_vitb_mim.py', 'configs/beitv2_vitb_mim_jitter_after_crop.py'
pipes = {name: [TRANSFORMS.build(t) for t in Config.fromfile(name).train_dataloader.dataset.pipeline]
         for name in (OFFICIAL, AFTER)}
load = pipes[OFFICIAL][0]

def run(pipe, path, seed):
    np.random.seed(seed)
    results = dict(img_path=path)
    for t in pipe:
        results = t(results)
    return results


def check_pixels(root):
    """Sections 1 and 2 on the JPEGs under ``root``."""
    paths = sorted(glob.glob(f'{root}/train/*/*.JPEG'))
    images = [load(dict(img_path=f))['img'] for f in paths[:200]]
    rng = np.random.default_rng(0)
    errors = defaultdict(list)
    for k in range(1000):
        img = images[k % len(images)]
        order = [int(i) for i in rng.permutation(3)]
        b, c, s = rng.uniform(0.6, 1.4, 3)
        before = tuple(order[:order.index(1)])
        head = pil_color_jitter(img, before, b, None, s)
        errors[before].append(estimate_contrast_mean(img, order, b, s)
                              - pil_contrast_mean(head))
    print(f'== {root}: {len(images)} images')
    print('1. contrast level: estimate - PIL, by the operations before the contrast')
    names = {(): 'none', (0,): 'brightness', (2,): 'saturation',
             (0, 2): 'brightness, saturation', (2, 0): 'saturation, brightness'}
    everything = []
    for key in sorted(errors):
        e = np.array(errors[key])
        everything += list(e)
        print(f'   {names[key]:24s} draws {len(e):4d}  equal {np.mean(e == 0):6.1%}  '
              f'max |error| {np.abs(e).max()}')
    print(f'   all: equal {np.mean(np.array(everything) == 0):.1%}')
    diffs, differing, over8, worst = [], [], [], 0
    for k in range(200):
        path = paths[k % len(images)]
        a = run(pipes[OFFICIAL], path, k)['inputs'][0].numpy().astype(np.int16)
        b = run(pipes[AFTER], path, k)['inputs'][0].numpy().astype(np.int16)
        d = np.abs(a - b)
        diffs.append(d.mean())
        differing.append((d > 0).mean())
        over8.append((d > 8).mean())
        worst = max(worst, int(d.max()))
    print('2. student views, 200 draws, official order vs jitter after the crop (uint8 levels):')
    print(f'   mean |difference| {np.mean(diffs):.3f} (per draw: median {np.median(diffs):.3f}, '
          f'max {np.max(diffs):.3f}); values that differ {np.mean(differing):.1%}, by more '
          f'than 8 levels {np.mean(over8):.2%}; max |difference| {worst}')


for root in sys.argv[1:3]:
    check_pixels(root)


# 3. time per image
def pipeline_ms(pipe, paths):
    start = time.perf_counter()
    for b in range(0, len(paths), 64):
        default_collate([run(pipe, p, 0) for p in paths[b:b + 64]])
    return 1e3 * (time.perf_counter() - start) / len(paths)


def jitter_ms(pipe, paths):
    spent = 0.
    for p in paths:
        np.random.seed(0)
        results = dict(img_path=p)
        for t in pipe:
            start = time.perf_counter()
            results = t(results)
            if 'Jitter' in type(t).__name__:
                spent += time.perf_counter() - start
    return 1e3 * spent / len(paths)


paths = sorted(glob.glob(f'{sys.argv[1]}/train/*/*.JPEG'))[:256]
for pipe in pipes.values():
    pipeline_ms(pipe, paths[:64])  # warm up
rounds = {name: [] for name in pipes}
jit = {name: [] for name in pipes}
for r in range(7):
    for name, pipe in pipes.items():
        rounds[name].append(pipeline_ms(pipe, paths))
        jit[name].append(jitter_ms(pipe, paths))
print('3. ms per image (7 alternating rounds of 256 images; median, min-max):')
for name in pipes:
    print(f'   {name}: pipeline + collate {statistics.median(rounds[name]):.2f} '
          f'({min(rounds[name]):.2f}-{max(rounds[name]):.2f}); jitter steps '
          f'{statistics.median(jit[name]):.2f}')
ratio = [a / b for a, b in zip(rounds[OFFICIAL], rounds[AFTER])]
print(f'   official / after: {statistics.median(rounds[OFFICIAL]) / statistics.median(rounds[AFTER]):.2f}x '
      f'(ratio of medians); per-round ratios median {statistics.median(ratio):.2f}x')
