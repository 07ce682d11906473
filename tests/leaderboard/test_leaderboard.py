"""Leaderboard: results files -> rows -> Markdown, CSV, HTML, PNG; reported and missing cells."""
import csv
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from beitv2_mm.leaderboard import collect, render
from tool_module import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
#: A headless Chromium/Chrome; .ci/run installs Debian's ``chromium``. Outside CI the browser
#: test skips without one; on CI (``CI`` set) a missing browser is a failure, not a skip.
CHROMIUM = next((path for path in (shutil.which(name) for name in
                                   ('chromium', 'chromium-browser', 'google-chrome'))
                 if path), None)


#: the demo configs' data set names (DownstreamResultsHook dataset_name), per task
SYNTHETIC_NAMES = {'finetune': 'synthetic-ImageNet', 'linear_probe': 'synthetic-ImageNet',
                   'semantic_segmentation': 'synthetic-ADE20K',
                   'instance_segmentation': 'synthetic-COCO'}


def _write_result(path: Path, task: str, metrics: dict, method, checkpoint, synthetic=True,
                  final=True, timestamp='2026-11-22T10:00:00+00:00', dataset=None,
                  data_root=None, num_samples=None, details=None, iteration=None):
    """A results file in the schema of beitv2_mm.downstream.results_hook."""
    path.mkdir(parents=True, exist_ok=True)
    dataset = dataset or SYNTHETIC_NAMES[task]
    data_root = data_root or ('data/synthetic/imagenet' if synthetic else '/datasets/imagenet')
    payload = dict(schema='beitv2_mm.downstream.results/v1', task=task,
                   dataset=dict(name=dataset, data_root=data_root, synthetic=synthetic,
                                **({} if num_samples is None else dict(num_samples=num_samples))),
                   metrics=metrics, stage='val', final=final,
                   config=f'configs/demo/{task}_vit-tiny_synthetic.py',
                   pretrain=dict(checkpoint=checkpoint, method=method, method_source='test',
                                 **(details or {})),
                   timestamp=timestamp, iteration=iteration)
    (path / 'results.json').write_text(json.dumps(payload))


@pytest.fixture
def results_root(tmp_path):
    """BEiT v2: all four tasks (one cell twice, newest wins); random init: linear probe only;
    a real-ImageNet fine-tune of BEiT v2; a partial (non-final) run; a broken file."""
    root = tmp_path / 'work'
    ckpt = str(root / 'mim' / 'beitv2' / 'iter_40.pth')
    _write_result(root / 'beitv2' / 'lp', 'linear_probe', {'accuracy/top1': 41.25}, 'beitv2', ckpt)
    _write_result(root / 'beitv2' / 'ft_old', 'finetune', {'accuracy/top1': 10.0}, 'beitv2',
                  ckpt, timestamp='2026-11-22T09:00:00+00:00')
    _write_result(root / 'beitv2' / 'ft', 'finetune', {'accuracy/top1': 62.5}, 'beitv2', ckpt)
    _write_result(root / 'beitv2' / 'seg', 'semantic_segmentation', {'mIoU': 12.34}, 'beitv2',
                  ckpt, dataset='synthetic-ADE20K')
    _write_result(root / 'beitv2' / 'det', 'instance_segmentation',
                  {'coco/bbox_mAP': 0.051, 'coco/segm_mAP': 0.042}, 'beitv2', ckpt,
                  dataset='synthetic-COCO')
    _write_result(root / 'random' / 'lp', 'linear_probe', {'accuracy/top1': 20.0},
                  'random_init', None)
    _write_result(root / 'random' / 'partial', 'finetune', {'accuracy/top1': 99.0},
                  'random_init', None, final=False, iteration=3)
    _write_result(root / 'real' / 'ft', 'finetune', {'accuracy/top1': 80.5}, 'beitv2',
                  '/ckpts/beitv2_real.pth', synthetic=False, dataset='ImageNet-1K')
    (root / 'broken').mkdir()
    (root / 'broken' / 'results.json').write_text('{not json')
    return root


def _rows(root):
    with pytest.warns(UserWarning, match='unreadable'):
        return collect.build_rows([root])


def test_rows_group_measured_and_keep_reported_separate(results_root):
    rows = _rows(results_root)
    measured = [r for r in rows if r.kind == 'measured']
    reported = [r for r in rows if r.kind == 'reported']
    assert len(measured) == 3  # beitv2 synthetic, beitv2 real, random init
    assert len(reported) == len(list(csv.DictReader(open(collect.REPORTED_FILE))))
    assert rows.index(measured[-1]) < rows.index(reported[0])  # measured first, never mixed

    beitv2 = next(r for r in measured if r.cells['method'] == 'BEiT v2' and r.synthetic)
    assert beitv2.values['finetune_top1'] == pytest.approx(62.5)  # newest result wins
    assert beitv2.values['coco_ap_box'] == pytest.approx(5.1)  # mmdet fraction -> percent
    assert beitv2.values['coco_ap_mask'] == pytest.approx(4.2)  # the mask AP too
    assert beitv2.cell('ade20k_miou') == '12.3'
    assert 'SYNTHETIC' in beitv2.cell('dataset')

    real = next(r for r in measured if not r.synthetic)
    assert 'SYNTHETIC' not in real.cell('dataset') and 'ImageNet-1K' in real.cell('dataset')
    assert real.cell('linear_probe_top1') == collect.MISSING

    random = next(r for r in measured if r.cells['method'] == 'Random init')
    assert random.values['finetune_top1'] is None  # the non-final run is left out
    assert random.cell('finetune_top1') == collect.MISSING

    peco = next(r for r in reported if r.cells['method'] == 'PeCo')
    assert peco.cell('linear_probe_top1') == collect.MISSING
    assert peco.cell('source')
    assert all(r.cells['source'] for r in reported)


def test_summary_ranks_against_random_init_with_noise(tmp_path):
    """The end-of-suite summary: ranking per task, difference to random init, a top-1 gap
    within two standard errors called noise, all-zero columns called unlearned."""
    root = tmp_path / 'work'
    for method, ft, lp, ap in (('beitv2', 74.5, 51.5, 0.001), ('peco', 51.0, 73.0, 0.0),
                               ('random_init', 71.0, 33.5, 0.0)):
        ckpt = None if method == 'random_init' else str(root / 'mim' / method / 'it.pth')
        for task, metrics in (('finetune', {'accuracy/top1': ft}),
                              ('linear_probe', {'accuracy/top1': lp}),
                              ('instance_segmentation', {'coco/bbox_mAP': ap}),
                              ('semantic_segmentation', {'mIoU': lp / 2})):
            _write_result(root / method / task, task, metrics, method, ckpt)
            result = root / method / task / 'results.json'
            payload = json.loads(result.read_text())
            payload['dataset']['num_samples'] = 200
            result.write_text(json.dumps(payload))
    rows = collect.build_rows([root], reported=None)
    assert {r.method_id for r in rows} == {'beitv2', 'peco', 'random_init'}
    text = render.to_summary(rows)
    lines = text.splitlines()
    assert lines[0].startswith('What the measured rows on SYNTHETIC data show')
    ft = next(line for line in lines if line.strip().startswith('IN-1K fine-tune'))
    # 74.5 vs 71.0 on 200 images each: 2 SE = 8.8 points -> noise; 51 vs 71: behind
    assert ft.index('BEiT v2 74.5 (+3.5, within noise)') < ft.index('Random init 71.0') \
        < ft.index('PeCo 51.0 (-20.0)')
    assert '[200 images]' in ft
    lp = next(line for line in lines if line.strip().startswith('Linear probe'))
    assert 'PeCo 73.0 (+39.5)' in lp and 'BEiT v2 51.5 (+18.0)' in lp
    assert 'COCO AP box: nothing learned' in text
    assert 'COCO AP mask' not in text  # no values at all: no line
    assert 'BEiT v2 vs random init: within noise on IN-1K fine-tune top-1; ahead on Linear ' \
           'probe top-1' in text
    assert 'PeCo vs random init: behind on IN-1K fine-tune top-1; ahead on Linear probe ' \
           'top-1; ahead (no noise estimate) on ADE20K mIoU' in text
    # no baseline: a ranking without differences; a single row: nothing to say
    no_base = [r for r in rows if r.method_id != 'random_init']
    assert '(+' not in render.to_summary(no_base) and 'BEiT v2' in render.to_summary(no_base)
    assert render.to_summary(rows[:1]) == ''


def test_malformed_results_are_skipped_with_a_warning(results_root, tmp_path):
    """Valid JSON of the wrong shape (a hand-edited or truncated-then-rewritten file) is
    skipped like unreadable JSON, not a crash of the whole table."""
    bad = {'metrics_null': '{"task": "finetune", "metrics": null}',
           'a_number': '42',
           'dataset_list': '{"task": "finetune", "metrics": {"accuracy/top1": 1.0}, '
                           '"dataset": [1]}'}
    for name, text in bad.items():
        (results_root / name).mkdir()
        (results_root / name / 'results.json').write_text(text)
    with pytest.warns(UserWarning) as record:
        rows = collect.build_rows([results_root])
    messages = ' '.join(str(w.message) for w in record)
    for name in bad:
        assert f'{name}/results.json' in messages, name
    assert '"metrics" is a NoneType' in messages and 'a JSON int' in messages
    assert len([r for r in rows if r.kind == 'measured']) == 3  # the good ones, as before
    # a mistyped root says so instead of giving an empty table in silence
    with pytest.warns(UserWarning, match='does not exist'):
        collect.collect_results([tmp_path / 'no_such_dir'])


def test_two_checkpoints_of_one_method_are_told_apart(tmp_path):
    """Two BEiT v2 pretrains evaluated side by side: two rows that name their checkpoints, and
    a summary line for each (not one line listing a column twice)."""
    root = tmp_path / 'runs'
    for name, ckpt, top1 in (('a', '/w/beitv2_300e/epoch_300.pth', 60.0),
                             ('b', '/w/beitv2_1600e/epoch_300.pth', 70.0)):
        _write_result(root / name, 'linear_probe', {'accuracy/top1': top1}, 'beitv2', ckpt)
    _write_result(root / 'random', 'linear_probe', {'accuracy/top1': 10.0}, 'random_init', None)
    rows = collect.build_rows([root], reported=None)
    methods = sorted(r.cells['method'] for r in rows)
    assert methods == ['BEiT v2 (beitv2_1600e/epoch_300.pth)',
                       'BEiT v2 (beitv2_300e/epoch_300.pth)', 'Random init'], methods
    summary = render.to_summary(rows)
    assert 'BEiT v2 (beitv2_300e/epoch_300.pth) vs random init: ahead (no noise' in summary
    assert 'BEiT v2 (beitv2_1600e/epoch_300.pth) vs random init: ahead (no noise' in summary
    assert 'top-1, Linear probe top-1' not in summary


def test_competing_results_for_one_cell_are_named(results_root):
    """Two fine-tunes of one pretrain on one data set (a smoke run beside a full one): the
    newest fills the cell, and a warning names both work dirs and which was taken."""
    with pytest.warns(UserWarning) as record:
        collect.build_rows([results_root], reported=None)
    messages = [str(w.message) for w in record if 'results for one row' in str(w.message)]
    assert len(messages) == 1, messages  # the other cells have one result each
    newest = results_root / 'beitv2' / 'ft'
    assert str(results_root / 'beitv2' / 'ft_old') in messages[0]
    assert f'The newest, {newest}, fills the cell' in messages[0]
    assert messages[0].startswith('leaderboard: 2 finetune results for one row (beitv2 pretrain')


def test_rows_outside_the_suite_take_the_checkpoints_details(tmp_path):
    """A downstream run the suite did not make: tokenizer, backbone and pretrain length come
    from what results.json recorded of the pretrain checkpoint's meta; a suite manifest beside
    the result wins over them."""
    root = tmp_path / 'runs'
    details = dict(tokenizer='VQ-KD', backbone='ViT-B/16', epochs=300, config='beitv2_vitb_mim.py')
    _write_result(root / 'ft', 'finetune', {'accuracy/top1': 80.0}, 'beitv2',
                  '/ckpts/beitv2_300e.pth', details=details)
    _write_result(root / 'lp', 'linear_probe', {'accuracy/top1': 60.0}, 'beitv2',
                  '/ckpts/beitv2_1600e.pth', details=dict(tokenizer='VQ-KD', iters=5000))
    (root / 'lp' / collect.STAGE_FILENAME).write_text(json.dumps(dict(
        pretrain=dict(tokenizer='VQ-KD (ViT-tiny)', iters=2400))))
    rows = {r.cells['method']: r for r in collect.build_rows([root], reported=None)}
    ft = rows['BEiT v2 (beitv2_300e.pth)']
    assert (ft.cell('tokenizer'), ft.cell('backbone'), ft.cell('pretrain_epochs')) == (
        'VQ-KD', 'ViT-B/16', '300')
    assert ft.cell('config') == 'pretrain: beitv2_vitb_mim.py'  # not the fine-tune's config
    lp = rows['BEiT v2 (beitv2_1600e.pth)']
    assert (lp.cell('tokenizer'), lp.cell('pretrain_epochs')) == ('VQ-KD (ViT-tiny)', '2400 iters')


def test_partial_results_on_request(results_root):
    with pytest.warns(UserWarning):
        rows = collect.build_rows([results_root], reported=None, include_partial=True)
    random = next(r for r in rows if r.method_id == 'random_init')
    assert random.values['finetune_top1'] == pytest.approx(99.0)
    # the cell of an unfinished run says so, wherever the row's name is shown
    assert random.cells['method'] == 'Random init (unfinished: finetune at iteration 3)'
    assert 'unfinished run' in random.cells['source']
    assert 'unfinished' in render.to_markdown(rows) and 'unfinished' in render.to_html(rows)


def test_a_finished_result_fills_the_cell_before_a_newer_unfinished_one(tmp_path):
    """With --include-partial a run still training (newer, \"final\": false) must not replace
    the finished run's number of the same cell; it fills only cells nothing finished fills."""
    root, ckpt = tmp_path / 'work', '/ckpts/beitv2.pth'
    _write_result(root / 'ft_done', 'finetune', {'accuracy/top1': 60.0}, 'beitv2', ckpt,
                  timestamp='2026-11-22T09:00:00+00:00')
    _write_result(root / 'ft_running', 'finetune', {'accuracy/top1': 5.0}, 'beitv2', ckpt,
                  final=False, iteration=2, timestamp='2026-11-22T11:00:00+00:00')
    _write_result(root / 'lp_running', 'linear_probe', {'accuracy/top1': 7.0}, 'beitv2', ckpt,
                  final=False, iteration=1, timestamp='2026-11-22T11:00:00+00:00')
    with pytest.warns(UserWarning, match='2 finetune results for one row'):
        (row, ) = collect.build_rows([root], reported=None, include_partial=True)
    assert row.values['finetune_top1'] == pytest.approx(60.0)
    assert row.values['linear_probe_top1'] == pytest.approx(7.0)
    assert row.partial == 'unfinished: linear_probe at iteration 1'


def test_task_names_map_to_columns():
    assert collect.canonical_task('semantic_segmentation') == 'ade20k'
    assert collect.canonical_task('instance_segmentation') == 'coco'
    assert collect.canonical_task('linear_probe') == 'linear_probe'
    assert collect.canonical_task('finetune') == 'finetune'
    assert collect.canonical_task('mask_rcnn') == 'coco'
    assert collect.canonical_task('upernet') == 'ade20k'
    assert collect.canonical_task('imagenet') == 'finetune'  # ImageNet classification
    assert collect.canonical_task('pose') is None


def test_reported_file_needs_sources(tmp_path):
    bad = tmp_path / 'reported.csv'
    header = open(collect.REPORTED_FILE).readline()
    bad.write_text(header + 'X,VQ-KD,–,ViT-B/16,300,85.0,–,–,–,–,\n')
    with pytest.raises(ValueError, match='source'):
        collect.reported_rows(bad)


def test_markdown_and_csv(results_root):
    rows = _rows(results_root)
    md = render.to_markdown(rows)
    table = [line for line in md.splitlines() if line.startswith('|')]
    assert len(table) == 2 + len(rows)
    assert all(line.count('|') == table[0].count('|') for line in table)
    assert '(reported)' in md and '[SYNTHETIC]' in md and render.SYNTHETIC_NOTE in md
    # measured = last evaluation, published fine-tune = best epoch: the table says so
    assert render.MEASURED_NOTE in md
    assert html.escape(render.MEASURED_NOTE) in render.to_html(rows)
    reported_only = [r for r in rows if r.kind == 'reported']
    assert render.MEASURED_NOTE not in render.to_markdown(reported_only)
    assert 'ADE20K mIoU' in table[0] and 'COCO AP box' in table[0]

    reader = csv.DictReader(io.StringIO(render.to_csv(rows)))
    parsed = list(reader)
    assert len(parsed) == len(rows)
    # every column of the table (the measured / reported source last), then the flag
    assert reader.fieldnames == list(collect.ALL_COLUMNS) + ['synthetic']
    assert [p['source'] for p in parsed] == [r.cell('source') for r in rows]
    assert all(p['source'] != collect.MISSING for p in parsed)
    kinds = [p['kind'] for p in parsed]
    assert kinds.count('reported') == sum(r.kind == 'reported' for r in rows)
    syn = [p for p in parsed if p['synthetic'] == 'true']
    assert syn and all('SYNTHETIC' in p['dataset'] for p in syn)
    assert all(p['synthetic'] == 'false' for p in parsed if p['kind'] == 'reported')
    beitv2_1600 = next(p for p in parsed if p['kind'] == 'reported'
                       and p['method'] == 'BEiT v2 (1600 epochs)')
    assert beitv2_1600['coco_ap_box'] == collect.MISSING


class _TableParser(HTMLParser):
    """Collects the structure of the page: tags, table cells, external references."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.external = [], [], []
        self.headers, self.rows, self.row_classes = [], [], []
        self.scripts = 0
        self._cell = None

    VOID = {'meta', 'br', 'img', 'link', 'input', 'hr'}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ('src', 'href'):
            if attrs.get(key):
                self.external.append(attrs[key])
        if tag == 'script':
            self.scripts += 1
        if tag == 'tr' and self.stack and self.stack[-1] == 'tbody':
            self.rows.append([])
            self.row_classes.append(attrs.get('class', ''))
        if tag in ('td', 'th'):
            self._cell = ''
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f'unbalanced </{tag}> with open {self.stack[-3:]}')
            return
        self.stack.pop()
        if tag == 'th':
            self.headers.append(self._cell.strip())
        elif tag == 'td':
            self.rows[-1].append(self._cell.strip())

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_html_is_valid_self_contained_and_sortable(results_root, tmp_path):
    rows = _rows(results_root)
    page = render.to_html(rows)
    assert page.startswith('<!DOCTYPE html>')
    parser = _TableParser()
    parser.feed(page)
    parser.close()
    assert not parser.errors and not parser.stack
    assert parser.external == []  # no CDN, no external stylesheet or script
    assert parser.scripts == 1 and 'sortLeaderboard' in page
    assert len(parser.headers) == len(collect.ALL_COLUMNS)
    assert len(parser.rows) == len(rows)
    assert all(len(r) == len(parser.headers) for r in parser.rows)
    method_col = parser.headers.index('Method')
    for cells, classes in zip(parser.rows, parser.row_classes):
        if 'reported' in classes.split():
            assert 'reported' in cells[method_col]
        if 'synthetic' in classes.split():
            assert 'synthetic' in cells[method_col]
    assert any(collect.MISSING == c for r in parser.rows for c in r)
    # the sort key of a cell without a number is empty: the script sorts those last (a '–'
    # would be sorted as text among the numbers)
    for column in collect.METRIC_COLUMNS:
        for cell in re.findall(rf'<td class="{column.key} (\w+)" data-value="([^"]*)">', page):
            assert cell == ('missing', '') or (cell[0] == 'num' and float(cell[1]) >= 0), cell
    assert 'class="finetune_top1 missing" data-value=""' in page


def test_write_all_and_cli(results_root, tmp_path):
    out = tmp_path / 'board'
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'tools' / 'leaderboard.py'), str(results_root),
         '--out', str(out)], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert '| measured | BEiT v2 [SYNTHETIC]' in proc.stdout
    for name in ('leaderboard.md', 'leaderboard.csv', 'leaderboard.html'):
        assert (out / name).stat().st_size > 0
    summary = (out / 'leaderboard_summary.txt').read_text()
    assert summary.startswith('What the measured rows on SYNTHETIC data show')
    assert 'Linear probe top-1: BEiT v2 41.2 (+21.2)' in summary and summary in proc.stdout
    pngs = sorted(p.name for p in out.glob('*.png'))
    assert pngs == ['leaderboard_ade20k.png', 'leaderboard_coco.png',
                    'leaderboard_finetune.png', 'leaderboard_linear_probe.png']
    import matplotlib.image as mpimg
    for png in out.glob('*.png'):
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        image = mpimg.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_html_opens_in_headless_browser(results_root, tmp_path):
    if CHROMIUM is None:
        message = ('the headless browser check needs chromium on PATH '
                   '(Debian: apt-get install chromium; .ci/run installs it)')
        if os.environ.get('CI'):
            pytest.fail(message)
        pytest.skip(message)
    rows = _rows(results_root)
    page = tmp_path / 'leaderboard.html'
    page.write_text(render.to_html(rows))
    profile = tmp_path / 'profile'
    proc = subprocess.run(
        [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', f'--user-data-dir={profile}',
         '--dump-dom', f'file://{page}#sort=-finetune_top1'],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-sortable="ready"' in dom  # the inline script ran without error
    parser = _TableParser()
    parser.feed(dom)
    column = parser.headers.index('IN-1K fine-tune top-1')
    values = [float(r[column].split()[0]) for r in parser.rows if r[column] != collect.MISSING]
    assert values == sorted(values, reverse=True) and len(values) > 2
    missing_after = [r[column] for r in parser.rows][len(values):]
    assert all(v == collect.MISSING for v in missing_after)
    shutil.rmtree(profile, ignore_errors=True)


def _leaderboard_tool():
    """tools/leaderboard.py as a module: its main() in this process (no interpreter start)."""
    return load_tool('leaderboard')


def test_cli_missing_work_dir_fails_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """A mistyped work dir is an error naming it, not an empty leaderboard in the current
    directory."""
    monkeypatch.chdir(tmp_path)
    tool = _leaderboard_tool()
    missing = tmp_path / 'no_such_dir'
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(missing)])
    message = str(exit_info.value.code)
    assert exit_info.value.code not in (0, None)
    assert f'{missing} does not exist' in message and 'results.json' in message, message
    # one missing among existing ones fails the same way
    (tmp_path / 'runs').mkdir()
    with pytest.raises(SystemExit, match='no_such_dir does not exist'):
        tool.main([str(tmp_path / 'runs'), str(missing), '--out', str(tmp_path / 'board')])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['runs']  # nothing written
    assert not list((tmp_path / 'runs').iterdir())
    # the script itself exits with a status
    proc = subprocess.run([sys.executable, str(REPO_ROOT / 'tools' / 'leaderboard.py'),
                           str(missing)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 1 and f'{missing} does not exist' in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['runs']


def test_cli_work_dir_without_results(tmp_path, capsys):
    """A work dir with no results yet (a suite without downstream stages, or before any has
    finished) is not an error: the suite still gets its table, with only the published rows,
    and the tool says why."""
    tool = _leaderboard_tool()
    work = tmp_path / 'work'
    (work / 'mim' / 'beitv2').mkdir(parents=True)
    rows = tool.main([str(work)])
    out = capsys.readouterr().out
    assert rows and all(r.kind == 'reported' for r in rows)
    assert (f'No results.json under {work} (no downstream run has finished yet?): the table '
            'holds only the published rows.') in out
    md = (work / 'leaderboard' / 'leaderboard.md').read_text()
    assert render.NO_MEASURED_NOTE in md and '(reported)' in md
    page = (work / 'leaderboard' / 'leaderboard.html').read_text()
    assert html.escape(render.NO_MEASURED_NOTE) in page
    # results that are there but not usable: said differently
    _write_result(work / 'lp', 'linear_probe', {'accuracy/top1': 5.0}, 'beitv2', None,
                  final=False)
    tool.main([str(work), '--no-reported'])
    out = capsys.readouterr().out
    assert (f'None of the 1 results.json file(s) under {work} is a finished, readable result'
            in out and '--include-partial' in out and 'the table is empty' in out), out


def test_summary_difference_rounding_to_zero_has_no_sign_flip(tmp_path):
    """-0.04 points to random init prints as +0.0 and counts as level (not -0.0, behind)."""
    root = tmp_path / 'runs'
    for method, miou in (('random_init', 30.0), ('beitv2', 29.96), ('peco', 30.04),
                         ('beitv1', 29.0)):
        ckpt = None if method == 'random_init' else f'/w/{method}.pth'
        _write_result(root / method, 'semantic_segmentation', {'mIoU': miou}, method, ckpt,
                      dataset='synthetic-ADE20K')
    summary = render.to_summary(collect.build_rows([root], reported=None))
    assert '-0.0' not in summary, summary
    assert 'BEiT v2 30.0 (+0.0)' in summary and 'PeCo 30.0 (+0.0)' in summary
    assert 'BEiT v1 29.0 (-1.0)' in summary
    assert 'BEiT v2 vs random init: level (no noise estimate) on ADE20K mIoU' in summary
    assert 'BEiT v1 vs random init: behind (no noise estimate)' in summary


def _suite_results(root: Path, data: str, size: int, scale: float, hour: int,
                   methods=('beitv2', 'random_init')):
    """The linear probe and UperNet results of one suite on the synthetic set in ``data``
    with ``size`` evaluated images."""
    for method in methods:
        ckpt = None if method == 'random_init' else f'/w/mim/{method}/iter_40.pth'
        for task, name, metrics, folder in (
                ('linear_probe', 'synthetic-ImageNet', {'accuracy/top1': 40 * scale},
                 'imagenet'),
                ('semantic_segmentation', 'synthetic-ADE20K', {'mIoU': 20 * scale}, 'ade20k')):
            value = {k: v + (5 if method == 'beitv2' else 0) for k, v in metrics.items()}
            _write_result(root / method / task, task, value, method, ckpt, dataset=name,
                          data_root=f'{data}/{folder}', num_samples=size,
                          timestamp=f'2026-11-22T{hour:02d}:00:00+00:00')


def test_runs_on_different_data_sets_are_separate_rows(tmp_path):
    """The same method (and checkpoint) measured on two synthetic folders, or on two sizes of
    the set in one folder, gives a row per data set that says which, never one row whose
    cells come from different data; every row of a kind with several data sets names its own;
    the summary compares within a data set only."""
    root = tmp_path / 'work'
    _suite_results(root / 'a', 'data/synthetic', 500, 1.0, hour=1)
    _suite_results(root / 'b', 'data/synthetic_small', 500, 0.5, hour=2)
    rows = collect.build_rows([root], reported=None)
    by_name = {r.cells['method']: r for r in rows}
    assert sorted(by_name) == ['BEiT v2 (synthetic)', 'BEiT v2 (synthetic_small)',
                               'Random init (synthetic)', 'Random init (synthetic_small)']
    small = by_name['BEiT v2 (synthetic_small)']
    assert small.values['linear_probe_top1'] == pytest.approx(25.0)  # not a's 45
    assert small.values['ade20k_miou'] == pytest.approx(15.0)
    assert small.cell('dataset') == ('SYNTHETIC (synthetic-ImageNet n=500, synthetic-ADE20K '
                                     'n=500) at data/synthetic_small')
    assert by_name['BEiT v2 (synthetic)'].values['linear_probe_top1'] == pytest.approx(45.0)
    summary = render.to_summary(rows)
    paragraphs = summary.split('What the measured rows')[1:]
    assert [p.split(' show')[0] for p in paragraphs] == [' on SYNTHETIC data (synthetic)',
                                                        ' on SYNTHETIC data (synthetic_small)']
    assert 'BEiT v2 45.0 (+5.0, within noise) > Random init 40.0' in paragraphs[0]
    assert 'BEiT v2 25.0 (+5.0, within noise) > Random init 20.0' in paragraphs[1]

    # the set regenerated at another size in the same folder (n differs): rows apart too,
    # even for a method measured there on one task only
    root = tmp_path / 'resized'
    _suite_results(root / 'demo', 'data/synthetic', 500, 1.0, hour=1)
    _suite_results(root / 'tiny', 'data/synthetic', 50, 0.5, hour=2)
    _write_result(root / 'tiny' / 'peco', 'linear_probe', {'accuracy/top1': 33.0}, 'peco',
                  '/w/mim/peco/iter_40.pth', data_root='data/synthetic/imagenet',
                  num_samples=50, timestamp='2026-11-22T03:00:00+00:00')
    rows = collect.build_rows([root], reported=None)
    names = sorted(r.cells['method'] for r in rows)
    assert names == ['BEiT v2 (n=50/50)', 'BEiT v2 (n=500/500)', 'PeCo (n=50/50)',
                     'Random init (n=50/50)', 'Random init (n=500/500)'], names
    tiny = [r for r in rows if r.data_set == 'n=50/50']
    assert {r.method_id for r in tiny} == {'beitv2', 'random_init', 'peco'}
    assert all('synthetic-ImageNet n=50' in r.cell('dataset') for r in tiny)
    assert all('n=500' not in r.cell('dataset') for r in tiny)
    assert 'Linear probe top-1: PeCo 33.0 (+13.0' in render.to_summary(rows)

    # one real checkpoint fine-tuned on two ImageNet copies: the roots tell the rows apart
    root = tmp_path / 'real'
    for name, data_root, top1 in (('full', '/data/imagenet', 80.0),
                                  ('subset', '/data/imagenet100', 88.0)):
        _write_result(root / name, 'finetune', {'accuracy/top1': top1}, 'beitv2',
                      '/ckpts/beitv2.pth', synthetic=False, dataset='ImageNet-1K',
                      data_root=data_root)
    rows = collect.build_rows([root], reported=None)
    assert sorted((r.cells['method'], r.values['finetune_top1']) for r in rows) == [
        ('BEiT v2 (imagenet)', 80.0), ('BEiT v2 (imagenet100)', 88.0)]


def test_one_suite_stays_one_row_per_method(results_root):
    """Results of one suite (ImageNet, ADE20K and COCO runs, reruns on the same data) are one
    data set: no data words in the names, one summary paragraph per data kind."""
    rows = _rows(results_root)
    assert all(r.data_set == '' for r in rows)
    measured = [r.cells['method'] for r in rows if r.kind == 'measured']
    assert sorted(measured) == ['BEiT v2', 'BEiT v2', 'Random init']


def test_result_without_a_pretrain_method_is_not_random_init(tmp_path):
    """A tested checkpoint whose origin is unknown (results.json pretrain method null) gets its
    own row, not the random-init baseline's."""
    from beitv2_mm.leaderboard import collect

    root = tmp_path / 'work'
    _write_result(root / 'random' / 'lp', 'linear_probe', {'accuracy/top1': 20.0},
                  'random_init', None)
    _write_result(root / 'tested' / 'lp', 'linear_probe', {'accuracy/top1': 55.0}, None, None)
    rows = {r.cells['method']: r for r in collect.build_rows([root], reported=None)}
    assert rows['Random init'].values['linear_probe_top1'] == 20.0
    assert rows['Unknown pretrain'].values['linear_probe_top1'] == 55.0
    assert rows['Unknown pretrain'].method_id == 'unknown'

    # two tested checkpoints of unknown origin are two rows, named by the tested file
    for name, top1 in (('a', 61.0), ('b', 62.0)):
        path = root / 'tests' / name
        _write_result(path, 'linear_probe', {'accuracy/top1': top1}, None, None)
        data = json.loads((path / 'results.json').read_text())
        data.update(stage='test', evaluated_checkpoint=f'work_dirs/probe_{name}/iter_9.pth')
        (path / 'results.json').write_text(json.dumps(data))
    shutil.rmtree(root / 'tested')
    rows = {r.cells['method']: r.values['linear_probe_top1']
            for r in collect.build_rows([root], reported=None)}
    assert rows == {'Random init': 20.0, 'Unknown pretrain (probe_a/iter_9.pth)': 61.0,
                    'Unknown pretrain (probe_b/iter_9.pth)': 62.0}, rows


def test_summary_writes_a_tie_as_equal(tmp_path):
    """Two methods at the same printed value are '=' in the summary line, not ranked '>'."""
    root = tmp_path / 'work'
    for method in ('beitv1', 'peco'):
        _write_result(root / method / 'linear_probe', 'linear_probe', {'accuracy/top1': 10.0},
                      method, f'/w/mim/{method}/iter_2.pth', dataset='synthetic-ImageNet',
                      data_root='data/synthetic/imagenet', num_samples=20,
                      timestamp='2026-11-24T01:00:00+00:00')
    _write_result(root / 'beitv2' / 'linear_probe', 'linear_probe', {'accuracy/top1': 12.0},
                  'beitv2', '/w/mim/beitv2/iter_2.pth', dataset='synthetic-ImageNet',
                  data_root='data/synthetic/imagenet', num_samples=20,
                  timestamp='2026-11-24T01:00:00+00:00')
    summary = render.to_summary(collect.build_rows([root], reported=None))
    line = next(x for x in summary.splitlines() if 'Linear probe' in x)
    assert ' > ' in line and ' = ' in line
    assert line.index('12.0') < line.index(' > ') < line.index(' = ')


def test_results_on_other_data_sets_have_no_column(tmp_path):
    """A fine-tune on CIFAR-100 or a segmentation on Cityscapes is no IN-1K / ADE20K number:
    left out naming the file; a task's results on two ImageNet-named sets are two rows."""
    root = tmp_path / 'work'
    ckpt = '/w/mim/beitv2/iter_2.pth'
    _write_result(root / 'lp', 'linear_probe', {'accuracy/top1': 60.0}, 'beitv2', ckpt,
                  synthetic=False, dataset='ImageNet-1K', data_root='/data/in1k')
    _write_result(root / 'cifar', 'finetune', {'accuracy/top1': 91.0}, 'beitv2', ckpt,
                  synthetic=False, dataset='CIFAR-100', data_root='/data/cifar')
    _write_result(root / 'city', 'semantic_segmentation', {'mIoU': 80.0}, 'beitv2', ckpt,
                  synthetic=False, dataset='Cityscapes', data_root='/data/city')
    _write_result(root / 'ft', 'finetune', {'accuracy/top1': 83.0}, 'beitv2', ckpt,
                  synthetic=False, dataset='ImageNet-1K', data_root='/data/in1k')
    _write_result(root / 'ft100', 'finetune', {'accuracy/top1': 88.0}, 'beitv2', ckpt,
                  synthetic=False, dataset='imagenet-100', data_root='/data/in100',
                  timestamp='2026-11-22T11:00:00+00:00')
    with pytest.warns(UserWarning) as said:
        rows = collect.build_rows([root], reported=None)
    text = ' '.join(str(w.message) for w in said)
    assert str(root / 'cifar' / 'results.json') in text and "'CIFAR-100'" in text
    assert str(root / 'city' / 'results.json') in text and 'for ADE20K' in text
    assert sorted((r.values['finetune_top1'], r.values['linear_probe_top1']) for r in rows) == [
        (83.0, 60.0), (88.0, None)]
    assert not any(r.values['ade20k_miou'] for r in rows)


def test_synthetic_is_judged_when_a_results_file_does_not_say(tmp_path):
    def load(dataset):
        path = tmp_path / 'r.json'
        path.write_text(json.dumps(dict(task='finetune', dataset=dataset,
                                        metrics={'accuracy/top1': 50.0})))
        return collect.load_result(path)

    assert load({'name': 'ImageNet', 'data_root': '/x/synthetic/imagenet'}).synthetic
    assert load('synthetic-ImageNet').synthetic  # a plain string names the data set
    assert not load({'name': 'ImageNet-1K', 'data_root': '/data/imagenet'}).synthetic
    assert not load({'name': 'synthetic-ImageNet', 'synthetic': 'false'}).synthetic
    assert load({'name': 'ImageNet', 'synthetic': 'True'}).synthetic
    with pytest.warns(UserWarning, match='"dataset.synthetic" is \'maybe\''):
        assert load({'name': 'ImageNet', 'synthetic': 'maybe'}) is None


def test_numbers_that_are_not_finite_leave_the_cell_empty(tmp_path):
    root = tmp_path / 'work'
    for method, value in (('a', 50.0), ('b', float('nan')), ('c', 70.0), ('d', float('inf')),
                          ('e', 60.0)):
        path = root / method
        path.mkdir(parents=True)
        # json writes NaN / Infinity, which Python's json reads back
        (path / 'results.json').write_text(json.dumps(dict(
            task='linear_probe', dataset={'name': 'ImageNet-1K', 'synthetic': False},
            metrics={'accuracy/top1': value}, pretrain_checkpoint=f'/w/{method}.pth',
            pretrain_method=method)))
    with pytest.warns(UserWarning, match='not a number'):
        rows = collect.build_rows([root], reported=None)
    values = {r.method_id: r.values['linear_probe_top1'] for r in rows}
    assert values == {'a': 50.0, 'b': None, 'c': 70.0, 'd': None, 'e': 60.0}
    summary = render.to_summary(rows)
    assert 'c 70.0 > e 60.0 > a 50.0' in summary and 'nan' not in summary.lower()


def test_names_with_line_breaks_and_tags_stay_one_markdown_row(tmp_path):
    root = tmp_path / 'work'
    _write_result(root / 'a', 'linear_probe', {'accuracy/top1': 50.0}, 'beitv2', '/w/a.pth',
                  details=None)
    stage = root / 'a' / collect.STAGE_FILENAME
    stage.write_text(json.dumps(dict(pretrain=dict(name='My\nmethod <b>x</b> | y'))))
    rows = collect.build_rows([root], reported=None)
    md = render.to_markdown(rows)
    row_lines = [line for line in md.splitlines() if line.startswith('| measured')]
    assert len(row_lines) == 1
    assert 'My method &lt;b>x&lt;/b> \\| y' in row_lines[0] and '<b>' not in md


def test_task_aliases_of_segmentation_and_detection_and_unread_metrics(tmp_path):
    assert collect.canonical_task('ade20k_finetune') == 'ade20k'
    assert collect.canonical_task('seg_finetune') == 'ade20k'
    assert collect.canonical_task('coco_finetune') == 'coco'
    assert collect.canonical_task('finetune_in1k') == 'finetune'
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(dict(task='finetune', dataset='ImageNet-1K',
                                    metrics={'loss': 1.5, 'top5': 90.0})))
    with pytest.warns(UserWarning, match=r"metrics \['loss', 'top5'\] have none of the "
                                         r"finetune columns"):
        assert collect.load_result(path) is None


def test_config_cell_says_whose_config_it_is(results_root):
    rows = _rows(results_root)
    random = next(r for r in rows if r.method_id == 'random_init')
    assert random.cell('config') == 'downstream: linear_probe_vit-tiny_synthetic.py'
    assert collect._config_cell('beitv2_vit-tiny_synthetic.py', ['x.py']) == \
        'pretrain: beitv2_vit-tiny_synthetic.py'


def test_a_stage_manifest_describes_only_its_own_checkpoint(tmp_path):
    """A pretrain stage's manifest says what its final checkpoint is; another file in that dir
    (an earlier iteration, a variant saved there) is not described by it and gets its own row,
    from its own meta: it used to take the stage's name and row, and replace its numbers."""
    stage_dir = tmp_path / 'suite' / 'mim' / 'beitv2'
    stage_dir.mkdir(parents=True)
    (stage_dir / collect.STAGE_FILENAME).write_text(json.dumps(dict(
        checkpoint='/elsewhere/suite/mim/beitv2/iter_2400.pth',  # a moved suite: by file name
        produces=dict(method='beitv2', name='BEiT v2', tokenizer='VQ-KD (ViT-tiny)',
                      iters=2400))))
    runs = tmp_path / 'runs'
    _write_result(runs / 'std', 'finetune', {'accuracy/top1': 80.0}, 'beitv2',
                  str(stage_dir / 'iter_2400.pth'))
    _write_result(runs / 'variant', 'finetune', {'accuracy/top1': 70.0}, 'beitv2',
                  str(stage_dir / 'v1024' / 'iter_3.pth'), details=dict(iters=3))
    _write_result(runs / 'early', 'finetune', {'accuracy/top1': 60.0}, 'beitv2',
                  str(stage_dir / 'iter_1200.pth'), details=dict(iters=1200))
    rows = collect.build_rows([runs], reported=None)
    assert len(rows) == 3
    top1 = {r.values['finetune_top1']: r for r in rows}
    # three rows of one method, told apart by their checkpoints
    assert top1[80.0].cells['method'] == 'BEiT v2 (iter_2400.pth)'
    assert top1[60.0].cells['method'] == 'BEiT v2 (iter_1200.pth)'
    assert top1[80.0].cell('tokenizer') == 'VQ-KD (ViT-tiny)'
    assert top1[80.0].cell('pretrain_epochs') == '2400 iters'
    assert top1[70.0].cell('pretrain_epochs') == '3 iters'
    assert top1[60.0].cell('pretrain_epochs') == '1200 iters'
    assert top1[70.0].cell('tokenizer') == top1[60.0].cell('tokenizer') == collect.MISSING


def test_cli_bad_reported_file_fails_and_writes_nothing(tmp_path):
    """--reported: a missing file, a misspelled metric column (which would be an empty column)
    and a value that is no number are errors naming the file, not tracebacks or blank cells."""
    tool = _leaderboard_tool()
    runs = tmp_path / 'runs'
    runs.mkdir()
    out = tmp_path / 'board'
    with pytest.raises(SystemExit, match=r'--reported: reported numbers file not found: .*gone'):
        tool.main([str(runs), '--out', str(out), '--reported', str(tmp_path / 'gone.csv')])
    header = open(collect.REPORTED_FILE).readline()
    typo = tmp_path / 'typo.csv'
    typo.write_text(header.replace('finetune_top1', 'finetune_top_1')
                    + 'X,VQ-KD,–,ViT-B/16,300,85.0,–,–,–,–,a paper\n')
    with pytest.raises(SystemExit, match=r"typo\.csv: unknown column\(s\) 'finetune_top_1' "
                                         r'\(closest: finetune_top1'):
        tool.main([str(runs), '--out', str(out), '--reported', str(typo)])
    word = tmp_path / 'word.csv'
    word.write_text(header + 'X,VQ-KD,–,ViT-B/16,300,high,–,–,–,–,a paper\n')
    with pytest.raises(SystemExit, match=r'word\.csv:2: could not convert'):
        tool.main([str(runs), '--out', str(out), '--reported', str(word)])
    assert not out.exists()


def test_cli_results_file_root_writes_beside_it(results_root, tmp_path, monkeypatch):
    """A results.json given as the root: the leaderboard goes next to it, not into ./leaderboard
    of the current directory."""
    monkeypatch.chdir(tmp_path)
    result = sorted(Path(results_root).rglob('results.json'))[0]
    _leaderboard_tool().main([str(result)])
    assert (result.parent / 'leaderboard' / 'leaderboard.md').is_file()
    assert not (tmp_path / 'leaderboard').exists()
