#!/usr/bin/env python
"""Render the leaderboard from the results files of downstream runs.

    python tools/leaderboard.py                      # scans work_dirs/, writes work_dirs/leaderboard/
    python tools/leaderboard.py work_dirs/demo --out work_dirs/demo/leaderboard

Writes leaderboard.md, leaderboard.csv, leaderboard.html (self-contained, sortable),
leaderboard_summary.txt (each method against random init, with the noise of top-1 gaps) and one
PNG chart per task, and prints the Markdown table and the summary. Published numbers come from
beitv2_mm/leaderboard/reported.csv (each with its source) as rows marked "reported".
"""
import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('roots', nargs='*', default=['work_dirs'],
                        help='work dirs (or results.json files) to scan (default: work_dirs)')
    parser.add_argument('--out', help='output directory (default: <first root>/leaderboard; '
                        'for a results.json root, beside it)')
    parser.add_argument('--reported', default=None,
                        help='CSV of published numbers (default: the project\'s reported.csv)')
    parser.add_argument('--no-reported', action='store_true', help='leave published rows out')
    parser.add_argument('--include-partial', action='store_true',
                        help='also show results of runs that have not reached their last '
                        'iteration ("final": false)')
    parser.add_argument('--title', default='beitv2_mm leaderboard')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # A mistyped work dir must not pass for "no results yet": fail before anything is written
    # (the table would otherwise land in ./leaderboard of wherever this was run).
    missing = [root for root in args.roots if not os.path.exists(root)]
    if missing:
        verb = 'does' if len(missing) == 1 else 'do'
        sys.exit(f'tools/leaderboard.py: error: {", ".join(missing)} {verb} not exist; expected '
                 'a work dir of runs with results.json files (or a results.json file); nothing '
                 'written')
    # Imported late: --help stays fast, and only the leaderboard modules are needed.
    from beitv2_mm.leaderboard import collect, render

    reported = None if args.no_reported else (args.reported or collect.REPORTED_FILE)
    published = []
    if reported is not None:
        try:  # a user's file: missing, a misspelled column, a value that is no number
            published = collect.reported_rows(reported)
        except (OSError, ValueError) as err:
            sys.exit(f'tools/leaderboard.py: error: --reported: {err}; nothing written')
    with warnings.catch_warnings():
        # said below, in words, together with what the table holds instead
        warnings.filterwarnings('ignore', message=f'leaderboard: no {collect.RESULTS_FILENAME}')
        rows = collect.build_rows(args.roots, reported=None,
                                  include_partial=args.include_partial) + published
    # beside the results: a results.json given as root writes next to it, not into the cwd
    first = args.roots[0]
    out = args.out or os.path.join(first if os.path.isdir(first) else os.path.dirname(
        os.path.abspath(first)), 'leaderboard')
    paths = render.write_all(rows, out, title=args.title)
    print(render.to_markdown(rows, title=args.title))
    summary = render.to_summary(rows)
    if summary:
        print(summary)
    measured = sum(r.kind == 'measured' for r in rows)
    if not measured:
        print(_no_results_message(args.roots, collect.RESULTS_FILENAME, bool(reported),
                                  args.include_partial))
    print(f'{measured} measured row(s); written: {paths["markdown"]}, {paths["csv"]}, '
          f'{paths["html"]}, {paths["summary"]}, ' + ', '.join(str(p) for p in paths['png']))
    return rows


def _no_results_message(roots, filename: str, reported: bool, include_partial: bool) -> str:
    """Why there is no measured row. Not an error: a suite without downstream stages (or
    whose downstream stages all failed, which it reports itself) still gets its table."""
    found = sum(1 if Path(root).is_file() else sum(1 for _ in Path(root).rglob(filename))
                for root in roots)
    where = ', '.join(str(root) for root in roots)
    holds = 'holds only the published rows' if reported else 'is empty (--no-reported)'
    if not found:
        return (f'No {filename} under {where} (no downstream run has finished yet?): the '
                f'table {holds}.')
    hint = '' if include_partial else '; --include-partial shows unfinished runs'
    return (f'None of the {found} {filename} file(s) under {where} is a finished, readable '
            f'result (see the warnings{hint}): the table {holds}.')


if __name__ == '__main__':
    main()
