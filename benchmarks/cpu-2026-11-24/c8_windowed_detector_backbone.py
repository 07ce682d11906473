"""Run c8: ViTDet's window attention against global attention in the ViT-B detector backbone.

Builds the backbone of ``configs/mask_rcnn_coco.py`` twice at 1024 px: as configured
(``WindowedBEiTViT``: 14x14 windows in 8 blocks, 4 global blocks) and with global attention in
every block (``FastBEiTViT``, the same config without the window settings, what the detector used
before). Random weights (timing and FLOPs do not depend on them). Prints, as JSON:

* the FLOPs of one forward pass (batch 1), counted by ``torch.utils.flop_counter`` on a pass
  through SDPA's math backend (the warm-up pass), in total and in attention (``bmm``: scores
  and weighted sum);
* the forward time under ``torch.no_grad`` (the detector's test pass), batch 1, fp32: median of
  ``--rounds`` passes, the two backbones alternated in one process after one warm-up pass each.

The training pass (forward + backward) is not timed on the CPU: SDPA falls back to the explicit
arithmetic there when the bias needs a gradient, and the global backbone would keep about
12 x 4096^2 fp32 scores per block for the backward (tens of GB).

    OMP_NUM_THREADS=2 python benchmarks/cpu-2026-11-24/c8_windowed_detector_backbone.py
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
ATTENTION_OPS = ('bmm', 'scaled_dot_product')


def build_backbones():
    import beitv2_mm  # noqa: F401
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(str(REPO / 'configs/mask_rcnn_coco.py')).model.backbone.to_dict()
    cfg.pop('init_cfg')
    cfg['type'] = 'WindowedBEiTViT'
    windowed = MODELS.build(dict(cfg))
    cfg.pop('window_size')
    cfg.pop('window_block_indexes')
    cfg['type'] = 'FastBEiTViT'
    global_ = MODELS.build(dict(cfg))
    for model in (windowed, global_):
        model.eval()  # mmpretrain's backbones return None from train()/eval()
    return {'windowed (config)': windowed, 'global every block': global_}


def count_flops(model, x) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    # SDPA's math backend decomposes into bmm (counted); the counter has no formula for the
    # CPU flash kernel and would count no attention at all
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        model(x)
    by_op = {str(op): n for op, n in counter.get_flop_counts()['Global'].items()}
    attention = sum(n for op, n in by_op.items() if any(a in op for a in ATTENTION_OPS))
    return dict(total_gflop=counter.get_total_flops() / 1e9, attention_gflop=attention / 1e9,
                by_op_gflop={op: n / 1e9 for op, n in sorted(by_op.items())})


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = build_backbones()
    x = torch.randn(1, 3, 1024, 1024)
    result = dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                  cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                  torch=torch.__version__, backbones={})
    for name, model in models.items():  # the counted pass is the warm-up
        result['backbones'][name] = dict(flops=count_flops(model, x), seconds=[])
    for _ in range(args.rounds):
        for name, model in models.items():
            with torch.no_grad():
                start = time.perf_counter()
                out = model(x)[0]
                result['backbones'][name]['seconds'].append(time.perf_counter() - start)
            assert out.shape == (1, 768, 64, 64), out.shape
    for entry in result['backbones'].values():
        entry['median_s'] = statistics.median(entry['seconds'])
    w, g = result['backbones'].values()
    result['global_over_windowed'] = dict(
        time=g['median_s'] / w['median_s'],
        flops=g['flops']['total_gflop'] / w['flops']['total_gflop'],
        attention_flops=g['flops']['attention_gflop'] / w['flops']['attention_gflop'])
    return result


if __name__ == '__main__':
    print(json.dumps(main(), indent=1))
