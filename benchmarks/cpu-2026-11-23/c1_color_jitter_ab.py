"""Run c1 (one-off): PILColorJitter before (commit b4c3222: PIL ImageEnhance calls) and after
(lookup tables / float32 on the BGR array), one process, one thread, alternating rounds.

1. Both give the same pixels on every image (asserted).
2. ms per image of the jitter alone.
3. ms per image of the whole MIM train pipeline of configs/beitv2_vitb_mim.py plus
   default_collate per 64 images: what one data-loader worker spends.

    python benchmarks/cpu-2026-11-23/c1_color_jitter_ab.py IMAGENET_ROOT
IMAGENET_ROOT: ImageNet layout (train/<class>/*.JPEG); here 2048 ImageNet-sized JPEGs made by
benchmarks/h100-2026-11-23/g17_make_imagenet_sized_jpegs.py.
"""
import glob
import statistics
import subprocess
import sys
import time
import types

import cv2
import numpy as np
import torch

import beitv2_mm  # noqa: F401
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmpretrain.registry import TRANSFORMS

BEFORE = 'b4c3222'
init_default_scope('mmpretrain')
cv2.setNumThreads(0)
torch.set_num_threads(1)

# the previous PILColorJitter, registered as PILColorJitterBefore
src = subprocess.run(['git', 'show', f'{BEFORE}:beitv2_mm/datasets/mim_transforms.py'],
                     check=True, capture_output=True, text=True).stdout
src = src[:src.index('@TRANSFORMS.register_module()\nclass TwoViewRandomResizedCrop')]
src = src.replace('class PILColorJitter(', 'class PILColorJitterBefore(')
exec(compile(src, f'{BEFORE}:mim_transforms.py', 'exec'), types.ModuleType('before').__dict__)

files = sorted(glob.glob(f'{sys.argv[1]}/train/*/*.JPEG'))[:256]
imgs = [cv2.imread(f) for f in files]
cfg = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.)
jitter = {'before': TRANSFORMS.build(dict(type='PILColorJitterBefore', **cfg)),
          'after': TRANSFORMS.build(dict(type='PILColorJitter', **cfg))}
for i, img in enumerate(imgs):
    out = []
    for t in jitter.values():
        np.random.seed(i)
        out.append(t.transform({'img': img.copy()})['img'])
    assert np.array_equal(*out), files[i]
print(f'same pixels on all {len(imgs)} images')

after_cfg = Config.fromfile('configs/beitv2_vitb_mim.py').train_dataloader.dataset.pipeline
before_cfg = [dict(t, type='PILColorJitterBefore') if t['type'] == 'PILColorJitter' else t
              for t in after_cfg]
pipes = {k: [TRANSFORMS.build(t) for t in p] for k, p in (('before', before_cfg),
                                                            ('after', after_cfg))}


def jitter_only(t):
    for img in imgs:
        t.transform({'img': img})


def pipeline(ts):
    for b in range(0, len(files), 64):
        batch = []
        for f in files[b:b + 64]:
            d = dict(img_path=f)
            for t in ts:
                d = t(d)
            batch.append(d)
        default_collate(batch)


for what, fn, args in (('colour jitter', jitter_only, jitter),
                       ('pipeline + collate', pipeline, pipes)):
    ms = {k: [] for k in args}
    for r in range(7):
        for k, a in args.items():
            np.random.seed(r)
            s = time.perf_counter()
            fn(a)
            ms[k].append(1e3 * (time.perf_counter() - s) / len(files))
    for k, v in ms.items():
        print(f'{what:20s} {k:7s} median {statistics.median(v):.2f} ms/image  rounds',
              [round(x, 2) for x in v])
    ratio = statistics.median(b / a for b, a in zip(ms['before'], ms['after']))
    print(f'{what:20s} before/after: ratio of medians '
          f'{statistics.median(ms["before"]) / statistics.median(ms["after"]):.2f}x, '
          f'median of per-round ratios {ratio:.2f}x')
