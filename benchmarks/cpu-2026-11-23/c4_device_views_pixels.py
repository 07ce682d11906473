"""Run c4, pixels (one-off): the student view of configs/beitv2_vitb_mim_device_views.py
(decode, jitter, flip, crop and resize in DeviceMIMDataPreprocessor, here on the CPU) against
the official pipeline's (configs/beitv2_vitb_mim.py) with the same seed: the same jitter, flip,
crop and mask are drawn, so only the resize (and, on a GPU, the decoder) can differ. uint8
levels compared: mean |difference|, share of differing values, of values more than 1 and more
than 8 apart, max |difference|; also whether every mask was the same.

    python benchmarks/cpu-2026-11-23/c4_device_views_pixels.py IMAGENET_ROOT PHOTO_ROOT
The two data sets of run c2 (ImageNet layout, train/<class>/*.JPEG): 2048 ImageNet-sized
synthetic JPEGs (200 of them, one draw each) and the 9 photographs (200 draws in all).
"""
import glob
import sys

import numpy as np
import torch

import beitv2_mm  # noqa: F401
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

torch.set_num_threads(1)
init_default_scope('mmpretrain')
official_cfg = Config.fromfile('configs/beitv2_vitb_mim.py')
device_cfg = Config.fromfile('configs/beitv2_vitb_mim_device_views.py')
official = Compose(official_cfg.train_dataloader.dataset.pipeline)
device = Compose(device_cfg.train_dataloader.dataset.pipeline)
identity = dict(mean=[0.] * 3, std=[1.] * 3, second_mean=[0.] * 3, second_std=[1.] * 3)
make_views = MODELS.build(dict(type='DeviceMIMDataPreprocessor', **identity))  # levels out


def compare(paths, name):
    diffs, masks_equal = [], True
    for i, path in enumerate(paths):
        np.random.seed(1000 + i)
        a = official(dict(img_path=path, sample_idx=i))
        np.random.seed(1000 + i)
        b = device(dict(img_path=path, sample_idx=i))
        masks_equal &= bool(torch.equal(a['data_samples'].mask, b['data_samples'].mask))
        ref = a['inputs'][0][[2, 1, 0]].to(torch.int64)  # BGR -> RGB
        got = make_views(pseudo_collate([b]), training=True)['inputs'][0][0].round().long()
        diffs.append((got - ref).abs().flatten())
    d = torch.cat(diffs).double()
    print(f'{name}: {len(paths)} draws; mean |diff| {d.mean():.4f} levels; differ '
          f'{(d > 0).double().mean():.2%}; >1 {(d > 1).double().mean():.3%}; >8 '
          f'{(d > 8).double().mean():.4%}; max {int(d.max())}; masks all equal: {masks_equal}')


synthetic = sorted(glob.glob(f'{sys.argv[1]}/train/*/*.JPEG'))[:200]
photos = sorted(glob.glob(f'{sys.argv[2]}/train/*/*.JPEG'))
compare(synthetic, 'synthetic ImageNet-sized JPEGs')
compare([photos[i % len(photos)] for i in range(200)], f'{len(photos)} photographs')
