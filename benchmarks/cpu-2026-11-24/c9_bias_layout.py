"""Run c9: the relative position bias built as (heads, N*N) rows against mmpretrain's layout.

``beitv2_mm.backbones.beit_vit.attention_bias`` used to gather the per-layer table as mmpretrain
does, ``table[index]`` of shape ``(N*N, heads)`` then ``permute(2, 0, 1)``: a strided bias that
SDPA copies before use. It now indexes the transposed table, ``table.t()[:, index]``, which is
``(heads, N*N)`` contiguous: the same values, the same backward (``index_put_`` with
accumulation). This script times both, alternated in one process (the old one patched in from
the copy below), on the two backbones where the bias is large:

* the detector backbone of ``configs/mask_rcnn_coco.py`` (``WindowedBEiTViT``, 4 global blocks
  over 64 x 64 tokens), 1024 px, batch 1, forward under ``torch.no_grad`` (the test pass);
* the UperNet backbone of ``configs/upernet_ade20k.py`` (``FastBEiTViT``, 1025 tokens), 512 px,
  batch 1, forward + backward of the sum of its outputs.

fp32, random weights (tables drawn with std 0.02), median of ``--rounds`` after one warm-up
each; asserts the outputs (and the UperNet gradients) equal bit for bit.

    OMP_NUM_THREADS=2 python benchmarks/cpu-2026-11-24/c9_bias_layout.py
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def gather_then_permute(attn, shared):
    """``attention_bias`` before run c9 (mmpretrain's layout)."""
    own = None
    if getattr(attn, 'relative_position_bias_table', None) is not None:
        num_tokens = attn.relative_position_index.shape[0]
        own = attn.relative_position_bias_table[attn.relative_position_index.view(-1)]
        own = own.view(num_tokens, num_tokens, -1).permute(2, 0, 1)
    if shared is None:
        return own
    return shared if own is None else own + shared


def build(config, type_):
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(str(REPO / config)).model.backbone.to_dict()
    cfg.pop('init_cfg', None)
    cfg['type'] = type_
    model = MODELS.build(cfg)
    for name, param in model.named_parameters():  # the tables are zeros until init_weights
        if name.endswith('relative_position_bias_table'):
            torch.nn.init.normal_(param.data, std=0.02)
    return model


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    import beitv2_mm  # noqa: F401
    from beitv2_mm.backbones import beit_vit, windowed_beit

    new_bias = beit_vit.attention_bias
    variants = {'table.t()[:, index] (new)': new_bias,
                'table[index].permute (old)': gather_then_permute}

    def use(fn):
        beit_vit.attention_bias = windowed_beit.attention_bias = fn

    torch.manual_seed(0)
    detector = build('configs/mask_rcnn_coco.py', 'WindowedBEiTViT')
    upernet = build('configs/upernet_ade20k.py', 'FastBEiTViT')
    detector.eval()  # mmpretrain's backbones return None from train()/eval()
    upernet.train()
    x_det, x_seg = torch.randn(1, 3, 1024, 1024), torch.randn(1, 3, 512, 512)

    def detector_forward():
        with torch.no_grad():
            return detector(x_det)

    def upernet_step():
        upernet.zero_grad(set_to_none=True)
        outs = upernet(x_seg)
        sum(o.sum() for o in outs).backward()
        return outs, [p.grad.clone() for p in upernet.parameters() if p.grad is not None]

    workloads = {'detector backbone forward, 1024 px': detector_forward,
                 'UperNet backbone forward + backward, 512 px': upernet_step}
    result = dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                  cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                  torch=torch.__version__, rounds=args.rounds, workloads={})
    try:
        for work, fn in workloads.items():
            times = {name: [] for name in variants}
            outputs = {}
            for round_ in range(args.rounds + 1):  # round 0 warms up
                for name, bias in variants.items():
                    use(bias)
                    torch.manual_seed(round_)  # the same drop-path draws for both
                    start = time.perf_counter()
                    out = fn()
                    elapsed = time.perf_counter() - start
                    if round_ == 0:
                        outputs[name] = out
                    else:
                        times[name].append(elapsed)
            new, old = (torch.utils._pytree.tree_leaves(outputs[n]) for n in variants)
            equal = all(torch.equal(a, b) for a, b in zip(new, old))
            medians = {name: statistics.median(t) for name, t in times.items()}
            new_s, old_s = medians.values()
            result['workloads'][work] = dict(seconds=times, median_s=medians,
                                             old_over_new=old_s / new_s, outputs_equal=equal)
            assert equal, f'{work}: outputs differ'
    finally:
        use(new_bias)
    return result


if __name__ == '__main__':
    print(json.dumps(main(), indent=1))
