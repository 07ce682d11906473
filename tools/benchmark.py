#!/usr/bin/env python
"""Benchmark the suite's steps: images/s, peak memory, TFLOP/s and MFU, side by side.

Workloads (subcommands):

    mim       BEiT v2 MIM training step: tokenizer forward + student forward/backward with
              the patch-aggregation head + optimizer step (``model.train_step``).
    vqkd      VQ-KD training step: teacher forward + tokenizer forward/backward + AdamW.
    tokenize  tokenizer inference (code indices), images/s.
    finetune  ImageNet fine-tuning step: Mixup/CutMix, forward, label-smoothed loss, backward,
              layer-decayed AdamW (``model.train_step`` of configs/finetune_in1k.py).
    upernet   UperNet (+ FCN auxiliary head) training step on a BEiT ViT.
    data      images/s from a config's real training dataloader with its workers.

Examples::

    # the headline comparison (CPU): this project's step vs mmpretrain's, alternately
    OMP_NUM_THREADS=2 python tools/benchmark.py mim --arch base --batch 4 --steps 10 \\
        --warmup 2 --compare mmpretrain --json work_dirs/bench/mim_cpu.json
    # GPU, bf16
    python tools/benchmark.py mim --arch base --batch 128 --precision bf16 \\
        --compare mmpretrain --json work_dirs/bench/mim_h100.json
    python tools/benchmark.py vqkd --arch base --batch 4 --compare explicit
    python tools/benchmark.py finetune --arch base --batch 4 --compare mmpretrain
    python tools/benchmark.py data --config configs/beitv2_vitb_mim.py \\
        --data-root data/synthetic/imagenet --batch 64 [--profile]
    # views made on the GPU: the workers plus the data preprocessor, and the latter alone
    python tools/benchmark.py data --config configs/beitv2_vitb_mim_device_views.py \\
        --batch 128 --preprocess

Every result (with the command line, machine, software versions and date) is printed and,
with ``--json``, written to a file. Timings are medians of ``--steps`` timed steps after
``--warmup`` untimed ones; compared variants run alternately in one process.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')


def compile_cfg(mode):
    """``--compile [MODE]`` -> the ``compile`` option of the fast models (False, True or
    ``dict(mode=MODE)``)."""
    if mode is None:
        return False
    return True if mode == 'default' else dict(mode=mode)


def _count(minimum: int):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f'{value} is below {minimum}')
        return value
    return parse


#: Settings of the model workloads, with their defaults: ``data`` refuses them when changed.
MODEL_ONLY = dict(arch=None, tokenizer_arch=None, img_size=224, precision='fp32', attn='sdpa',
                  no_fused=False, compile=None, no_flops=False)


def parse_args(argv=None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--arch', default=None,
                        help='ViT size: tiny|small|base|large or a JSON dict with embed_dims, '
                             'num_layers, num_heads, feedforward_channels (default: base; '
                             'mim and finetune --config: the config\'s)')
    common.add_argument('--tokenizer-arch', default=None,
                        help='tokenizer encoder size (mim/tokenize/vqkd); default: --arch')
    common.add_argument('--batch', type=_count(1), default=None,
                        help='images per step (default: 4 on CPU, 128 on GPU; data: config)')
    common.add_argument('--img-size', type=int, default=224)
    common.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'), default='fp32')
    common.add_argument('--attn', choices=('sdpa', 'explicit'), default='sdpa',
                        help='attention path of this project\'s models (default: sdpa)')
    common.add_argument('--compile', nargs='?', const='default', default=None,
                        choices=COMPILE_MODES, metavar='MODE',
                        help='torch.compile the transformer layers of the fast path (mim: '
                             'student, aggregation neck and tokenizer encoder; vqkd and '
                             'tokenize: the tokenizer; finetune and upernet: the backbone), '
                             'optionally with '
                             'a torch.compile mode: '
                             + ', '.join(COMPILE_MODES))
    common.add_argument('--no-fused', action='store_true',
                        help='plain (for-loop/foreach) AdamW instead of fused AdamW')
    common.add_argument('--steps', type=_count(1), default=10, help='timed steps per variant')
    common.add_argument('--warmup', type=_count(0), default=2,
                        help='untimed steps per variant first')
    common.add_argument('--device', default=None, help='cpu | cuda[:N] (default: cuda if any)')
    common.add_argument('--threads', type=_count(1), default=None,
                        help='torch.set_num_threads')
    common.add_argument('--no-flops', action='store_true', help='skip FLOP counting')
    common.add_argument('--profile', action='store_true',
                        help='after timing, profile one more step of each variant: op time, '
                             'matmul-kernel share, top ops (stored under "profile"); data: '
                             'each transform\'s and the collate\'s time per image, in one '
                             'process before the workers start (under '
                             '"dataloader.pipeline_profile")')
    common.add_argument('--seed', type=int, default=0)
    common.add_argument('--verbose', action='store_true', help='keep mmengine INFO logs')
    common.add_argument('--json', dest='json_out', default=None, help='write results here')

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='workload', required=True)
    mim = sub.add_parser('mim', parents=[common], help='BEiT v2 MIM training step')
    mim.add_argument('--compare', choices=('mmpretrain',), default=None,
                     help="also run mmpretrain's stock BEiT v2 step, alternately")
    mim.add_argument('--config', default=None,
                     help='config of the fast side (default: configs/beitv2_vitb_mim.py if '
                          'present, else the stock config with this project\'s classes)')
    mim.add_argument('--student-attn', choices=('sdpa', 'explicit'), default=None,
                     help='attention of the student and neck (default: --attn); the '
                          'tokenizer always uses --attn')
    mim.add_argument('--no-select-rows', action='store_true',
                     help='plain BEiTMIM: the last layers on all rows (default: '
                          'SelectiveBEiTMIM, only the rows the loss reads)')
    mim.add_argument('--no-loss-check', action='store_true',
                     help='skip computing both variants\' loss on the same weights first')
    vqkd = sub.add_parser('vqkd', parents=[common], help='VQ-KD training step')
    vqkd.add_argument('--compare', choices=('explicit',), default=None,
                      help='also run the explicit-attention path (no stock trainer exists)')
    vqkd.add_argument('--teacher-dim', type=int, default=512)
    tok = sub.add_parser('tokenize', parents=[common], help='tokenizer inference')
    tok.add_argument('--compare', choices=('mmpretrain', 'explicit'), default=None)
    ft = sub.add_parser('finetune', parents=[common], help='ImageNet fine-tuning step')
    ft.add_argument('--compare', choices=('mmpretrain', 'explicit'), default=None,
                    help="also run mmpretrain's stock BEiT v2 fine-tuning step (mmpretrain) or "
                         "this project's on the explicit attention path (explicit), alternately")
    ft.add_argument('--config', default=None,
                    help='config of the fast side (default: configs/finetune_in1k.py)')
    ft.add_argument('--no-loss-check', action='store_true',
                    help='skip computing both variants\' loss on the same weights first')
    uper = sub.add_parser('upernet', parents=[common], help='UperNet training step')
    uper.add_argument('--compare', choices=('mmpretrain', 'explicit'), default=None,
                      help='also run it on the stock mmpretrain.BEiTViT backbone')
    uper.add_argument('--channels-last', action='store_true',
                      help='fast side: convolution weights in torch.channels_last format')
    uper.add_argument('--window-size', type=int, default=0,
                      help='fast side: the detector\'s WindowedBEiTViT, ViTDet\'s window '
                           'attention with windows of N patches in all blocks but the last of '
                           'each quarter (configs/mask_rcnn_coco.py: 14 at 1024 px); 0 (default): '
                           'global attention in every block')
    data = sub.add_parser('data', parents=[common], help='training dataloader images/s')
    data.add_argument('--config', required=True, help='config whose train_dataloader to time')
    data.add_argument('--data-root', default=None,
                      help='override train_dataloader.dataset.data_root')
    data.add_argument('--workers', type=_count(0), default=None,
                      help='override num_workers (default: the config\'s)')
    data.add_argument('--preprocess', action='store_true',
                      help='also run the config\'s model.data_preprocessor on each batch on '
                           '--device, and time it alone on one batch (data_preprocessor); '
                           'for configs that augment there (beitv2_vitb_mim_device_views.py)')
    data.add_argument('--profile-images', type=_count(1), default=200,
                      help='images that --profile runs through the pipeline (default 200)')
    args = parser.parse_args(argv)
    config = getattr(args, 'config', None)
    if config and not os.path.isfile(config):
        parser.error(f'--config {config}: no such file')
    if args.workload == 'data':
        changed = [f'--{k.replace("_", "-")}' for k, default in MODEL_ONLY.items()
                   if getattr(args, k) != default]
        if changed:
            parser.error(f'{", ".join(changed)}: for the model workloads only (data times '
                         f'the config\'s dataloader)')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from beitv2_mm.engine import benchmark as bench

    if not args.verbose:
        import logging

        from mmengine.logging import MMLogger
        MMLogger.get_current_instance().setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device:
        device = torch.device(args.device)
    else:
        device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit(f'--device {args.device}: CUDA is not available on this machine')
    batch = args.batch or (128 if device.type == 'cuda' else 4)
    if args.workload != 'data' and args.img_size % 16:
        raise SystemExit(f'--img-size {args.img_size} must be a multiple of 16 (patch size)')
    arch_source = args.arch or 'base'
    if args.workload in ('mim', 'finetune') and args.config and args.arch is None:
        from mmengine.config import Config  # the config's size, not silently ViT-B
        arch_source = Config.fromfile(args.config).model.backbone.get('arch', 'base')
        arch_source = arch_source.to_dict() if hasattr(arch_source, 'to_dict') else arch_source
    try:
        arch = bench.resolve_arch(arch_source)
        tok_arch = bench.resolve_arch(args.tokenizer_arch) if args.tokenizer_arch else arch
    except ValueError as err:
        raise SystemExit(f'tools/benchmark.py: error: {err}')
    fused = not args.no_fused
    import beitv2_mm  # noqa: F401 - registers this project's modules

    extra = {}
    separate = []  # data --preprocess: variants timed after the loader
    baseline = None
    if args.workload == 'mim':
        stock_model_cfg, stock_optim_cfg = bench.stock_mim_config(arch, tok_arch, args.img_size)
        try:
            fast_model_cfg, fast_optim_cfg = bench.fast_mim_config(
                arch, tok_arch, args.img_size, attn=args.attn,
                compile_layers=compile_cfg(args.compile),
                config=args.config, select_rows=not args.no_select_rows,
                student_attn=args.student_attn)
        except ValueError as err:
            raise SystemExit(f'tools/benchmark.py: error: {err}')
        setups = []
        fast = bench.make_mim_setup('fast', fast_model_cfg, fast_optim_cfg, batch,
                                    args.img_size, args.precision, device, fused, args.seed,
                                    fast=True)
        if args.compare:
            stock = bench.make_mim_setup('mmpretrain', stock_model_cfg, stock_optim_cfg, batch,
                                         args.img_size, args.precision, device, False,
                                         args.seed)
            bench.copy_stock_weights_into_fast(stock.model, fast.model)
            baseline = 'mmpretrain'
            if not args.no_loss_check:
                with torch.no_grad(), bench.eager_only(), \
                        bench.autocast_context(device, args.precision):
                    losses = {s.name: float(bench.mim_loss(s.model, s.data))
                              for s in (fast, stock)}
                extra['initial_loss_same_weights'] = losses
                print(f'[benchmark] loss on the same weights and batch: {losses}')
            setups.append(stock)
        setups.insert(0, fast)
        variants = [bench.Variant(s.name, s.step, batch, flops_fn=s.forward_backward,
                                  info=dict(model=s.model_cfg['type'],
                                            backbone=s.model_cfg['backbone']['type'],
                                            optim_wrapper=s.optim_cfg))
                    for s in setups]
    elif args.workload == 'vqkd':
        variants = bench.vqkd_variants(tok_arch, batch, args.img_size, device, args.precision,
                                       args.attn, args.compare, fused, args.teacher_dim,
                                       args.seed, compile_layers=compile_cfg(args.compile))
        baseline = 'explicit' if args.compare else None
    elif args.workload == 'tokenize':
        variants = bench.tokenize_variants(tok_arch, batch, args.img_size, device,
                                           args.precision, args.attn, args.compare, args.seed,
                                           compile_layers=compile_cfg(args.compile))
        baseline = args.compare
    elif args.workload == 'finetune':
        try:
            variants, extra = bench.finetune_variants(
                arch, batch, args.img_size, device, args.precision, args.attn, args.compare,
                fused, args.seed, compile_layers=compile_cfg(args.compile), config=args.config,
                loss_check=not args.no_loss_check)
        except ValueError as err:
            raise SystemExit(f'tools/benchmark.py: error: {err}')
        baseline = args.compare
        if 'initial_loss_same_weights' in extra:
            print(f'[benchmark] loss on the same weights and batch: '
                  f'{extra["initial_loss_same_weights"]}')
    elif args.workload == 'upernet':
        variants = bench.upernet_variants(arch, batch, args.img_size, device, args.precision,
                                          args.attn, args.compare, fused, args.seed,
                                          compile_layers=compile_cfg(args.compile),
                                          channels_last=args.channels_last,
                                          window_size=args.window_size)
        baseline = args.compare
    else:  # data
        from beitv2_mm.datasets.layout import DatasetLayoutError
        if args.data_root and not os.path.isdir(args.data_root):
            sys.exit(f'tools/benchmark.py data: error: --data-root {args.data_root} is not a '
                     'folder; give the data set root the config reads (for ImageNet the '
                     'folder with train/ and meta/)')
        try:
            variants, info = bench.data_variant(
                args.config, args.batch, args.workers, args.data_root, args.seed,
                profile_images=args.profile_images if args.profile else None,
                preprocess_on=device if args.preprocess else None)
        except DatasetLayoutError as err:  # its advice is for the training tools
            sys.exit(f'tools/benchmark.py data: error: {err}\nHere: --data-root DIR sets '
                     f'train_dataloader.dataset.data_root of {args.config}.')
        batch = variants[0].images
        extra['dataloader'] = info
        # timed after the loader, not alternately: the workers would fill their queue while
        # the preprocessor alone runs, and the loader's rate would read too high
        separate, variants = variants[1:], variants[:1]
        separate_warmup = max(args.warmup, 1)
        if args.warmup < info['prefetch_batches']:
            # fetches from a full prefetch queue would time the queue, not the pipeline
            print(f'[benchmark] data: warming up with {info["prefetch_batches"]} fetches (the '
                  f'prefetched batches of {info["num_workers"]} workers), not {args.warmup}')
            args.warmup = info['prefetch_batches']
        if args.steps < 2 * max(info['num_workers'], 1):
            print(f'[benchmark] data: --steps {args.steps} is under 2 batches per worker '
                  f'({info["num_workers"]} workers): the mean rate is not a steady state yet')

    results = bench.run_alternating(variants, args.steps, args.warmup, device,
                                    count_flops_too=not (args.no_flops or args.workload == 'data'),
                                    precision=args.precision,
                                    # a fetch's profile would show the queue, not the pipeline
                                    with_profile=args.profile and args.workload != 'data')
    if args.workload == 'data' and separate:
        results.update(bench.run_alternating(separate, args.steps, separate_warmup, device,
                                             count_flops_too=False, precision=args.precision))
    ratios = {}
    paired = {}
    if baseline and baseline in results:
        import statistics
        for name, res in results.items():
            if name != baseline:
                ratios[f'{name}/{baseline}'] = (res['images_per_s']
                                                / results[baseline]['images_per_s'])
                # the steps ran in rounds (baseline and this variant back to back): the
                # median of per-round ratios is robust to load that drifts between rounds
                per_round = [b / t for b, t in zip(results[baseline]['times_s'],
                                                   res['times_s'])]
                paired[f'{name}/{baseline}'] = dict(median=statistics.median(per_round),
                                                    per_round=per_round)
    output = dict(
        workload=args.workload,
        command='python tools/benchmark.py ' + ' '.join(shlex.quote(a) for a in
                                                        (argv if argv is not None
                                                         else sys.argv[1:])),
        ratios=ratios,
        paired_ratios=paired,
        settings=(dict(config=args.config, data_root=args.data_root, batch=batch,
                       workers=args.workers, steps=args.steps, warmup=args.warmup,
                       preprocess=args.preprocess)
                  if args.workload == 'data' else
                  dict(arch=arch, tokenizer_arch=tok_arch, batch=batch, img_size=args.img_size,
                       precision=args.precision, attn=args.attn,
                       student_attn=getattr(args, 'student_attn', None) or args.attn,
                       select_rows=(args.workload == 'mim' and not args.no_select_rows),
                       config=getattr(args, 'config', None),
                       compile=args.compile,
                       channels_last=getattr(args, 'channels_last', False),
                       fused_adamw=fused, steps=args.steps, warmup=args.warmup,
                       compare=args.compare)),
        environment=bench.environment(device),
        results=results, **extra)
    print(bench.format_summary(args.workload, results, baseline))
    if 'pipeline_profile' in extra.get('dataloader', {}):
        print(bench.format_pipeline_profile(extra['dataloader']['pipeline_profile']))
    for key, value in paired.items():
        print(f'{args.workload}: {key} median of per-round ratios = {value["median"]:.3f}x')
    if args.json_out:
        path = bench.write_json(output, args.json_out)
        print(f'[benchmark] wrote {path}')
    return output


if __name__ == '__main__':
    main()
