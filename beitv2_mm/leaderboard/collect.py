"""Collect downstream results files and the published numbers into leaderboard rows.

Inputs:

* ``results.json`` files written by the downstream runs (one per run, anywhere under the
  scanned work dirs)::

      {"task": "finetune" | "linear_probe" | "ade20k" | "coco" (aliases accepted),
       "dataset": {"name": ..., "data_root": ..., "synthetic": bool},
       "metrics": {"accuracy/top1": 71.2, "mIoU": ..., "coco/bbox_mAP": 0.31, ...},
       "config": ..., "pretrain_checkpoint": ... | null, "pretrain_method": ... | null,
       "timestamp": ...}

* optionally ``suite_stage.json`` files that ``tools/run_suite.py`` writes beside a run
  (in the downstream work dir, or the pretrain run's work dir): they add what a results
  file does not know (tokenizer, teacher, backbone, pretrain length, display name).
* ``reported.csv`` (this directory): the published numbers, each row with its source.

Measured results of the same pretrained model (method + checkpoint) on the same data set form
one row; reported numbers are separate rows and never merge with measured ones. A data set is
what the results say about their data: synthetic or real, and per data set name one data root
and evaluated size (a synthetic set also lives in one folder). Results on different data (two
synthetic folders, two sizes of the generated set, two ImageNet roots) are separate rows, each
method name followed by what tells the data sets apart. A task's columns are for one data set
(:data:`TASK_DATA_SETS`: ImageNet, ADE20K, COCO): results on another (CIFAR, Cityscapes) are
left out with a warning. A cell without a number is ``–``; a cell that a run still unfinished
filled (``--include-partial``) names it in the row's method cell.
"""
from __future__ import annotations

import csv
import difflib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..downstream.checkpoint import DETAIL_KEYS

RESULTS_FILENAME = 'results.json'
STAGE_FILENAME = 'suite_stage.json'
REPORTED_FILE = Path(__file__).with_name('reported.csv')
MISSING = '–'


@dataclass(frozen=True)
class MetricColumn:
    """One numeric leaderboard column.

    Args:
        key (str): Column id (also the CSV header of reported.csv).
        title (str): Human header.
        task (str): Canonical task whose results fill it.
        metric_keys (tuple): Metric names looked up in ``results.json``, first found wins.
        scale (float): Multiplier to percent (mmdet's COCO AP is a fraction).
    """
    key: str
    title: str
    task: str
    metric_keys: tuple
    scale: float = 1.0


#: Task -> (the data set its columns are for, words of a data set name that say it is that
#: one, compared lower-case without punctuation). A result on other data has no column.
TASK_DATA_SETS = {
    'finetune': ('ImageNet', ('imagenet', 'in1k', 'in21k', 'in22k')),
    'linear_probe': ('ImageNet', ('imagenet', 'in1k', 'in21k', 'in22k')),
    'ade20k': ('ADE20K', ('ade20k', 'adechallenge')),
    'coco': ('COCO', ('coco',)),
}


METRIC_COLUMNS = (
    MetricColumn('finetune_top1', 'IN-1K fine-tune top-1', 'finetune',
                 ('accuracy/top1', 'top1', 'accuracy')),
    MetricColumn('linear_probe_top1', 'Linear probe top-1', 'linear_probe',
                 ('accuracy/top1', 'top1', 'accuracy')),
    MetricColumn('ade20k_miou', 'ADE20K mIoU', 'ade20k', ('mIoU', 'miou')),
    MetricColumn('coco_ap_box', 'COCO AP box', 'coco', ('coco/bbox_mAP', 'bbox_mAP'), 100.0),
    MetricColumn('coco_ap_mask', 'COCO AP mask', 'coco', ('coco/segm_mAP', 'segm_mAP'), 100.0),
)

#: Task titles for charts.
TASK_TITLES = {
    'finetune': 'Fine-tune top-1 (%)',
    'linear_probe': 'Linear probe top-1 (%)',
    'ade20k': 'Semantic segmentation mIoU (%)',
    'coco': 'Detection / instance segmentation AP (%)',
}

#: Display names of the methods this project trains.
METHOD_NAMES = {
    'beitv2': 'BEiT v2', 'beit_v2': 'BEiT v2',
    'beitv1': 'BEiT v1', 'beit_v1': 'BEiT v1', 'beit': 'BEiT v1',
    'peco': 'PeCo', 'random': 'Random init', 'random_init': 'Random init',
    'scratch': 'Random init', 'none': 'Random init',
    'supervised': 'Supervised', 'unknown': 'Unknown pretrain',
}

TEXT_COLUMNS = ('method', 'tokenizer', 'teacher', 'backbone', 'pretrain_epochs')
TRAILING_COLUMNS = ('dataset', 'config', 'source')
HEADERS = {
    'kind': 'Kind', 'method': 'Method', 'tokenizer': 'Tokenizer', 'teacher': 'Teacher',
    'backbone': 'Backbone', 'pretrain_epochs': 'Pretrain epochs', 'dataset': 'Dataset',
    'config': 'Config', 'source': 'Source',
    **{c.key: c.title for c in METRIC_COLUMNS},
}
ALL_COLUMNS = ('kind',) + TEXT_COLUMNS + tuple(c.key for c in METRIC_COLUMNS) + TRAILING_COLUMNS


def canonical_task(task: str) -> str | None:
    """Map a results file's task name to a leaderboard task (None if unknown).

    Segmentation and detection words are read before ``fine``: ``ade20k_finetune`` is a
    segmentation run, not an ImageNet fine-tune."""
    name = str(task).lower().replace('-', '_')
    if 'linear' in name or name in ('lp', 'probe'):
        return 'linear_probe'
    if 'seg' in name and 'inst' not in name or 'upernet' in name or 'ade' in name:
        return 'ade20k'
    if 'det' in name or 'mask_rcnn' in name or 'coco' in name or 'inst' in name:
        return 'coco'
    if 'fine' in name or name in ('ft', 'classification', 'cls', 'imagenet'):
        return 'finetune'
    return None


def data_set_fits_task(task: str, name: str | None) -> bool:
    """Whether a data set named ``name`` is the one ``task``'s columns are for
    (:data:`TASK_DATA_SETS`); a result that names no data set is taken at its word."""
    if not name:
        return True
    plain = ''.join(ch for ch in str(name).lower() if ch.isalnum())
    return any(word in plain for word in TASK_DATA_SETS[task][1])


def _synthetic_flag(dataset: dict) -> bool | None:
    """A results file's ``dataset.synthetic``: a JSON boolean or its spelling as a string;
    absent: judged by the data root and the name as the results hook does; None: unreadable."""
    flag = dataset.get('synthetic')
    if flag is None:
        from ..downstream.results_hook import is_synthetic_root
        return is_synthetic_root(dataset.get('data_root')) or \
            'synthetic' in str(dataset.get('name') or '').lower()
    if isinstance(flag, bool):
        return flag
    if isinstance(flag, str) and flag.strip().lower() in ('true', 'false'):
        return flag.strip().lower() == 'true'
    return None


@dataclass
class Result:
    """One downstream results file, normalised."""
    path: Path
    task: str
    metrics: dict
    dataset: dict
    config: str
    pretrain_checkpoint: str | None
    pretrain_method: str | None
    timestamp: str
    final: bool = True
    stage: dict = field(default_factory=dict)
    #: a tools/test.py result: the tested checkpoint (results.json ``evaluated_checkpoint``)
    evaluated_checkpoint: str | None = None
    #: how far the evaluated weights had trained (results.json ``iteration``)
    iteration: int | None = None
    #: what the pretrain checkpoint's own meta says (results.json ``pretrain``: tokenizer,
    #: backbone, epochs / iters), for rows the suite's manifests do not describe
    pretrain_details: dict = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return bool(self.dataset.get('synthetic', False))


@dataclass
class Row:
    """One leaderboard row: text cells and numbers (``None`` = missing)."""
    kind: str  # 'measured' | 'reported'
    cells: dict
    values: dict
    synthetic: bool = False
    configs: dict = field(default_factory=dict)
    #: the pretrain method id of a measured row (``random_init``, ``beitv2``...)
    method_id: str = ''
    #: column key -> number of evaluated samples behind the value (results' ``num_samples``)
    samples: dict = field(default_factory=dict)
    #: which data set of its kind (synthetic / real) the row ran on, in a few words; ``''``
    #: when that kind has one data set (the usual case: rows compare as they are)
    data_set: str = ''
    #: the method cell without the words on its data set, for text that is per data set already
    name_in_data_set: str = ''
    #: which cells runs that had not finished filled (``--include-partial``); ``''``: none
    partial: str = ''

    def cell(self, key: str, digits: int = 1) -> str:
        """Text of a cell; numbers rounded, missing ones as ``–``."""
        if key in self.values:
            value = self.values[key]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return MISSING
            return f'{value:.{digits}f}'
        if key == 'kind':
            return self.kind
        text = self.cells.get(key)
        return MISSING if text in (None, '') else str(text)


def _read_json(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        warnings.warn(f'leaderboard: skipping unreadable {path}: {err}')
        return None


def _stage_info(result_path: Path, pretrain_checkpoint: str | None) -> dict:
    """What ``tools/run_suite.py`` recorded about the pretrained model of a result.

    The pretrain run's manifest (beside its checkpoint) says what it ``produces``, when that
    checkpoint is the one it names: another file in the stage dir (an earlier iteration, a
    variant saved there) is not what the manifest describes, and would share its row. The
    downstream run's own manifest says which ``pretrain`` it started from and wins.
    """
    info: dict = {}
    if pretrain_checkpoint:
        checkpoint = Path(pretrain_checkpoint)
        candidate = checkpoint.parent / STAGE_FILENAME
        manifest = (_read_json(candidate) or {}) if candidate.is_file() else {}
        named = manifest.get('checkpoint')
        if isinstance(named, str) and Path(named).name == checkpoint.name:  # moved dirs too
            info.update(manifest.get('produces', {}) or {})
    candidate = result_path.parent / STAGE_FILENAME
    if candidate.is_file():
        info.update((_read_json(candidate) or {}).get('pretrain', {}) or {})
    return info


def load_result(path: str | Path) -> Result | None:
    """Read one results file; ``None`` (with a warning) when it is not a usable one."""
    path = Path(path)
    data = _read_json(path)
    if data is None:
        return None
    if not isinstance(data, dict):
        warnings.warn(f'leaderboard: skipping {path}: a JSON {type(data).__name__}, not an '
                      'object with "task" and "metrics"')
        return None
    missing = [k for k in ('task', 'metrics') if k not in data]
    if missing:
        warnings.warn(f'leaderboard: skipping {path}: missing keys {missing}')
        return None
    if not isinstance(data['metrics'], dict):
        warnings.warn(f'leaderboard: skipping {path}: "metrics" is a '
                      f'{type(data["metrics"]).__name__}, not an object of metric -> value')
        return None
    if not isinstance(data.get('dataset') or {}, (dict, str)):
        warnings.warn(f'leaderboard: skipping {path}: "dataset" is a '
                      f'{type(data["dataset"]).__name__}, not an object or a name')
        return None
    task = canonical_task(data['task'])
    if task is None:
        warnings.warn(f'leaderboard: skipping {path}: unknown task {data["task"]!r}')
        return None
    dataset = data.get('dataset') or {}
    dataset = dict(name=dataset) if isinstance(dataset, str) else dict(dataset)
    if not data_set_fits_task(task, dataset.get('name')):
        expected = TASK_DATA_SETS[task][0]
        warnings.warn(f'leaderboard: skipping {path}: a {task} result on {dataset["name"]!r}; '
                      f'the {task} columns are for {expected} (results on other data sets have '
                      'no column)')
        return None
    readable = [k for c in METRIC_COLUMNS if c.task == task for k in c.metric_keys]
    if not any(data['metrics'].get(k) is not None for k in readable):
        warnings.warn(f'leaderboard: skipping {path}: its metrics '
                      f'{sorted(data["metrics"])} have none of the {task} columns\' '
                      f'{sorted(set(readable))}')
        return None
    synthetic = _synthetic_flag(dataset)
    if synthetic is None:
        warnings.warn(f'leaderboard: skipping {path}: "dataset.synthetic" is '
                      f'{dataset["synthetic"]!r}; write true or false')
        return None
    dataset['synthetic'] = synthetic
    # Two spellings: flat pretrain_checkpoint / pretrain_method, or a nested ``pretrain``
    # dict (beitv2_mm.downstream.results_hook, schema beitv2_mm.downstream.results/v1).
    pretrain = data.get('pretrain') if isinstance(data.get('pretrain'), dict) else {}
    checkpoint = data.get('pretrain_checkpoint', pretrain.get('checkpoint'))
    method = data.get('pretrain_method', pretrain.get('method'))
    return Result(path=path, task=task, metrics=dict(data['metrics']), dataset=dict(dataset),
                  config=str(data.get('config') or ''), pretrain_checkpoint=checkpoint,
                  pretrain_method=method, final=bool(data.get('final', True)),
                  timestamp=str(data.get('timestamp') or ''),
                  stage=_stage_info(path, checkpoint),
                  evaluated_checkpoint=data.get('evaluated_checkpoint'),
                  iteration=data.get('iteration'),
                  pretrain_details={k: pretrain[k] for k in DETAIL_KEYS if k in pretrain})


def collect_results(roots: Iterable[str | Path], include_partial: bool = False
                    ) -> list[Result]:
    """Every usable ``results.json`` under the given directories (or files).

    Args:
        roots: Directories to scan recursively, or results files.
        include_partial (bool): Also keep results a run wrote before its last iteration
            (``"final": false``); by default only finished runs count.
    """
    results, unfinished = [], []
    for root in roots:
        root = Path(root)
        if not root.exists():
            warnings.warn(f'leaderboard: {root} does not exist (a typo?): nothing read from it')
            continue
        paths = [root] if root.is_file() else sorted(root.rglob(RESULTS_FILENAME))
        if not paths:
            warnings.warn(f'leaderboard: no {RESULTS_FILENAME} under {root}')
        for path in paths:
            result = load_result(path)
            if result is None:
                continue
            if result.final or include_partial:
                results.append(result)
            else:
                unfinished.append(path)
    if unfinished:
        warnings.warn(f'leaderboard: {len(unfinished)} result(s) of unfinished runs left out '
                      f'("final": false; --include-partial shows them): '
                      + ', '.join(str(p) for p in unfinished))
    return results


def _metric(result: Result, column: MetricColumn) -> float | None:
    for key in column.metric_keys:
        if key in result.metrics and result.metrics[key] is not None:
            try:
                value = float(result.metrics[key]) * column.scale
            except (TypeError, ValueError):
                return None
            if not math.isfinite(value):  # the results hook writes these as null
                warnings.warn(f'leaderboard: {result.path}: {key} is {result.metrics[key]!r}, '
                              'not a number; the cell stays empty')
                return None
            return value
    return None


def _data_home(result: Result) -> str:
    """The folder of a synthetic set (holding its ``imagenet``, ``ade20k``, ``coco``); ``''``
    for real data, whose roots are wherever the user keeps each data set."""
    root = result.dataset.get('data_root')
    if not result.synthetic or not root:
        return ''
    path = Path(str(root))
    if path.name == 'ADEChallengeData2016':  # <set>/ade20k/ADEChallengeData2016
        path = path.parent
    return str(path.parent)


def _data_name(result: Result) -> str:
    return str(result.dataset.get('name') or result.task)


def _num_samples(result: Result) -> int | None:
    n = result.dataset.get('num_samples')
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def _dataset_label(results: list[Result]) -> str:
    names: dict[str, set] = {}
    for r in results:
        names.setdefault(_data_name(r), set()).add(_num_samples(r))
    label = ', '.join(name + ''.join(f' n={n}' for n in sorted(sizes - {None}))
                      for name, sizes in names.items())
    if results and all(r.synthetic for r in results):
        roots = sorted({_data_home(r) for r in results} - {''})
        where = f' at {", ".join(roots)}' if roots else ''
        return f'SYNTHETIC ({label}){where}'
    return label


@dataclass
class _DataSet:
    """The data that a set of results agrees on: per data set name, its root, its size (None:
    not recorded) and the task that named it; and the tasks of its results."""
    synthetic: bool
    home: str
    entries: dict = field(default_factory=dict)
    tasks: set = field(default_factory=set)

    def fits(self, r: Result) -> str | None:
        """``'same'`` (this name is known here with r's root and size), ``'free'`` (neither the
        name nor r's task is known here yet: a task's results on two data sets are two sets) or
        None (r ran on other data)."""
        if r.synthetic != self.synthetic or _data_home(r) != self.home:
            return None
        entry = self.entries.get(_data_name(r))
        if entry is None:
            return 'free' if r.task not in self.tasks else None
        root, n, _ = entry
        same_size = n is None or _num_samples(r) is None or n == _num_samples(r)
        return 'same' if root == str(r.dataset.get('data_root') or '') and same_size else None

    def add(self, r: Result) -> None:
        old = self.entries.get(_data_name(r), (None, None, r.task))
        n = _num_samples(r)
        self.entries[_data_name(r)] = (str(r.dataset.get('data_root') or ''),
                                       n if n is not None else old[1], old[2])
        self.tasks.add(r.task)


def _data_sets(results: list[Result]) -> tuple[list[int], list[_DataSet]]:
    """The data set each result ran on (an index into the returned sets).

    A result joins the newest set that already has its data; else the newest set that has
    neither its data set name nor its task yet (so the ImageNet, ADE20K and COCO runs of one suite
    share a set: results are taken oldest first, and a regenerated or another data set starts
    a new set when its first result disagrees with the sets so far); else a new set.
    """
    sets: list[_DataSet] = []
    index = [0] * len(results)
    for i in sorted(range(len(results)), key=lambda i: results[i].timestamp):
        r = results[i]
        fits = [s.fits(r) for s in sets]
        chosen = next((j for j in reversed(range(len(sets))) if fits[j] == 'same'),
                      next((j for j in reversed(range(len(sets))) if fits[j] == 'free'), None))
        if chosen is None:
            sets.append(_DataSet(r.synthetic, _data_home(r)))
            chosen = len(sets) - 1
        sets[chosen].add(r)
        index[i] = chosen
    return index, sets


def _tails(paths: list[tuple]) -> list[str]:
    """The shortest path endings (same depth for all) that tell different paths apart."""
    parts = [tuple(Path(p).parts for p in group) for group in paths]
    longest = max((len(p) for group in parts for p in group), default=1)
    depth = 1
    while depth < longest and \
            len({tuple(p[-depth:] for p in group) for group in parts}) < len(set(parts)):
        depth += 1
    return [', '.join('/'.join(p[-depth:]) for p in group) for group in parts]


_TASK_ORDER = {task: i for i, task in enumerate(TASK_TITLES)}


def _set_briefs(sets: list[_DataSet]) -> list[str]:
    """A few words per data set that tell it from the others of its kind (synthetic / real):
    where it is when that differs (a synthetic set's folder, a real set's roots), its sizes
    (``n=`` evaluated samples per data set name) when those differ. ``''`` for a kind with one
    data set."""
    briefs = [''] * len(sets)
    for synthetic in (True, False):
        same_kind = [i for i, s in enumerate(sets) if s.synthetic == synthetic]
        if len(same_kind) < 2:
            continue
        places = [(sets[i].home,) if synthetic else
                  tuple(sorted({e[0] for e in sets[i].entries.values()} - {''}))
                  for i in same_kind]
        sizes = []
        for i in same_kind:
            entries = sorted(sets[i].entries.items(), key=lambda kv: (_TASK_ORDER[kv[1][2]],
                                                                       kv[0]))
            sizes.append('n=' + '/'.join('?' if e[1] is None else str(e[1])
                                         for _, e in entries))
        words = [[] for _ in same_kind]
        if len(set(places)) > 1:
            for w, tail in zip(words, _tails(places)):
                w.append(tail or 'no data root')
        if len(set(sizes)) > 1:
            for w, size in zip(words, sizes):
                w.append(size)
        texts = [', '.join(w) for w in words]
        for k, i in enumerate(same_kind):
            if texts.count(texts[k]) > 1:  # differ only in a data set name: number them
                words[k].append(f'data set {k + 1}')
            briefs[i] = ', '.join(words[k])
    return briefs


def _warn_competing_results(group: list[Result]) -> None:
    """Several runs of one task for one row (same pretrained model, same data set): the newest
    fills the cell. Say which, and which not, so a smoke run cannot silently replace a full
    one (``group`` is sorted oldest first)."""
    for task in dict.fromkeys(r.task for r in group):
        runs = [r for r in group if r.task == task]
        if len({r.path for r in runs}) < 2:
            continue
        listed = '; '.join(f'{r.path.parent} (iteration {r.iteration}, {r.timestamp or "no time"})'
                           for r in runs)
        warnings.warn(f'leaderboard: {len(runs)} {task} results for one '
                      f'row ({runs[-1].pretrain_method or "unknown"} pretrain, '
                      f'{_dataset_label(runs)}): {listed}. The newest, {runs[-1].path.parent}, '
                      'fills the cell; pass only the work dirs to rank to tools/leaderboard.py.')


def measured_rows(results: list[Result]) -> list[Row]:
    """Group results by pretrained model and data set; the newest result fills a cell."""
    set_of, sets = _data_sets(results)
    briefs = _set_briefs(sets)
    groups: dict[tuple, list[Result]] = {}
    for r, data_set in zip(results, set_of):
        # no recorded method is not random init (a tested checkpoint of unknown origin)
        method = r.stage.get('method') or r.pretrain_method or 'unknown'
        checkpoint = r.stage.get('checkpoint') or r.pretrain_checkpoint or ''
        if method == 'unknown' and not checkpoint:  # tested files of unknown origin: one row each
            checkpoint = r.evaluated_checkpoint or ''
        groups.setdefault((str(method), str(checkpoint), r.synthetic, data_set), []).append(r)
    rows, checkpoints = [], []
    for (method, checkpoint, synthetic, data_set), group in groups.items():
        group.sort(key=lambda r: r.timestamp)
        info, stage = {}, {}
        for r in group:  # the checkpoint's own meta, then the suite's manifests, which win
            info.update(r.pretrain_details)
            stage.update(r.stage)
        if 'epochs' in stage or 'iters' in stage:  # one length, the suite's
            info.pop('epochs', None)
            info.pop('iters', None)
        info.update(stage)
        _warn_competing_results(group)
        values, configs, samples, unfinished = {}, {}, {}, {}
        # the last result of a task wins: a finished run's over an unfinished one's, then
        # the newest (group is oldest first; the sort is stable)
        ordered = sorted(group, key=lambda r: r.final)
        for column in METRIC_COLUMNS:
            for r in ordered:
                if r.task == column.task:
                    value = _metric(r, column)
                    if value is not None:
                        values[column.key] = value
                        configs[r.task] = r.config
                        samples[column.key] = r.dataset.get('num_samples')
                        unfinished[column.key] = None if r.final else r
            values.setdefault(column.key, None)
        partial = [r for r in unfinished.values() if r is not None]
        epochs = info.get('epochs')
        if epochs is None and info.get('iters') is not None:
            epochs = f'{info["iters"]} iters'
        cells = dict(
            method=info.get('name') or METHOD_NAMES.get(method.lower(), method),
            tokenizer=info.get('tokenizer'), teacher=info.get('teacher'),
            backbone=info.get('backbone'), pretrain_epochs=epochs,
            dataset=_dataset_label(group),
            config=_config_cell(info.get('config'), configs.values()),
            source=('measured (synthetic data)' if synthetic else 'measured')
            + (', unfinished run' if partial else ''))
        cells = {k: _one_line(v) for k, v in cells.items()}
        rows.append(Row('measured', cells, values, synthetic=synthetic, configs=configs,
                        method_id=method, samples=samples, data_set=briefs[data_set],
                        partial=_partial_words(partial)))
        checkpoints.append(checkpoint)
    _tell_apart(rows, checkpoints)
    return rows


def _config_cell(pretrain_config: str | None, downstream_configs) -> str:
    """The pretraining run's config where known; a random-init row has none: then its
    downstream runs'. Says which."""
    if pretrain_config:
        return f'pretrain: {pretrain_config}'
    names = sorted({Path(c).name for c in downstream_configs if c})
    return f'downstream: {"; ".join(names)}' if names else ''


def _partial_words(unfinished: list[Result]) -> str:
    """``'unfinished: finetune at iteration 2'`` for the cells filled by runs that had not
    reached their last iteration (``--include-partial``); ``''`` when there are none."""
    if not unfinished:
        return ''
    said = dict.fromkeys(f'{r.task} at iteration {r.iteration}' if r.iteration is not None
                         else r.task for r in unfinished)
    return 'unfinished: ' + ', '.join(said)


def _tell_apart(rows: list[Row], checkpoints: list[str]) -> None:
    """Rows of one method from different checkpoints (two pretraining runs, say) get the
    checkpoint's last path parts after the name, so that the table and the summary can tell
    them apart; where a data kind has several data sets, every row of it names its own (the
    charts put them side by side)."""
    names: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        names.setdefault((row.cells['method'], row.synthetic), []).append(i)
    words: list[list[str]] = [[] for _ in rows]
    for same in names.values():
        if len({checkpoints[i] for i in same}) > 1:
            wheres = _tails([(checkpoints[i],) if checkpoints[i] else () for i in same])
            for i, where in zip(same, wheres):
                words[i].append(where or 'no checkpoint')
    for row, said in zip(rows, words):
        name = row.cells['method']
        said += [row.partial] if row.partial else []
        row.name_in_data_set = f"{name} ({', '.join(said)})" if said else name
        said += [row.data_set] if row.data_set else []
        row.cells['method'] = f"{name} ({', '.join(said)})" if said else name


def _one_line(text):
    """A text cell on one line (a line break in a name would break a Markdown row and the
    summary's lines)."""
    return ' '.join(text.split()) if isinstance(text, str) else text


def _number(text: str) -> float | None:
    text = (text or '').strip()
    if text in ('', MISSING, '-', 'NA', 'n/a'):
        return None
    return float(text)


def reported_rows(path: str | Path = REPORTED_FILE) -> list[Row]:
    """Published numbers from a CSV with the columns of ``reported.csv``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A column the leaderboard does not know (a misspelled metric would be an
            empty column), a row without a source, or a value that is not a number.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f'reported numbers file not found: {path} (columns as in '
                                f'{REPORTED_FILE})')
    known = list(TEXT_COLUMNS) + [c.key for c in METRIC_COLUMNS] + ['source']
    rows = []
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        unknown = [h for h in header if h not in known]
        if unknown or 'source' not in header:
            hints = [f'{h!r} (closest: {", ".join(difflib.get_close_matches(h, known, 2))})'
                     for h in unknown]
            raise ValueError(f'{path}: unknown column(s) {", ".join(hints) or "none"}; the '
                             f'columns are {", ".join(known)}, "source" required')
        for i, record in enumerate(reader, start=2):
            if not record.get('source'):
                raise ValueError(f'{path}:{i}: every reported row needs a source')
            try:
                values = {c.key: _number(record.get(c.key, '')) for c in METRIC_COLUMNS}
            except ValueError as err:
                raise ValueError(f'{path}:{i}: {err}') from err
            cells = {k: _one_line(record.get(k)) for k in TEXT_COLUMNS}
            cells.update(dataset='ImageNet-1K / ADE20K / COCO (published)', config='',
                         source=record['source'])
            rows.append(Row('reported', cells, values))
    return rows


def build_rows(roots: Iterable[str | Path], reported: str | Path | None = REPORTED_FILE,
               include_partial: bool = False) -> list[Row]:
    """Measured rows (best fine-tune first), then the reported ones."""
    measured = measured_rows(collect_results(roots, include_partial=include_partial))
    measured.sort(key=lambda r: [-(r.values.get(c.key) if r.values.get(c.key) is not None
                                   else -math.inf) for c in METRIC_COLUMNS])
    return measured + (reported_rows(reported) if reported else [])
