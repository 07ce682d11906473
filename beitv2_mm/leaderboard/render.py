"""Render leaderboard rows as Markdown, CSV, a self-contained sortable HTML page and PNG charts.

Reported rows are always marked (``reported`` kind, a source) and measured rows always say
which data they ran on; synthetic rows carry a SYNTHETIC marker in every format, so they
cannot be mistaken for ImageNet / ADE20K / COCO numbers.
"""
from __future__ import annotations

import csv
import html
import io
import math
from pathlib import Path

from ..engine.checkpoint import atomic_write, atomic_write_text
from .collect import ALL_COLUMNS, HEADERS, METRIC_COLUMNS, MISSING, TASK_TITLES, Row

SYNTHETIC_NOTE = ('Rows marked SYNTHETIC ran on the generated synthetic data set (tiny models, '
                  'short schedules): they test the pipeline and rank methods on that data only; '
                  'they are not ImageNet / ADE20K / COCO numbers.')
REPORTED_NOTE = ('Rows of kind "reported" are published numbers (see Source), not runs of this '
                 'suite.')
MEASURED_NOTE = ('Measured rows give the last evaluation of each run (results.json "metrics"; '
                 '"best_metrics" there, or "validation.best_metrics" after a test run, holds '
                 'the best validation); the published BEiT / BEiT v2 fine-tune top-1 is the '
                 'best epoch of the official script (max_accuracy). '
                 'Every method is fine-tuned with one recipe per task, BEiT v2\'s '
                 '(configs/finetune_in1k.py, configs/upernet_ade20k.py); the published BEiT v1 '
                 'numbers used BEiT v1\'s own (ImageNet: lr 4e-3, configs/finetune_in1k_beitv1.py; '
                 'ADE20K: lr 7e-4, layer decay 0.65, configs/upernet_ade20k_beitv1.py).')
NO_MEASURED_NOTE = ('No measured rows: no finished downstream run\'s results.json was found '
                    '(none has run yet, or all failed).')


def _method_cell(row: Row) -> str:
    method = row.cell('method')
    if row.kind == 'reported':
        return f'{method} (reported)'
    if row.synthetic:
        return f'{method} [SYNTHETIC]'
    return method


def to_markdown(rows: list[Row], title: str = 'Leaderboard') -> str:
    """A Markdown table, measured rows first, with the notes on synthetic / reported rows."""
    columns = list(ALL_COLUMNS)
    lines = [f'# {title}', '', '| ' + ' | '.join(HEADERS[c] for c in columns) + ' |',
             '|' + '|'.join('---:' if c in {m.key for m in METRIC_COLUMNS} else '---'
                            for c in columns) + '|']
    for row in rows:
        cells = [_method_cell(row) if c == 'method' else row.cell(c) for c in columns]
        # a pipe would end the cell, a tag would be rendered
        cells = [str(c).replace('|', '\\|').replace('<', '&lt;') for c in cells]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', f'{MISSING}: no number (not run, or not published).', REPORTED_NOTE]
    if any(r.kind == 'measured' for r in rows):
        lines.append(MEASURED_NOTE)
    else:
        lines.append(NO_MEASURED_NOTE)
    if any(r.synthetic for r in rows):
        lines.append(SYNTHETIC_NOTE)
    return '\n'.join(lines) + '\n'


#: Method ids of the random-init baseline (rows are compared against it).
BASELINE_IDS = ('random_init', 'random', 'scratch', 'none')
#: Columns that are a top-1 accuracy on ``num_samples`` images (binomial noise estimate).
ACCURACY_COLUMNS = ('finetune_top1', 'linear_probe_top1')


def _two_se(p1: float, p2: float, n1, n2) -> float | None:
    """Twice the standard error (percentage points) of the difference of two accuracies."""
    if not n1 or not n2:
        return None
    a, b = p1 / 100, p2 / 100
    return 200 * math.sqrt(max(a * (1 - a), 0) / n1 + max(b * (1 - b), 0) / n2)


def to_summary(rows: list[Row]) -> str:
    """What the measured rows show: per task the ranking and each method's difference to the
    random-init baseline of the same data set, with the noise of top-1 differences (2 standard
    errors from the evaluated sample counts) so that a gap within noise is not read as a win.
    Verdicts on other columns (mIoU, AP) are marked as having no noise estimate. Columns where
    every value is below 1 are reported as having learned nothing. Rows on different data sets
    of one kind (``Row.data_set``) get a paragraph each: numbers on other data do not rank."""
    lines = []
    measured = [r for r in rows if r.kind == 'measured']
    for synthetic, data_set in dict.fromkeys(
            (s, r.data_set) for s in (True, False) for r in measured if r.synthetic == s):
        group = [r for r in measured if r.synthetic == synthetic and r.data_set == data_set]
        if len(group) < 2:
            continue
        base = next((r for r in group if r.method_id.lower() in BASELINE_IDS), None)
        which = f' ({data_set})' if data_set else ''
        # the paragraph names its data set: the methods in it need not
        name = {id(r): r.name_in_data_set or r.cell('method') for r in group}
        lines.append(f'What the measured rows on {"SYNTHETIC" if synthetic else "real"} data'
                     f'{which} show'
                     + (' (difference to random init in brackets):' if base else ':'))
        verdict: dict[str, dict[str, list[str]]] = {}
        for column in METRIC_COLUMNS:
            ranked = sorted((r for r in group if r.values.get(column.key) is not None),
                            key=lambda r: -r.values[column.key])
            if len(ranked) < 2:
                continue
            if all(r.values[column.key] < 1 for r in ranked):
                lines.append(f'  {column.title}: nothing learned (every value below 1)')
                continue
            base_value = base.values.get(column.key) if base else None
            parts = []
            for r in ranked:
                value = r.values[column.key]
                text = f'{name[id(r)]} {value:.1f}'
                if base_value is not None and r is not base:
                    # the difference as printed: rounding to zero gives +0.0 and "level",
                    # not -0.0 and "behind"
                    delta = round(value - base_value, 1) or 0.0
                    noise = (_two_se(value, base_value, r.samples.get(column.key),
                                     base.samples.get(column.key))
                             if column.key in ACCURACY_COLUMNS else None)
                    within = noise is not None and abs(delta) < noise
                    text += f' ({delta:+.1f}{", within noise" if within else ""})'
                    outcome = 'within noise' if within else ('ahead' if delta > 0 else
                                                             'behind' if delta < 0 else 'level')
                    if noise is None:  # mIoU / AP: no sample-size model, say so
                        outcome += ' (no noise estimate)'
                    verdict.setdefault(name[id(r)], {}).setdefault(outcome, []).append(
                        column.title)
                parts.append(text)
            noise_note = ''
            if column.key in ACCURACY_COLUMNS:
                sizes = sorted({r.samples.get(column.key) for r in ranked} - {None})
                if sizes:
                    noise_note = f'  [{"/".join(map(str, sizes))} images]'
            # '=' between values that print alike: a '>' would rank a tie
            shown = [round(r.values[column.key], 1) for r in ranked]
            line = parts[0]
            for prev, value, text in zip(shown, shown[1:], parts[1:]):
                line += (' = ' if value == prev else ' > ') + text
            lines.append(f'  {column.title}: ' + line + noise_note)
        for method, outcomes in verdict.items():
            said = '; '.join(f'{k} on {", ".join(v)}' for k, v in outcomes.items())
            lines.append(f'  {method} vs random init: {said}')
    return '\n'.join(lines) + ('\n' if lines else '')


def to_csv(rows: list[Row]) -> str:
    """CSV with one column per field; ``synthetic`` as its own column for filtering."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(list(ALL_COLUMNS) + ['synthetic'])
    for row in rows:
        writer.writerow([row.cell(c) for c in ALL_COLUMNS] + [str(row.synthetic).lower()])
    return buffer.getvalue()


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { color: #999; text-align: center; }
tr.reported { background: #f7f7ff; font-style: italic; }
tr.synthetic td.dataset { color: #a30; font-weight: bold; }
.badge { font-size: 11px; padding: 1px 5px; border-radius: 3px; margin-left: 4px; }
.badge.reported { background: #ddf; color: #225; }
.badge.synthetic { background: #fdd; color: #a30; }
"""

# Sorting: numbers numerically, text alphabetically, missing cells always last.
_HTML_SCRIPT = """
(function () {
  var table = document.getElementById('leaderboard');
  var headers = table.tHead.rows[0].cells;
  function key(cell) {
    var v = cell.getAttribute('data-value');
    if (v === null || v === '') return null;
    var n = parseFloat(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function sortBy(index) {
    var th = headers[index];
    var asc = th.getAttribute('aria-sort') !== 'ascending';
    for (var i = 0; i < headers.length; i++) headers[i].removeAttribute('aria-sort');
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index]), y = key(b.cells[index]);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  for (var i = 0; i < headers.length; i++) {
    (function (index) {
      headers[index].addEventListener('click', function () { sortBy(index); });
    })(i);
  }
  window.sortLeaderboard = sortBy;
  // "#sort=<column key>" (or "#sort=-<key>" for descending) sorts on load: a shareable view.
  var match = /sort=(-?)([\w]+)/.exec(window.location.hash || '');
  if (match) {
    for (var j = 0; j < headers.length; j++) {
      if (headers[j].getAttribute('data-key') === match[2]) {
        sortBy(j);
        if (match[1] === '-') sortBy(j);
      }
    }
  }
  table.setAttribute('data-sortable', 'ready');
})();
"""


def to_html(rows: list[Row], title: str = 'Leaderboard') -> str:
    """A self-contained HTML page (inline CSS and JS, no external resources)."""
    esc = html.escape
    metric_keys = {m.key for m in METRIC_COLUMNS}
    out = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
           f'<title>{esc(title)}</title>', f'<style>{_HTML_STYLE}</style>', '</head>',
           '<body>', f'<h1>{esc(title)}</h1>',
           f'<p>{esc(REPORTED_NOTE)} {esc(MISSING)}: no number. Click a header to sort.</p>']
    if any(r.kind == 'measured' for r in rows):
        out.append(f'<p>{esc(MEASURED_NOTE)}</p>')
    else:
        out.append(f'<p>{esc(NO_MEASURED_NOTE)}</p>')
    if any(r.synthetic for r in rows):
        out.append(f'<p class="synthetic-note"><strong>{esc(SYNTHETIC_NOTE)}</strong></p>')
    out += ['<table id="leaderboard">', '<thead>', '<tr>']
    out += [f'<th scope="col" data-key="{c}">{esc(HEADERS[c])}</th>' for c in ALL_COLUMNS]
    out += ['</tr>', '</thead>', '<tbody>']
    for row in rows:
        classes = [row.kind] + (['synthetic'] if row.synthetic else [])
        out.append(f'<tr class="{" ".join(classes)}">')
        for c in ALL_COLUMNS:
            text = row.cell(c)
            css = [c]
            if c in metric_keys:
                css.append('missing' if text == MISSING else 'num')
                value = '' if text == MISSING else text
            else:
                value = '' if text == MISSING else text
            inner = esc(text)
            if c == 'method':
                if row.kind == 'reported':
                    inner += ' <span class="badge reported">reported</span>'
                elif row.synthetic:
                    inner += ' <span class="badge synthetic">synthetic</span>'
            out.append(f'<td class="{" ".join(css)}" data-value="{esc(value)}">{inner}</td>')
        out.append('</tr>')
    out += ['</tbody>', '</table>', f'<script>{_HTML_SCRIPT}</script>', '</body>', '</html>']
    return '\n'.join(out) + '\n'


def render_charts(rows: list[Row], out_dir: str | Path) -> list[Path]:
    """One PNG bar chart per task that has a number: measured rows (left, with their data
    set) and published rows (right), on separate axes so they are not compared as equals.

    Returns:
        list[Path]: The PNG files written.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task, title in TASK_TITLES.items():
        columns = [c for c in METRIC_COLUMNS if c.task == task]
        panels = []
        for kind in ('measured', 'reported'):
            chosen = [r for r in rows if r.kind == kind
                      and any(r.values.get(c.key) is not None for c in columns)]
            if chosen:
                panels.append((kind, chosen))
        if not panels:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
        for ax, (kind, chosen) in zip(axes[0], panels):
            width = 0.8 / len(columns)
            for j, column in enumerate(columns):
                xs = [i + (j - (len(columns) - 1) / 2) * width for i in range(len(chosen))]
                ys = [r.values.get(column.key) or 0.0 for r in chosen]
                bars = ax.bar(xs, ys, width=width, label=column.title,
                              hatch='//' if kind == 'reported' else None)
                for bar, r in zip(bars, chosen):
                    value = r.values.get(column.key)
                    ax.annotate(MISSING if value is None else f'{value:.1f}',
                                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha='center', va='bottom', fontsize=8)
            labels = []
            for r in chosen:
                label = r.cell('method')
                if kind == 'measured' and r.synthetic:
                    label += '\n[SYNTHETIC]'
                labels.append(label)
            ax.set_xticks(range(len(chosen)))
            ax.set_xticklabels(labels, rotation=30, ha='right', fontsize=8)
            ax.set_ylabel(title)
            ax.set_title('measured (this suite)' if kind == 'measured'
                         else 'reported (published)')
            if len(columns) > 1:
                ax.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        path = out_dir / f'leaderboard_{task}.png'
        with atomic_write(path, 'wb') as f:
            fig.savefig(f, dpi=100, format='png')
        plt.close(fig)
        written.append(path)
    return written


def write_all(rows: list[Row], out_dir: str | Path, title: str = 'Leaderboard'
              ) -> dict[str, list[Path] | Path]:
    """Write ``leaderboard.md``, ``.csv``, ``.html``, ``leaderboard_summary.txt`` (what the
    measured rows show, :func:`to_summary`) and the PNG charts into ``out_dir``.

    Returns:
        dict: ``markdown``, ``csv``, ``html``, ``summary`` paths and ``png`` list.
    """
    out_dir = Path(out_dir)
    paths = dict(markdown=out_dir / 'leaderboard.md', csv=out_dir / 'leaderboard.csv',
                 html=out_dir / 'leaderboard.html', summary=out_dir / 'leaderboard_summary.txt')
    # one atomic writer for the project: a reader never sees half a table
    atomic_write_text(to_markdown(rows, title), paths['markdown'])
    atomic_write_text(to_csv(rows), paths['csv'])
    atomic_write_text(to_html(rows, title), paths['html'])
    atomic_write_text(to_summary(rows) or 'Fewer than two measured rows: nothing to compare.\n',
                      paths['summary'])
    paths['png'] = render_charts(rows, out_dir)
    return paths
