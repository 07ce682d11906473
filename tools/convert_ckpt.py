#!/usr/bin/env python
"""Convert released checkpoints into this project's / mmpretrain's layout.

    python tools/convert_ckpt.py --list
    python tools/convert_ckpt.py FORMAT SRC.pth DST.pth

Prints how many keys were renamed and every key that was dropped or not understood, so
nothing is lost silently. The output is written atomically as ``{'state_dict': ...,
'meta': {'converted_from': FORMAT, 'source': SRC}}``, and only when every key was understood
(keys no rule knows usually mean the wrong FORMAT; ``--allow-unmatched`` writes the rest anyway).
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import beitv2_mm  # noqa: E402,F401  (applies compat fixes)
from beitv2_mm.convert import CONVERTERS, convert  # noqa: E402
from beitv2_mm.engine.checkpoint import atomic_torch_save  # noqa: E402
from beitv2_mm.engine.compat import trusted_torch_load  # noqa: E402
from beitv2_mm.tokenizers.checkpoint import UNREADABLE_ERRORS, unreadable_checkpoint  # noqa: E402


#: key prefixes of this project's (mmpretrain's) model layout: a file with them needs no conversion
PROJECT_PREFIXES = ('backbone.', 'neck.', 'head.', 'target_generator.', 'tokenizer.',
                    'data_preprocessor.')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('format', nargs='?', help='source layout; see --list')
    parser.add_argument('src', nargs='?', help='checkpoint to convert')
    parser.add_argument('dst', nargs='?', help='where to write the converted checkpoint')
    parser.add_argument('--list', action='store_true', help='list the known source layouts')
    parser.add_argument('--allow-unmatched', action='store_true',
                        help='write DST even if some source keys matched no rule (they are '
                             'left out; the exit status is still 1)')
    parser.add_argument('--method', help='the pretraining method of SRC (beitv2, beitv1, peco, '
                        '...): the name downstream results and the leaderboard give runs from '
                        'DST (default: the format name)')
    args = parser.parse_args(argv)

    if args.list or not args.format:
        for name, (_, description) in sorted(CONVERTERS.items()):
            print(f'{name:32s} {description}')
        return 0
    if args.format not in CONVERTERS:
        parser.error(f'unknown format {args.format!r}; run with --list to see the known ones')
    if not args.src or not args.dst:
        parser.error('SRC and DST are required')
    if not os.path.isfile(args.src):
        parser.error(f'checkpoint not found: {args.src}')

    try:
        source = trusted_torch_load(args.src, map_location='cpu')
    except UNREADABLE_ERRORS as err:
        parser.error(str(unreadable_checkpoint(args.src, err)))
    try:
        state_dict, report = convert(args.format, source)
    except TypeError as err:  # not a dict of tensors
        parser.error(f'{args.src}: {err}')
    dst = Path(args.dst)
    print(report.format())
    if report.unmatched and not args.allow_unmatched:
        converted = (source.get('meta') or {}).get('converted_from') \
            if isinstance(source.get('meta'), dict) else None
        ours = [k for k in report.unmatched if k.startswith(PROJECT_PREFIXES)]
        if converted or len(ours) * 2 >= len(report.unmatched):
            said = (f'was converted already (meta.converted_from = {converted!r})' if converted
                    else f'is in this project\'s layout already ({len(ours)} of its keys start '
                         f'with {", ".join(sorted({k.split(".")[0] + "." for k in ours}))})')
            print(f'not written: SRC {said}; no conversion needed, use it as it is',
                  file=sys.stderr)
            return 1
        print(f'not written: {len(report.unmatched)} source keys matched no rule of '
              f'{args.format!r}; is SRC in that layout (see --list)? --allow-unmatched writes '
              f'the {len(state_dict)} converted tensors anyway', file=sys.stderr)
        return 1
    meta = {'converted_from': args.format, 'source': str(args.src)}
    if args.method:
        meta['pretrain_method'] = args.method
    atomic_torch_save({'state_dict': state_dict, 'meta': meta}, dst)
    print(f'wrote {len(state_dict)} tensors to {dst}')
    if not args.method and any(k.startswith('backbone.') for k in state_dict):
        # a pretrained backbone (not a tokenizer): downstream runs start from it
        print(f'downstream runs from it are labelled {args.format!r} (a format, not a method); '
              'convert with --method beitv2 (or beitv1, peco, ...) to name the method')
    return 1 if report.unmatched else 0


if __name__ == '__main__':
    sys.exit(main())
