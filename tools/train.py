#!/usr/bin/env python
"""Train any config of this project (mmpretrain, mmseg or mmdet scope) with mmengine's Runner.

Examples:
    python tools/train.py configs/demo/vqkd_vit-tiny_synthetic.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --amp \
        --cfg-options train_dataloader.batch_size=32 model.teacher.checkpoint=teacher.pth
    python tools/train.py CONFIG --resume                 # latest checkpoint of the work dir
    python tools/train.py CONFIG --auto-scale-lr          # lr x total batch / base batch
    tools/dist_train.sh CONFIG 8                          # torchrun, --launcher pytorch

A ``--cfg-options`` key must exist in the config (the error names the closest keys);
prefix a key with ``+`` to add it on purpose. Details: ``beitv2_mm/engine/launch.py``.
"""
import argparse
import os
import sys

# Run from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tools/_cli.py
from _cli import CfgOptionsAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model (mmpretrain / mmseg / mmdet).')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: the config\'s work_dir, else work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='PATH',
                        help='resume from PATH, or without PATH from the latest checkpoint '
                        'of the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 AmpOptimWrapper on GPU, bf16 autocast on CPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr linearly by (GPUs x batch per GPU) / the config\'s '
                        'auto_scale_lr.base_batch_size (the total batch its lr is set for)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, metavar='KEY=VALUE',
                        help='override config keys (must exist; +key=value adds a new key)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher (pytorch = torchrun; gloo is used without CUDA)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.local_rank is not None:  # else torchrun / the slurm set-up gives LOCAL_RANK
        os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    from beitv2_mm.engine import launch

    launch.die_with_launcher()  # a worker of a killed torchrun stops too

    try:
        cfg = launch.prepare_train_config(
            args.config, args.cfg_options, work_dir=args.work_dir, resume=args.resume,
            amp=args.amp, launcher=args.launcher, auto_scale_lr=args.auto_scale_lr)
    except (launch.ConfigKeyError, FileNotFoundError, ValueError) as err:
        sys.exit(f'tools/train.py: error: {err}')
    launch.run_then_close(cfg, 'train')


if __name__ == '__main__':
    main()
