"""``DownstreamResultsHook``: one machine-readable ``results.json`` per downstream run.

After every validation and test epoch the hook (re)writes ``<work_dir>/results.json``
atomically (temp file + rename), so the file always holds the latest complete evaluation and
the leaderboard (``tools/leaderboard.py``) can read it at any moment. Schema::

    {
      "schema": "beitv2_mm.downstream.results/v1",
      "task": "finetune" | "linear_probe" | "semantic_segmentation" | "instance_segmentation",
      "dataset": {"name": str, "data_root": str (absolute), "synthetic": bool,
                  "num_samples": int | null},          # size of the evaluated split
      "metrics": {"accuracy/top1": float, ...},        # every numeric metric of the evaluator
      "stage": "val" | "test", "iteration": int, "epoch": int,  # test: the tested file's
      "final": bool,
      "best_metrics": {"accuracy/top1": {"value": float, "iteration": int, "epoch": int}, ...}
                     | null,                           # val: the best of each metric so far
      "config": str,                                   # config file path
      "pretrain": {"checkpoint": str | null (absolute), "method": str | null,
                   "method_source": str,
                   "tokenizer", "backbone": str, "epochs" | "iters": int},  # when known
      "pretrain_checkpoint": str | null, "pretrain_method": str | null,   # flat copies
      "evaluated_checkpoint": str | null,              # test: the tested file (absolute)
      "validation": {...} | null,                      # test: the training run's last record
      "timestamp": "2026-11-22T23:00:00+00:00"
    }

``final`` is true once training has reached its last iteration/epoch (or for a test run).
``metrics`` are the latest evaluation's (the leaderboard's numbers); ``best_metrics`` keeps, for
each metric, the highest value of any validation of the run (every metric written here is
higher-is-better) and when it was reached, because the official BEiT fine-tuning script reports
its best epoch (``max_accuracy``). A resumed run (``--resume``) carries the best values of the
``results.json`` it finds on; a test run has none of its own. A test run writes into the
training run's work dir by default: the validation record it replaces (metrics, best values,
iteration, ...) is kept whole under ``validation``, so the training run's best values survive
``tools/test.py``, and a training run resumed after it carries them on.
The pretrain method comes from the hook's ``pretrain_method`` setting when given, else from the
checkpoint's meta (:func:`beitv2_mm.downstream.checkpoint.read_pretrain_info`); a run without a
checkpoint is ``random_init``; a resumed run keeps the record of the checkpoint it resumed.
The hook records that in every checkpoint the run saves (``meta['pretrain']``), so a test run
(``tools/test.py CONFIG CHECKPOINT``, whose config need not name the pretrain checkpoint)
reports what the *tested* weights were pretrained from
(:func:`beitv2_mm.downstream.checkpoint.tested_checkpoint_pretrain`; ``null`` when the
checkpoint does not say), and the tested file as ``evaluated_checkpoint``.
"""
from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from beitv2_mm.engine.checkpoint import atomic_write_text
from beitv2_mm.engine.launch import cfg_get

RESULTS_FILE = 'results.json'
SCHEMA = 'beitv2_mm.downstream.results/v1'
TASKS = ('finetune', 'linear_probe', 'semantic_segmentation', 'instance_segmentation')


def is_synthetic_root(data_root: Optional[str], classes=None) -> bool:
    """Whether a data set is this project's synthetic data.

    True when a folder of ``data_root`` is named like ``synthetic`` or when the data set's class
    names are exactly the synthetic ones (``SYNTHETIC_CLASSES``), wherever it was generated.
    """
    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES

    if classes is not None and tuple(classes) == tuple(SYNTHETIC_CLASSES):
        return True
    if not data_root:
        return False
    return any('synthetic' in part.lower() for part in Path(str(data_root)).parts)


def _built_train_loop(runner):
    """The runner's training loop if it was built, else None (a test run).

    Not ``runner.iter`` / ``runner.epoch``: in a test run they build the training loop, its
    data set (which a test need not have) and sampler, whose seed broadcast on rank 0 alone
    left the other ranks behind (``dist_test.sh`` of every config without a fixed seed died).
    """
    loop = getattr(runner, '_train_loop', None)  # the train_cfg dict until built
    return None if loop is None or isinstance(loop, dict) else loop


def _eval_dataset(runner, stage: str):
    """The dataset the metrics were computed on, or None (a loop without one)."""
    try:
        loop = runner.test_loop if stage == 'test' else runner.val_loop
        return loop.dataloader.dataset
    except Exception:
        return None


def _dataset_size(dataset) -> Optional[int]:
    """Number of evaluated samples (the leaderboard's noise estimate); None if unsized."""
    try:
        return int(len(dataset))
    except TypeError:
        return None


def _dataset_classes(dataset):
    """The dataset's class names; None falls back to judging by the data root only."""
    metainfo = getattr(dataset, 'metainfo', None)
    return metainfo.get('classes') if hasattr(metainfo, 'get') else None


def _absolute(path):
    """A local file path made absolute (runs started from elsewhere name the same file alike);
    URLs and None as they are."""
    if isinstance(path, str) and path and '://' not in path:
        return os.path.abspath(path)
    return path


def _validation_record(path: Path) -> Optional[dict]:
    """The last validation record in the results file at ``path``: the file itself, or the
    ``validation`` a test run kept of it; None when there is none or the file is unreadable
    (a run starts afresh rather than fail on it)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get('stage') == 'test':
        record = record.get('validation')
    return record if isinstance(record, dict) and record.get('stage') == 'val' else None


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` via a temp file + ``os.replace`` (never a partial file)."""
    atomic_write_text(json.dumps(payload, indent=2, sort_keys=True), path)


@HOOKS.register_module()
class DownstreamResultsHook(Hook):
    """Write ``results.json`` after each validation/test epoch; see the module docstring.

    Args:
        task (str): One of :data:`TASKS`.
        dataset_name (str): Data set name for the leaderboard (e.g. ``'ImageNet-1K'``).
        pretrain_method (str, optional): Overrides the method read from the checkpoint.
        filename (str): File name in the work dir. Defaults to ``results.json``.
    """

    priority = 'LOW'  # after the evaluator/logger hooks have seen the metrics

    def __init__(self, task: str, dataset_name: str, pretrain_method: Optional[str] = None,
                 filename: str = RESULTS_FILE) -> None:
        if task not in TASKS:
            raise ValueError(f'DownstreamResultsHook: task must be one of {TASKS}, got {task!r}')
        self.task = task
        self.dataset_name = dataset_name
        self.pretrain_method = pretrain_method
        self.filename = filename
        self._pretrain_info = None
        self._loaded_meta: Optional[dict] = None
        self._best: Optional[dict] = None

    def _update_best(self, runner, numeric: dict, iteration: int, epoch: int,
                     previous: Path) -> dict:
        """Merge this validation's metrics into the run's best values (see the module doc);
        ``previous``: the results file a resumed run carries the best values of."""
        if self._best is None:
            self._best = {}
            if cfg_get(runner.cfg, 'resume'):
                record = _validation_record(previous) or {}
                self._best = dict(record.get('best_metrics') or {})
        for key, value in numeric.items():
            best = self._best.get(key)
            if value is not None and (best is None or value > best['value']):
                self._best[key] = dict(value=value, iteration=iteration, epoch=epoch)
        return dict(self._best)

    def _pretrain(self, runner, stage: str) -> dict:
        """``{checkpoint, method, method_source}`` (and the details known) of the weights being
        evaluated: the config's pretrain checkpoint, or the tested (resumed) checkpoint's
        record."""
        if self._pretrain_info is None:
            from .checkpoint import read_pretrain_info, tested_checkpoint_pretrain
            recorded = (self._loaded_meta or {}).get('pretrain')
            if stage == 'test' and cfg_get(runner.cfg, 'load_from'):
                info = tested_checkpoint_pretrain(self._loaded_meta)
            elif cfg_get(runner.cfg, 'resume') and isinstance(recorded, dict):
                # the resumed weights' own record: the config's pretrain file was only their
                # start, and a resume may drop it (launch.prepare_train_config)
                info = tested_checkpoint_pretrain(self._loaded_meta, role='resumed')
            else:
                checkpoint = _absolute(cfg_get(runner.cfg, 'model.backbone.init_cfg.checkpoint'))
                info = dict(checkpoint=checkpoint, **read_pretrain_info(checkpoint))
            if self.pretrain_method:
                info = dict(info, method=self.pretrain_method, source='hook setting')
            self._pretrain_info = info
        info = self._pretrain_info
        from .checkpoint import DETAIL_KEYS
        return dict(checkpoint=info['checkpoint'], method=info['method'],
                    method_source=info['source'],
                    **{k: info[k] for k in DETAIL_KEYS if info.get(k) is not None})

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # the tested (or resumed) checkpoint's meta, read by _pretrain in a test run
        self._loaded_meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # what these weights were pretrained from, for a later tools/test.py of the file
        checkpoint.setdefault('meta', {})['pretrain'] = self._pretrain(runner, 'train')

    def _is_final(self, runner, stage: str) -> bool:
        loop = _built_train_loop(runner)
        if stage == 'test' or loop is None:  # not built: a val/test-only run
            return True
        if hasattr(loop, 'max_iters') and loop.iter >= loop.max_iters:
            return True
        if hasattr(loop, 'max_epochs') and loop.epoch >= loop.max_epochs:
            return True
        return False

    def _write(self, runner, metrics: Optional[dict], stage: str) -> None:
        if metrics is None:
            return
        from mmengine.dist import is_main_process
        if not is_main_process():
            return
        numeric = {}
        for key, value in metrics.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue  # e.g. per-class tables
            numeric[key] = value if math.isfinite(value) else None
        dl_key = 'test_dataloader' if stage == 'test' else 'val_dataloader'
        # absolute, so that runs started from elsewhere compare as the same data set
        data_root = _absolute(cfg_get(runner.cfg, f'{dl_key}.dataset.data_root'))
        dataset = _eval_dataset(runner, stage)
        pretrain = self._pretrain(runner, stage)
        loop = _built_train_loop(runner)
        iteration, epoch = (int(loop.iter), int(loop.epoch)) if loop else (0, 0)
        if stage == 'test' and self._loaded_meta:  # how far the tested weights had trained
            iteration = int(self._loaded_meta.get('iter', iteration) or 0)
            epoch = int(self._loaded_meta.get('epoch', epoch) or 0)
        path = Path(runner.work_dir) / self.filename
        payload = dict(
            schema=SCHEMA,
            task=self.task,
            dataset=dict(name=self.dataset_name, data_root=data_root,
                         synthetic=is_synthetic_root(data_root, _dataset_classes(dataset)),
                         num_samples=_dataset_size(dataset)),
            metrics=numeric,
            stage=stage,
            iteration=iteration,
            epoch=epoch,
            final=self._is_final(runner, stage),
            best_metrics=(self._update_best(runner, numeric, iteration, epoch, path)
                          if stage == 'val' else None),
            config=getattr(runner.cfg, 'filename', None),
            work_dir=str(runner.work_dir),
            pretrain=pretrain,
            evaluated_checkpoint=(_absolute(cfg_get(runner.cfg, 'load_from'))
                                  if stage == 'test' else None),
            validation=_validation_record(path) if stage == 'test' else None,
            pretrain_checkpoint=pretrain['checkpoint'],
            pretrain_method=pretrain['method'],
            timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        )
        write_json_atomic(path, payload)
        runner.logger.info(f'DownstreamResultsHook: wrote {path}')

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._write(runner, metrics, 'val')

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._write(runner, metrics, 'test')
