#!/usr/bin/env python
# r-string: the backslash below is the example's shell line continuation, shown in --help.
r"""Run the whole chain: data -> teacher -> tokenizers -> MIM -> downstream -> leaderboard.

    python tools/run_suite.py --synthetic                  # the demo (make demo)
    python tools/run_suite.py --methods beitv2,random --tasks linear_probe,upernet
    python tools/run_suite.py --schedule 0.5               # half of every config's iterations
    python tools/run_suite.py --imagenet-root /data/imagenet --ade20k-root \
        /data/ade/ADEChallengeData2016 --coco-root /data/coco --work-dir work_dirs/real

A data set without its root flag is the generated synthetic one (--imagenet-root alone:
real pretraining and classification, synthetic ADE20K and COCO); the plan says which is which.
Each stage is a subprocess of tools/train.py with its own work dir and log
(<work-dir>/<stage>/suite_stage.log). Finished stages are detected from their outputs and
skipped, so rerunning the same command resumes an interrupted suite. The leaderboard
(Markdown, CSV, HTML, PNG) goes to <work-dir>/leaderboard/ and is printed at the end.
Stage details, baselines and hand-off keys: beitv2_mm/suite.py.
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _csv(text):
    return tuple(t.strip() for t in text.split(',') if t.strip())


def _positive(kind, fix):
    """An argparse type: a number of ``kind`` > 0, else an error saying ``fix`` (--max-iters 0
    ran the full schedules, -5 planned stages that failed after starting)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not 0 < value < float('inf'):
            raise argparse.ArgumentTypeError(
                f'must be a {"positive integer" if kind is int else "finite number > 0"}, '
                f'got {text!r}; {fix}')
        return value
    parse.__name__ = kind.__name__
    return parse


def parse_args(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tools/_cli.py
    from _cli import CfgOptionsAction

    parser = argparse.ArgumentParser(
        description='Run the BEiT v2 benchmark chain end to end.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--synthetic', action='store_true',
                        help='use the generated synthetic data set for everything (the default '
                        'for every data set whose root is not given)')
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='root of all stage work dirs (default: work_dirs/demo)')
    parser.add_argument('--methods', type=_csv, default=None,
                        help='comma list of the methods of DEMO_METHODS in beitv2_mm/suite.py '
                        '(shipped: beitv2, beitv1, peco, random, supervised; default: all, '
                        'an entry added there included)')
    parser.add_argument('--tasks', type=_csv, default=None,
                        help='comma list of linear_probe, finetune, upernet, mask_rcnn '
                        '(default: all)')
    parser.add_argument('--schedule', default=1.0,
                        type=_positive(float, 'e.g. 0.5 halves every run, 1 (the default) '
                                       'keeps the configs\' lengths'),
                        help='multiply every training length (iterations / epochs) by this')
    parser.add_argument('--max-iters', default=None,
                        type=_positive(int, 'leave --max-iters out for the configs\' full '
                                       'schedules'),
                        help='cap every iteration-based stage at this many iterations '
                        '(and epoch-based ones at 1 epoch): a smoke test of the chain')
    parser.add_argument('--batch-size-cap', default=None,
                        type=_positive(int, 'leave --batch-size-cap out for the configs\' '
                                       'batch sizes'),
                        help='cap every dataloader batch size (default: 8 with --data-size '
                        'tiny, else none)')
    parser.add_argument('--data-dir', default='data/synthetic',
                        help='where the synthetic data set is written (default: data/synthetic)')
    parser.add_argument('--data-size', default='demo', choices=['tiny', 'demo'],
                        help='synthetic set size (default: demo)')
    parser.add_argument('--seed', type=int, default=0, help='synthetic data seed')
    parser.add_argument('--imagenet-root', help='real ImageNet root (train/, val/, meta/); '
                        'default: synthetic')
    parser.add_argument('--ade20k-root',
                        help='real ADE20K root (ADEChallengeData2016 with images/, annotations/); '
                        'default: synthetic')
    parser.add_argument('--coco-root',
                        help='real COCO root (annotations/, train2017/, val2017/); '
                        'default: synthetic')
    # a string default goes through type too: SUITE_JOBS=0 is refused like --jobs 0
    parser.add_argument('--jobs', default=os.environ.get('SUITE_JOBS', '2'),
                        type=_positive(int, '--jobs (or env SUITE_JOBS) 1 runs one stage at '
                                       'a time'),
                        help='stages run in parallel (default 2, env SUITE_JOBS); each gets '
                        'cores / jobs threads')
    parser.add_argument('--redo', type=_csv, default=(),
                        help='comma list of stage names (or prefixes, e.g. downstream/beitv2) '
                        'to delete and run again, with every stage that reads their output '
                        '(--redo mim/beitv2: also downstream/beitv2/*)')
    parser.add_argument('--no-fork', action='store_true',
                        help='start every stage in a fresh interpreter (default on Linux '
                        'without a visible GPU: fork this process, which imported the stack '
                        'once; with CUDA every stage is a fresh interpreter anyway)')
    parser.add_argument('--dry-run', action='store_true', help='print the plan and exit')
    parser.add_argument('--no-leaderboard', action='store_true')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={},
                        metavar='KEY=VALUE',
                        help='extra options for every stage whose config has the key '
                        '(a key no planned config has is an error; +key adds it everywhere)')
    args = parser.parse_args(argv)
    real = [args.imagenet_root, args.ade20k_root, args.coco_root]
    if args.synthetic and any(real):
        parser.error('--synthetic cannot be combined with --imagenet-root / --ade20k-root / '
                     '--coco-root')
    return args


def main(argv=None):
    args = parse_args(argv)
    from beitv2_mm import suite

    opts = suite.SuiteOptions(
        work_dir=Path(args.work_dir), methods=args.methods or tuple(suite.DEMO_METHODS),
        tasks=args.tasks or tuple(suite.DEMO_TASKS),
        schedule=args.schedule, max_iters=args.max_iters, data_dir=Path(args.data_dir),
        data_size=args.data_size, seed=args.seed, imagenet_root=args.imagenet_root,
        ade20k_root=args.ade20k_root, coco_root=args.coco_root, jobs=args.jobs,
        batch_size_cap=args.batch_size_cap,
        extra_options=dict(args.cfg_options or {}))
    from beitv2_mm.engine.launch import ConfigKeyError
    try:
        stages = suite.plan(opts)
        redo = suite.select_stages(stages, args.redo)  # a wrong name fails before anything runs
        # what reads a redone stage's output reruns too: a kept one would stay done with the
        # results of the old output (its fingerprint covers no outputs)
        redo = suite.with_dependents(stages, redo)
    except (FileNotFoundError, ValueError, ConfigKeyError) as err:
        sys.exit(f'tools/run_suite.py: error: {err}')
    print(f'[suite] {len(stages)} stages, work dir {opts.work_dir}, jobs {opts.jobs}, '
          f'schedule x{opts.schedule}' + (f', max {opts.max_iters} iters' if opts.max_iters
                                         else ''))
    for i, stage in enumerate(stages, 1):
        deps = f'  <- {", ".join(stage.deps)}' if stage.deps else ''
        iters = f' ({stage.max_iters} it)' if stage.max_iters else ''
        again = '  [redo]' if stage in redo else ''
        print(f'  {i:2d}. {stage.name}{iters}{deps}{again}')
    if redo:
        print(f'[suite] --redo: the {len(redo)} stage(s) marked [redo] '
              f'{"would be" if args.dry_run else "are"} deleted and run again (those named '
              'and every stage that reads their output)')
    if args.dry_run:
        return 0
    for stage in redo:
        suite.clean_stage(stage)
    status = suite.run_stages(stages, jobs=opts.jobs, fork=False if args.no_fork else None)
    code = 0 if all(v in ('done', 'skipped') for v in status.values()) else 1
    if not args.no_leaderboard:
        print()
        if suite.render_leaderboard(opts.work_dir) != 0:
            code = 1
    if code:
        failed = [k for k, v in status.items() if v in ('failed', 'blocked')]
        print(f'[suite] not complete: {", ".join(failed)}; fix and rerun the same command '
              f'(finished stages are skipped)')
    return code


if __name__ == '__main__':
    sys.exit(main())
