"""Run c5 (one-off): DeviceMIMDataPreprocessor before (20ed23c: one image at a time, torch's
float32 antialiased resize) and after (the jitter of the whole batch at once, PIL's integer
resize in float64 GEMMs), side by side on one batch of ImageNet-sized JPEGs, on the CPU.

Per side, alternating rounds: the time of one forward of the batch (decode, jitter, flip,
crop, resize, normalise), and, from one profiled forward, the number of aten operations that
compute (the innermost operations of the profile, without views, reshapes, allocations and
the casts that return their input): on a GPU
each is a kernel launch the host has to issue, which is what the batching is for; the GPU time
itself is not measured here (no GPU). Then the pixels of both against the official pipeline
(configs/beitv2_vitb_mim.py, same seeds), and the FLOPs of the matrix products
(FlopCounterMode; the new resize's float64 GEMMs).

    python benchmarks/cpu-2026-11-23/c5_device_views_batched.py IMAGENET_ROOT [BATCH] [ROUNDS]
The old preprocessor is the committed file of 20ed23c, read with `git show` and registered
under another name (old_device_views.py).
"""
import collections
import glob
import json
import sys
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import beitv2_mm  # noqa: F401
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate, pseudo_collate
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from old_device_views import register_old_preprocessor  # beside this script

root = sys.argv[1]
batch_size = int(sys.argv[2]) if len(sys.argv) > 2 else 64
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
torch.set_num_threads(2)
init_default_scope('mmpretrain')

old_name = register_old_preprocessor()  # 20ed23c's, from git

official_cfg = Config.fromfile('configs/beitv2_vitb_mim.py')
device_cfg = Config.fromfile('configs/beitv2_vitb_mim_device_views.py')
pre_cfg = dict(device_cfg.model.data_preprocessor)
sides = {'before (20ed23c)': MODELS.build({**pre_cfg, 'type': old_name}),
         'after': MODELS.build(pre_cfg)}
official_pre = MODELS.build(official_cfg.model.data_preprocessor)

paths = sorted(glob.glob(f'{root}/train/*/*.JPEG'))[:batch_size]
device_pipeline = Compose(device_cfg.train_dataloader.dataset.pipeline)
official_pipeline = Compose(official_cfg.train_dataloader.dataset.pipeline)
samples, official = [], []
for i, path in enumerate(paths):
    np.random.seed(i)
    samples.append(device_pipeline(dict(img_path=path, sample_idx=i)))
    np.random.seed(i)
    official.append(official_pipeline(dict(img_path=path, sample_idx=i)))
batch = pseudo_collate(samples)
reference = official_pre(default_collate(official), training=True)['inputs']

NO_KERNEL = {'aten::empty', 'aten::empty_strided', 'aten::empty_like', 'aten::view',
             'aten::reshape', 'aten::_reshape_alias', 'aten::as_strided', 'aten::slice',
             'aten::select', 'aten::unbind', 'aten::permute', 'aten::transpose', 'aten::t',
             'aten::expand', 'aten::unsqueeze', 'aten::squeeze', 'aten::alias',
             'aten::detach', 'aten::lift_fresh', 'aten::_unsafe_view', 'aten::resize_',
             'aten::narrow', 'aten::numpy_T', 'aten::mT', 'aten::flatten', 'aten::result_type', 'aten::view_as',
             'aten::is_nonzero', 'aten::item', 'aten::_local_scalar_dense', 'aten::set_',
             'aten::_has_compatible_shallow_copy_type', 'aten::size', 'aten::stride',
             # without children these return their input: no kernel
             'aten::to', 'aten::contiguous', 'aten::resolve_conj', 'aten::resolve_neg'}


def count_ops(pre):
    """aten operations that run a kernel: not in NO_KERNEL and without such an operation
    inside (``aten::to`` -> ``aten::copy_`` counts once, as the copy)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        pre(batch, training=True)

    def computes(event):
        return event.name.startswith('aten::') and event.name not in NO_KERNEL

    def inner(event):
        return any(computes(c) or inner(c) for c in event.cpu_children)

    names = [e.name for e in prof.events() if computes(e) and not inner(e)]
    return len(names), collections.Counter(names).most_common(8)


results = {name: dict(seconds=[]) for name in sides}
for name, pre in sides.items():
    pre(batch, training=True)  # warm-up
    results[name]['ops'], results[name]['top_ops'] = count_ops(pre)
    with FlopCounterMode(display=False) as flops:  # matrix products only (not interpolate)
        pre(batch, training=True)
    results[name]['gemm_flops'] = flops.get_total_flops()
for r in range(rounds):
    for name, pre in sides.items():
        start = time.perf_counter()
        out = pre(batch, training=True)['inputs']
        results[name]['seconds'].append(time.perf_counter() - start)
for name, pre in sides.items():
    out = pre(batch, training=True)['inputs']
    levels = (out[0] * pre.std + pre.mean).round().long()
    ref = (reference[0] * official_pre.std + official_pre.mean).round().long()
    diff = (levels - ref).abs()
    sec = float(np.median(results[name]['seconds']))
    results[name].update(median_s=sec, images_per_s=batch_size / sec,
                         differ=float((diff > 0).double().mean()), max_diff=int(diff.max()),
                         same_as_official=all(torch.equal(o, e) for o, e in zip(out, reference)))
    print(f"{name}: {batch_size} images, median {sec * 1000:.0f} ms per batch "
          f"({batch_size / sec:.1f} img/s; rounds {[round(s * 1000) for s in results[name]['seconds']]}); "
          f"{results[name]['ops']} computing aten ops per batch "
          f"({results[name]['ops'] / batch_size:.1f} per image), most: {results[name]['top_ops']}; "
          f"GEMM FLOPs per image {results[name]['gemm_flops'] / batch_size / 1e6:.0f} M; "
          f"student view vs official: {results[name]['differ']:.2%} of values differ, max "
          f"{results[name]['max_diff']}; both views equal to the official: "
          f"{results[name]['same_as_official']}")
a, b = results['before (20ed23c)'], results['after']
print(f"after / before: ops {b['ops'] / a['ops']:.3f}x; time {b['median_s'] / a['median_s']:.2f}x "
      f"(per-round {[round(y / x, 2) for x, y in zip(a['seconds'], b['seconds'])]})")
print(json.dumps(dict(batch=batch_size, rounds=rounds, torch=torch.__version__,
                      results=results), default=str))
