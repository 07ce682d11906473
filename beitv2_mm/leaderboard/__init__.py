"""Leaderboard: collect downstream results files, add the published numbers, render tables.

See :mod:`beitv2_mm.leaderboard.collect` (inputs, row semantics) and
:mod:`beitv2_mm.leaderboard.render` (Markdown, CSV, HTML, PNG). The whole-chain runner that
feeds it is :mod:`beitv2_mm.suite` (``tools/run_suite.py``).
"""
from .collect import (METRIC_COLUMNS, MISSING, REPORTED_FILE, RESULTS_FILENAME,  # noqa: F401
                      STAGE_FILENAME, Result, Row, build_rows, canonical_task,
                      collect_results, load_result, measured_rows, reported_rows)
from .render import (to_csv, to_html, to_markdown, to_summary, render_charts,  # noqa: F401
                     write_all)
