#!/usr/bin/env python
"""Write the synthetic data set in the ImageNet, ADE20K and COCO layouts.

Usage::

    python tools/make_synthetic_data.py --out data/synthetic [--size tiny|demo] [--seed N] [--force]

The output folder must be empty or missing unless ``--force`` is given (then its ``imagenet/``,
``ade20k/`` and ``coco/`` sub-folders are replaced). Prints what was written.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from beitv2_mm.datasets.synthetic import SIZES, make_synthetic_dataset  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='output folder, e.g. data/synthetic')
    parser.add_argument('--size', default='demo', choices=sorted(SIZES),
                        help='tiny: tens of images for tests; demo: 2100 scenes for the demo '
                             '(default: demo)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument('--force', action='store_true',
                        help='write into a non-empty --out, replacing its imagenet/, ade20k/ '
                             'and coco/ folders')
    return parser.parse_args(argv)


def summarize(roots: dict) -> list:
    """One line per layout and split with its file counts."""
    lines = []
    imagenet = roots['imagenet']
    for split in ('train', 'val'):
        n_img = sum(1 for _ in (imagenet / split).glob('*/*.JPEG'))
        n_cls = sum(1 for p in (imagenet / split).iterdir() if p.is_dir())
        lines.append(f'imagenet {split:5s}: {n_img:5d} images in {n_cls} class folders, '
                     f'list {imagenet / "meta" / f"{split}.txt"}')
    ade = roots['ade20k']
    for split in ('training', 'validation'):
        n_img = sum(1 for _ in (ade / 'images' / split).glob('*.jpg'))
        n_ann = sum(1 for _ in (ade / 'annotations' / split).glob('*.png'))
        lines.append(f'ade20k   {split:10s}: {n_img:5d} images, {n_ann:5d} label maps '
                     f'under {ade}')
    coco = roots['coco']
    for split in ('train2017', 'val2017'):
        ann_file = coco / 'annotations' / f'instances_{split}.json'
        data = json.loads(ann_file.read_text())
        lines.append(f'coco     {split:9s}: {len(data["images"]):5d} images, '
                     f'{len(data["annotations"]):5d} instances, {len(data["categories"])} '
                     f'categories in {ann_file}')
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f'error: --out {out} exists and is not a folder.', file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()):
        if not args.force:
            print(f'error: output folder {out} is not empty; choose an empty or new folder, '
                  f'or pass --force to replace its imagenet/, ade20k/ and coco/ folders.',
                  file=sys.stderr)
            return 2
        for sub in ('imagenet', 'ade20k', 'coco'):
            shutil.rmtree(out / sub, ignore_errors=True)
    start = time.time()
    roots = make_synthetic_dataset(out, size=args.size, seed=args.seed)
    print(f'wrote synthetic {args.size!r} set (seed {args.seed}) to {out} in '
          f'{time.time() - start:.1f}s:')
    for line in summarize(roots):
        print('  ' + line)
    print('data roots: ' + ', '.join(f'{k}={v}' for k, v in roots.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
