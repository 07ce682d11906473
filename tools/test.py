#!/usr/bin/env python
"""Evaluate a checkpoint with any config of this project (mmpretrain, mmseg or mmdet scope).

Examples:
    python tools/test.py configs/demo/upernet_vit-tiny_synthetic.py work_dirs/x/iter_200.pth
    tools/dist_test.sh CONFIG CHECKPOINT 8 --out metrics.json

The metrics the test loop returns are printed and, with ``--out``, written as JSON
(rank 0 only).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tools/_cli.py
from _cli import CfgOptionsAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a checkpoint (mmpretrain / mmseg / mmdet).')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs go (default: work_dirs/<config name>)')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--amp', action='store_true', help='test under autocast')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, metavar='KEY=VALUE',
                        help='override config keys (must exist; +key=value adds a new key)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher (pytorch = torchrun; gloo is used without CUDA)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.local_rank is not None:  # else torchrun / the slurm set-up gives LOCAL_RANK
        os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _jsonable(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def main(argv=None):
    args = parse_args(argv)
    from beitv2_mm.engine import launch

    launch.die_with_launcher()  # a worker of a killed torchrun stops too

    try:
        cfg = launch.prepare_test_config(
            args.config, args.checkpoint, args.cfg_options, work_dir=args.work_dir,
            amp=args.amp, launcher=args.launcher)
    except (launch.ConfigKeyError, FileNotFoundError, ValueError) as err:
        sys.exit(f'tools/test.py: error: {err}')
    from beitv2_mm.engine.hooks import CheckpointMismatchError
    try:
        metrics, main_process = launch.run_then_close(cfg, 'test')
    except CheckpointMismatchError as err:
        sys.exit(f'tools/test.py: error: {err}')
    metrics = metrics or {}
    if main_process:
        metrics = {k: _jsonable(v) for k, v in metrics.items()}
        print(json.dumps(metrics, indent=2))
        if args.out:
            from beitv2_mm.engine.checkpoint import atomic_write_text
            atomic_write_text(json.dumps(dict(config=args.config, checkpoint=args.checkpoint,
                                              metrics=metrics), indent=2), args.out)


if __name__ == '__main__':
    main()
