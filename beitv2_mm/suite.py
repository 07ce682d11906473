"""The whole chain in one command (``tools/run_suite.py``): data -> teacher -> tokenizers ->
MIM pretraining -> downstream protocols -> leaderboard.

Every stage is a subprocess of ``tools/train.py`` (or ``tools/make_synthetic_data.py``) with
its own work dir and log, so one crash is contained and reported while independent stages
go on. Stages are connected only through the hand-off keys of the shared conventions,
passed as ``--cfg-options``:

* tokenizer training: ``model.teacher.checkpoint`` (+ ``model.teacher.config``),
* MIM: ``model.target_generator.checkpoint``,
* downstream: ``model.backbone.init_cfg.checkpoint``,
* every dataloader: ``{train,val,test}_dataloader.dataset.data_root``.

Data: each data set (ImageNet, ADE20K, COCO) comes from its root flag when given, else from
the generated synthetic set, so ``--imagenet-root`` alone pretrains on real ImageNet while
UperNet and Mask R-CNN still run on synthetic ADE20K / COCO. :func:`plan` prints which is which
and rejects a root that does not exist.

A stage is *done* when its manifest ``<work_dir>/suite_stage.json`` says so and the output it
names (the final checkpoint, and for downstream runs ``results.json``) exists; done stages
are skipped, so an interrupted suite resumes where it stopped (a stage killed half-way
resumes from its last checkpoint with ``--resume``).

Baselines:

* **random init**: every downstream protocol from a randomly initialised backbone
  (``model.backbone.init_cfg.checkpoint=None``; drawn as the official BEiT fine-tuning model,
  :func:`beitv2_mm.backbones.beit_vit.official_vit_init`).
* **supervised**: the backbone of the classifier trained from random init on the labels of
  the pretraining set (the fine-tune config from scratch: stage ``pretrain/supervised``),
  then evaluated by every protocol like a pretrained model. On the synthetic demo the
  labels are the synthetic ImageNet-layout labels, the same ones the downstream
  classification protocols use, so this baseline is an upper reference, not a competitor.
  Its run is also the random-init fine-tune result (the same run), so it is not run twice.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .downstream.checkpoint import backbone_name, tokenizer_codes, with_codes
from .engine.checkpoint import atomic_write_text
from .engine.launch import (NEW_KEY_PREFIX, ConfigKeyError, cfg_get, cfg_has_key, closest_keys,
                            plain_cfg, variable_override_error)

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = 'suite_stage.json'
DATA_MANIFEST = '.suite_data.json'

#: Hand-off keys (COMMON conventions).
TEACHER_CKPT_KEY = 'model.teacher.checkpoint'
TEACHER_CFG_KEY = 'model.teacher.config'
TOKENIZER_CKPT_KEY = 'model.target_generator.checkpoint'
PRETRAIN_CKPT_KEY = 'model.backbone.init_cfg.checkpoint'
#: hand-off key -> what the suite puts there, for the error on a ``--cfg-options`` of one
HANDOFF_KEYS = {
    TEACHER_CKPT_KEY: "the teacher stage's checkpoint, into the tokenizer stages",
    TEACHER_CFG_KEY: "the teacher stage's config, into the tokenizer stages",
    TOKENIZER_CKPT_KEY: "each method's tokenizer stage's checkpoint, into its MIM stage",
    PRETRAIN_CKPT_KEY: "each method's MIM checkpoint, into its downstream stages (None for "
                       "the random-init and supervised baselines)",
}
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')

DEMO_TEACHER = dict(config='configs/demo/teacher_vit-tiny_synthetic.py',
                    name='demo ViT-tiny (supervised on synthetic labels)')
DEMO_TOKENIZERS = {
    'vqkd': dict(config='configs/demo/vqkd_vit-tiny_synthetic.py', name='VQ-KD (ViT-tiny)',
                 uses_teacher=True),
    'peco': dict(config='configs/demo/peco_vqvae-tiny_synthetic.py',
                 name='PeCo VQ-VAE (tiny, perceptual)', uses_teacher=True),
    'pixel': dict(config='configs/demo/pixel_vqvae-tiny_synthetic.py',
                  name='pixel VQ-VAE (tiny; stands in for DALL-E)', uses_teacher=False,
                  loads_into=('PeCoVQVAE',)),
}
#: Used when a MIM config's target generator cannot load the trained tokenizer (see plan()).
UNTRAINED_TOKENIZER_NAMES = {'DALLETokenizer': 'DALL-E-architecture dVAE (random weights)'}
#: method -> MIM config and tokenizer; 'random' and 'supervised' are the baselines.
DEMO_METHODS = {
    'beitv2': dict(config='configs/demo/beitv2_vit-tiny_synthetic.py', tokenizer='vqkd',
                   name='BEiT v2'),
    'beitv1': dict(config='configs/demo/beitv1_vit-tiny_synthetic.py', tokenizer='pixel',
                   name='BEiT v1'),
    'peco': dict(config='configs/demo/peco_vit-tiny_synthetic.py', tokenizer='peco',
                 name='PeCo'),
    'random': dict(config=None, tokenizer=None, name='Random init'),
    'supervised': dict(config=None, tokenizer=None, name='Supervised'),
}
DEMO_TASKS = {
    'linear_probe': 'configs/demo/linear_probe_vit-tiny_synthetic.py',
    'finetune': 'configs/demo/finetune_vit-tiny_synthetic.py',
    'upernet': 'configs/demo/upernet_vit-tiny_synthetic.py',
    'mask_rcnn': 'configs/demo/mask_rcnn_vit-tiny_synthetic.py',
}
#: Data set kind -> display name, root flag of tools/run_suite.py, SuiteOptions field, layout.
DATASETS = {
    'imagenet': dict(name='ImageNet', flag='--imagenet-root', field='imagenet_root',
                     layout='train/, val/, meta/'),
    'ade20k': dict(name='ADE20K', flag='--ade20k-root', field='ade20k_root',
                   layout='ADEChallengeData2016 with images/, annotations/'),
    'coco': dict(name='COCO', flag='--coco-root', field='coco_root',
                 layout='annotations/, train2017/, val2017/'),
}
TASK_ALIASES = {'linear': 'linear_probe', 'lp': 'linear_probe', 'ft': 'finetune',
                'fine_tune': 'finetune', 'ade20k': 'upernet', 'seg': 'upernet',
                'coco': 'mask_rcnn', 'det': 'mask_rcnn', 'maskrcnn': 'mask_rcnn'}

#: Prior seconds per stage kind at schedule 1.0 (2 CPU cores), replaced by measurements.
PRIOR_SECONDS = {'data': 30.0, 'teacher': 40.0, 'tokenizer': 40.0, 'mim': 40.0,
                 'downstream': 35.0, 'leaderboard': 10.0}


@dataclass
class Stage:
    """One run of the chain.

    Attributes:
        name: ``kind/what`` (e.g. ``mim/beitv2``); also the work dir below the suite's.
        kind: data | teacher | tokenizer | mim | downstream.
        config: config file (absolute), None for the data stage.
        deps: names of the stages whose outputs this one reads.
        options: ``--cfg-options`` fixed at planning time.
        dep_options: key -> dependency stage name; resolved to its checkpoint at start.
        needs_results: downstream runs are done only with a final ``results.json``.
        pretrain: what the run starts from (leaderboard metadata).
        produces: what the run makes, for pretraining stages (leaderboard metadata).
        command: explicit command (data stage; tests); else tools/train.py. Resolved
            options are appended to it as ``key=value`` words.
        fingerprint: hash of what the run depends on (:func:`_plan`); paths under the suite
            work dir, the synthetic data dir and the repository enter it relative to them.
        legacy_fingerprint: the same hash over absolute paths, as manifests written before
            2026-11-24 hold it (accepted too, so those runs are not trained again).
    """
    name: str
    kind: str
    work_dir: Path
    config: str | None = None
    deps: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    dep_options: dict = field(default_factory=dict)
    needs_results: bool = False
    pretrain: dict = field(default_factory=dict)
    produces: dict = field(default_factory=dict)
    command: list | None = None
    max_iters: int | None = None
    log_path: Path | None = None
    fingerprint: str = ''
    legacy_fingerprint: str = ''


# ----------------------------------------------------------------------------- helpers
def load_config(path: str):
    """Load a config without importing its custom modules (planning only needs keys)."""
    from mmengine.config import Config
    try:
        return Config.fromfile(path, import_custom_modules=False)
    except Exception as err:  # a broken config must name itself
        raise ValueError(f'cannot load config {path}: {type(err).__name__}: {err}') from err


def read_manifest(work_dir: Path) -> dict | None:
    path = Path(work_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_manifest(work_dir: Path, payload: dict) -> None:
    atomic_write_text(json.dumps(payload, indent=2, sort_keys=True), Path(work_dir) / MANIFEST)


def last_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint mmengine's CheckpointHook recorded last in ``work_dir``, also in a
    moved or copied work dir (:func:`beitv2_mm.engine.launch.latest_checkpoint`); None when
    there is none to resume."""
    from beitv2_mm.engine.launch import latest_checkpoint
    try:
        path = latest_checkpoint(str(work_dir), announce=False)
    except FileNotFoundError:
        return None
    return Path(path) if path and Path(path).is_file() else None


def recorded_checkpoint(work_dir: Path, manifest: dict) -> Path | None:
    """The checkpoint a stage manifest names (an absolute path), found in the stage's work
    dir first (:func:`beitv2_mm.engine.launch.own_checkpoint`): in a copied suite work dir the
    manifest names the original's file, whose stage outputs the copy would hand on."""
    from beitv2_mm.engine.launch import own_checkpoint
    named = manifest.get('checkpoint')
    found = own_checkpoint(str(work_dir), str(named)) if named else None
    return Path(found) if found else None


def final_results(work_dir: Path) -> Path | None:
    """``results.json`` of a finished downstream run (``final`` true), if any."""
    path = Path(work_dir) / 'results.json'
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return path if data.get('final', True) else None


def stage_done(stage: Stage) -> bool:
    """Done = manifest says done, for the same config and options (fingerprint), and every
    output it names exists."""
    if stage.kind == 'data':
        return data_ready(stage.work_dir, stage.options)
    manifest = read_manifest(stage.work_dir)
    if not manifest or manifest.get('status') != 'done':
        return False
    if stage.fingerprint and not fingerprint_matches(
            stage, manifest.get('fingerprint', stage.fingerprint)):
        return False
    if recorded_checkpoint(stage.work_dir, manifest) is None:
        return False
    if stage.needs_results and final_results(stage.work_dir) is None:
        return False
    return True


def fingerprint_matches(stage: Stage, recorded: str | None) -> bool:
    """Whether a manifest's recorded fingerprint is this stage's (in either spelling)."""
    return recorded in (stage.fingerprint, stage.legacy_fingerprint)


def portable_path(value, roots: list) -> object:
    """``value`` with the first of ``roots`` (``(path, placeholder)`` pairs) it lies in
    replaced by the placeholder; values that are no path under them are returned as they
    are."""
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    for root, placeholder in roots:
        try:
            rel = Path(value).relative_to(root)
        except ValueError:
            continue
        return f'{placeholder}/{rel.as_posix()}'
    return value


def data_ready(data_dir: Path, options: dict) -> bool:
    """The synthetic set was fully written with the same size and seed."""
    manifest = Path(data_dir) / DATA_MANIFEST
    try:
        info = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get('size') == options.get('size') and info.get('seed') == options.get('seed')


def fmt_seconds(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    return f'{seconds // 60:d}:{seconds % 60:02d}'


# ----------------------------------------------------------------------------- planning
@dataclass
class SuiteOptions:
    """What ``tools/run_suite.py`` was asked to do (see its ``--help``)."""
    work_dir: Path = Path('work_dirs/demo')
    methods: tuple = tuple(DEMO_METHODS)  # every entry, a new one included
    tasks: tuple = tuple(DEMO_TASKS)
    schedule: float = 1.0
    max_iters: int | None = None
    data_dir: Path = Path('data/synthetic')
    data_size: str = 'demo'
    seed: int = 0
    imagenet_root: str | None = None
    ade20k_root: str | None = None
    coco_root: str | None = None
    jobs: int = 1
    batch_size_cap: int | None = None
    extra_options: dict = field(default_factory=dict)

    def real_root(self, kind: str) -> str | None:
        """The root given for a data set kind of :data:`DATASETS`; None: the synthetic one."""
        return getattr(self, DATASETS[kind]['field'])


def _dataset_kind(value: str, dataset_type: str) -> str | None:
    text = f'{value} {dataset_type}'.lower()
    if 'ade' in text:
        return 'ade20k'
    if 'coco' in text:
        return 'coco'
    if 'imagenet' in text or 'in1k' in text or 'customdataset' in text:
        return 'imagenet'
    return None


def data_root_keys(cfg):
    """``(key, configured data_root, data set kind)`` of every dataloader of a config whose
    data set the suite knows (see :data:`DATASETS`)."""
    for loader in DATALOADERS:
        for key in (f'{loader}.dataset.data_root', f'{loader}.dataset.dataset.data_root'):
            value = cfg_get(cfg, key)
            if not isinstance(value, str):
                continue
            dataset_type = str(cfg_get(cfg, key.rsplit('.', 1)[0] + '.type', ''))
            kind = _dataset_kind(value, dataset_type)
            if kind is not None:
                yield key, value, kind


def data_root_options(cfg, opts: SuiteOptions) -> dict:
    """``--cfg-options`` pointing every dataloader of a config at the suite's data."""
    synthetic_roots = dict(imagenet=opts.data_dir / 'imagenet',
                           ade20k=opts.data_dir / 'ade20k' / 'ADEChallengeData2016',
                           coco=opts.data_dir / 'coco')
    options = {}
    for key, value, kind in data_root_keys(cfg):
        if opts.real_root(kind):
            options[key] = str(Path(opts.real_root(kind)).resolve())
        elif value.startswith('data/synthetic'):
            options[key] = str((opts.data_dir.resolve() / value[len('data/synthetic'):]
                                .lstrip('/')))
        else:
            options[key] = str(synthetic_roots[kind].resolve())
    return options


#: Names the results files give a real data set (the demo configs say ``synthetic-*``).
REAL_DATASET_NAMES = {'imagenet': 'ImageNet', 'ade20k': 'ADE20K', 'coco': 'COCO'}


@functools.lru_cache(maxsize=None)  # one read per plan, not per stage (cleared by _plan)
def real_classes(kind: str, root: str) -> tuple[tuple, bool]:
    """The classes of a real data set in label order, and whether the demo configs' dataset
    ``metainfo`` should name them (False: the dataset type's own classes are these).

    ImageNet layout: as many classes as the labels of ``meta/train.txt`` (which the demo
    configs read where it exists) or else the class folders of ``train/``, named after the
    folders in sorted order (mmpretrain's labels) where they are as many, else ``class_<i>``;
    names that mmengine's ``--cfg-options`` parsing would change (it drops spaces, splits at
    commas) become ``class_<i>`` too: only their number matters to training. ADE20K: mmseg's
    150 classes. COCO: mmdet's 80 classes, which ``annotations/instances_val2017.json`` must
    not go beyond (mmdet maps categories to labels by name).

    Raises:
        FileNotFoundError: When the folder or file the classes come from is missing.
        ValueError: For COCO categories that are not COCO's.
    """
    root = Path(root)
    if kind == 'ade20k':
        from mmseg.datasets import ADE20KDataset
        return tuple(ADE20KDataset.METAINFO['classes']), False
    if kind == 'coco':
        from mmdet.datasets import CocoDataset
        coco_classes = tuple(CocoDataset.METAINFO['classes'])
        path = root / 'annotations' / 'instances_val2017.json'
        if not path.is_file():
            raise FileNotFoundError(f'--coco-root {root}: no {path} (expected '
                                    f'annotations/instances_{{train,val}}2017.json)')
        with open(path) as f:
            names = [c.get('name') for c in json.load(f).get('categories') or []]
        foreign = [n for n in names if n not in coco_classes]
        if foreign:
            raise ValueError(f'--coco-root {root}: {path} has categories that are not COCO\'s '
                             f'80 ({", ".join(map(str, foreign[:5]))}); the suite runs COCO '
                             f'2017 or a subset of its categories')
        return coco_classes, False
    train, listing = root / 'train', root / 'meta' / 'train.txt'
    folders = sorted(p.name for p in train.iterdir() if p.is_dir()) if train.is_dir() else []
    if listing.is_file():  # the demo configs read it where it exists (mmpretrain's split=)
        with open(listing) as f:
            lines = [line.strip() for line in f if line.strip()]
        try:
            count = max(int(line.rsplit(' ', 1)[1]) for line in lines) + 1
        except (IndexError, ValueError):
            raise ValueError(f"--imagenet-root {root}: {listing} should hold '<relative path> "
                             f"<label>' lines") from None
    elif folders:
        count = len(folders)
    else:
        raise FileNotFoundError(f'--imagenet-root {root}: neither class folders in {train} '
                                f'nor {listing} to read the classes from')
    if len(folders) != count or not all(re.fullmatch(r'[\w.-]+', n) for n in folders):
        # e.g. a subset of ImageNet's folders with the labels of all 1000 in the list
        folders = [f'class_{i}' for i in range(count)]
    return tuple(folders), True


def _synthetic_num_classes_keys(cfg):
    """Keys ``num_classes`` under ``model`` / ``data_preprocessor`` set to the synthetic
    class count: the heads (and mixup one-hot sizes) written for the synthetic data."""
    from .datasets.synthetic import SYNTHETIC_CLASSES

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                path = f'{prefix}.{key}'
                if key == 'num_classes' and value == len(SYNTHETIC_CLASSES):
                    yield path
                else:
                    yield from walk(value, path)
    for top in ('model', 'data_preprocessor'):
        yield from walk(cfg.get(top), top)


def real_data_options(cfg, opts: SuiteOptions) -> dict:
    """``--cfg-options`` fitting a demo config to the real data sets it reads.

    The demo configs are written for the synthetic data: 10 shape classes in the dataset
    ``metainfo`` and the heads, ``SyntheticADE20KDataset``, result names ``synthetic-*``.
    With a real root these follow the data set instead (:func:`real_classes`): the dataset's
    classes, every head's ``num_classes``, the ADE20K dataset type and test batch size (1:
    mmseg tests images of one size per batch) and the results' data set name. Without this a
    real root ran the synthetic heads on real labels (an out-of-bounds label error, or COCO
    images all filtered out for want of the synthetic category names).
    """
    options, classes = {}, {}
    label_kind = None  # the data set of the training loader: the heads' classes
    for key, _, kind in data_root_keys(cfg):
        root = opts.real_root(kind)
        if not root:
            continue
        dataset = key.rsplit('.', 1)[0]
        if key.startswith('train_dataloader') or label_kind is None:
            label_kind = kind
        if kind not in classes:
            classes[kind] = real_classes(kind, root)
        names, named = classes[kind]
        if cfg_get(cfg, f'{dataset}.type') == 'SyntheticADE20KDataset':
            options[f'{dataset}.type'] = 'CheckedADE20KDataset'
        loader = key.split('.', 1)[0]
        if kind == 'ade20k' and loader != 'train_dataloader' and \
                (cfg_get(cfg, f'{loader}.batch_size') or 1) > 1:
            # mmseg tests a batch of images of one size only: real ADE20K's sizes differ
            options[f'{loader}.batch_size'] = 1
        metainfo = cfg_get(cfg, f'{dataset}.metainfo')
        if named and metainfo is not None and set(metainfo) == {'classes'}:
            options[f'{dataset}.metainfo.classes'] = list(names)
        elif metainfo is not None:
            options[f'{dataset}.metainfo'] = None
    if label_kind is None:
        return options
    for key in _synthetic_num_classes_keys(cfg):
        options[key] = len(classes[label_kind][0])
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if isinstance(hook, dict) and hook.get('type') == 'DownstreamResultsHook':
            options[f'custom_hooks.{i}.dataset_name'] = REAL_DATASET_NAMES[label_kind]
    return options


def batch_size_options(cfg, opts: SuiteOptions) -> dict:
    """Cap every dataloader's batch size at ``opts.batch_size_cap`` (the ``tiny`` data set
    has fewer training images than some demo batches, and ``drop_last`` would leave none)."""
    cap = opts.batch_size_cap
    if cap is None and opts.data_size == 'tiny' and not any(map(opts.real_root, DATASETS)):
        cap = 8
    options = {}
    if not cap:
        return options
    for loader in DATALOADERS:
        size = cfg_get(cfg, f'{loader}.batch_size')
        if isinstance(size, int) and size > cap:
            options[f'{loader}.batch_size'] = cap
    return options


def _no_op_factor(sched: dict, prefix: str) -> dict:
    """Options making a 1-iteration factor scheduler (LinearLR, ConstantLR and their
    momentum / parameter kinds) a no-op: its first step multiplies by the start factor and
    only its later steps, which a 1-iteration window never takes, undo it."""
    from mmengine.optim.scheduler.param_scheduler import (ConstantParamScheduler,
                                                          LinearParamScheduler)
    from mmengine.registry import PARAM_SCHEDULERS

    kind = sched.get('type')
    cls = PARAM_SCHEDULERS.get(kind) if isinstance(kind, str) else kind
    if isinstance(cls, type) and issubclass(cls, LinearParamScheduler):
        return {f'{prefix}.start_factor': sched.get('end_factor', 1.0)}
    if isinstance(cls, type) and issubclass(cls, ConstantParamScheduler):
        return {f'{prefix}.factor': 1.0}
    return {}


def schedule_options(cfg, opts: SuiteOptions) -> tuple[dict, int | None]:
    """Scale (or cap) the training length of a config.

    Iteration-based loops get ``max_iters`` scaled by ``opts.schedule`` (or set to
    ``opts.max_iters``); the validation and checkpoint intervals and iteration-based
    parameter schedulers shrink with it so warm-up and decay still fit in the run. A
    scheduler window of at least 2 iterations keeps at least 2 (a warm-up of 5 in 2400 is 2
    of 40, not 1), and one a 1-iteration run has no room for is made a no-op.
    Epoch-based loops get ``max_epochs`` scaled (at least 1), and their epoch-based
    schedulers the same way.

    Returns:
        tuple: (options, the resulting max_iters or None for epoch-based loops).
    """
    train_cfg = cfg.get('train_cfg') or {}
    options = {}
    if 'max_iters' in train_cfg:
        old = int(train_cfg['max_iters'])
        new = opts.max_iters if opts.max_iters else max(1, round(old * opts.schedule))
        if opts.max_iters:
            new = min(new, old) if old else new
        if new == old:
            return options, old
        options['train_cfg.max_iters'] = new
        if train_cfg.get('val_interval'):
            options['train_cfg.val_interval'] = max(1, min(int(train_cfg['val_interval']), new))
        interval = cfg_get(cfg, 'default_hooks.checkpoint.interval')
        if isinstance(interval, int) and interval > 0:
            options['default_hooks.checkpoint.interval'] = max(1, min(interval, new))
        log_interval = cfg_get(cfg, 'default_hooks.logger.interval')
        if isinstance(log_interval, int) and log_interval > new:
            options['default_hooks.logger.interval'] = max(1, new)
        options.update(_scaled_schedulers(cfg.get('param_scheduler'), old, new, by_epoch=False))
        return options, new
    if 'max_epochs' in train_cfg and (opts.schedule != 1.0 or opts.max_iters):
        old = int(train_cfg['max_epochs'])
        new = 1 if opts.max_iters else max(1, round(old * opts.schedule))
        options['train_cfg.max_epochs'] = new
        if train_cfg.get('val_interval'):
            options['train_cfg.val_interval'] = max(1, min(int(train_cfg['val_interval']), new))
        if new != old:  # epoch bounds, as the iteration ones above (a 20-epoch warm-up of 100)
            options.update(_scaled_schedulers(cfg.get('param_scheduler'), old, new,
                                              by_epoch=True))
    return options, None


def _scaled_schedulers(schedulers, old: int, new: int, by_epoch: bool) -> dict:
    """Options scaling the bounds of the parameter schedulers counted in the loop's unit
    (``by_epoch``) from a run of ``old`` to one of ``new`` iterations or epochs: one monotone
    map for every begin / end / milestone, so a decay still starts where the warm-up ends; a
    window of at least 2 keeps at least 2 (a 1-step LinearLR applies start_factor and never
    steps again: the rest of the run at lr * start_factor), one with no room for 2 is made a
    no-op, and a bound past the run keeps its distance past it."""
    options = {}
    schedulers = schedulers or []
    single = isinstance(schedulers, dict)
    factor = new / old

    def scaled(point: int) -> int:
        if point > old:  # past the run (end=max_iters + 1: no last step at lr 0)
            return new + point - old
        return min(new, max(round(point * factor), min(point, 2)))

    for i, sched in enumerate([schedulers] if single else schedulers):
        if not isinstance(sched, dict) or bool(sched.get('by_epoch', True)) != by_epoch:
            continue
        prefix = 'param_scheduler' if single else f'param_scheduler.{i}'
        # Scaled bounds stay a non-empty window inside the run (mmengine needs end > begin).
        old_begin = begin = sched.get('begin', 0)
        if isinstance(begin, int):
            begin = min(scaled(begin), new - 1)
            options[f'{prefix}.begin'] = begin
        else:
            old_begin = begin = 0
        if isinstance(sched.get('end'), int):
            length = sched['end'] - old_begin
            end = max(begin + min(2, length), scaled(sched['end']))
            if sched['end'] <= old:
                end = max(begin + 1, min(new, end))
            options[f'{prefix}.end'] = end
            if end - begin == 1 and length >= 2:
                # no room for 2 steps (e.g. a 1-iteration run): no warm-up rather than the
                # rest of the run at its start factor
                options.update(_no_op_factor(sched, prefix))
        if isinstance(sched.get('milestones'), (list, tuple)):
            options[f'{prefix}.milestones'] = [
                max(1, min(new, scaled(m))) for m in sched['milestones']]
    return options


def _normalise_tasks(tasks) -> tuple:
    out = []
    for task in tasks:
        task = TASK_ALIASES.get(task, task)
        if task not in DEMO_TASKS:
            raise ValueError(f'unknown task {task!r}; choose from {sorted(DEMO_TASKS)}')
        if task not in out:
            out.append(task)
    return tuple(out)


def check_data_roots(opts: SuiteOptions) -> None:
    """Reject a data root that is not a directory now, not inside a stage minutes later.

    Raises:
        FileNotFoundError: Naming the flag and the path.
    """
    for kind, info in DATASETS.items():
        root = opts.real_root(kind)
        if not root or Path(root).is_dir():
            continue
        what = 'is not a directory' if Path(root).exists() else 'does not exist'
        where = '' if Path(root).is_absolute() else f' (resolved: {Path(root).resolve()})'
        raise FileNotFoundError(
            f'{info["flag"]} {root}{where} {what}; give the {info["name"]} root '
            f'({info["layout"]}), or leave {info["flag"]} out to use the synthetic {info["name"]}')


def data_summary(opts: SuiteOptions, kinds) -> str:
    """One line saying which of the data sets ``kinds`` are real and which synthetic.

    A data set without a root flag is the synthetic one (documented, e.g. ``--imagenet-root``
    alone for real pretraining with synthetic ADE20K / COCO), so say so where it is planned.
    """
    real, synthetic, flags = [], [], []
    for kind, info in DATASETS.items():
        if kind not in kinds:
            continue
        root = opts.real_root(kind)
        if root:
            real.append(f'{info["name"]} ({Path(root).resolve()})')
        else:
            synthetic.append(info['name'])
            flags.append(info['flag'])
    parts = [f'real: {", ".join(real)}'] if real else []
    if synthetic:
        parts.append(f'synthetic: {", ".join(synthetic)} (generated in {opts.data_dir}; give '
                     f'{" / ".join(flags)} for real data)')
    return '[suite] data sets: ' + ('; '.join(parts) or 'none')


def check_extra_options(extra: dict, cfgs) -> None:
    """Fail for ``--cfg-options`` keys that none of the planned configs has, or that name a
    variable of a config file (overriding it would change nothing).

    A key goes to every stage whose config has it (keys of one task's config are normal), so
    only a key that no config has is an error: a typo that would otherwise vanish. ``+key``
    adds a key on purpose and is not checked, as in tools/train.py.

    Raises:
        ConfigKeyError: One line per unknown key, with the closest existing keys.
    """
    cfgs = list(cfgs)
    errors = []
    for key in extra:
        bare = key[len(NEW_KEY_PREFIX):] if key.startswith(NEW_KEY_PREFIX) else key
        if bare in HANDOFF_KEYS:
            # the suite's own value would replace it, or (a baseline's None) it would turn
            # "Random init" into a pretrained model still labelled random
            errors.append(
                f'--cfg-options: {bare!r} is a hand-off key: the suite sets it itself '
                f'({HANDOFF_KEYS[bare]}). To start from a checkpoint of your own, run that '
                f'stage with tools/train.py CONFIG --cfg-options {bare}=PATH (its results.json '
                'joins tools/leaderboard.py), or add a method to DEMO_METHODS in '
                'beitv2_mm/suite.py.')
            continue
        if key.startswith(NEW_KEY_PREFIX):
            continue
        having = [cfg for cfg in cfgs if cfg_has_key(cfg, key)]
        if having:
            error = variable_override_error(having[0], key)
            if error:
                errors.append(error)
            continue
        candidates = []
        for cfg in cfgs:
            candidates += [k for k in closest_keys(cfg, key) if k not in candidates]
        suggestions = difflib.get_close_matches(key, candidates, n=3, cutoff=0)
        hint = (f' Did you mean {" or ".join(repr(k) for k in suggestions)}?'
                if suggestions else '')
        errors.append(f'--cfg-options: no config of the planned stages has the key {key!r} '
                      f'({len(cfgs)} checked).{hint} To add a new key on purpose, write it as '
                      f'{NEW_KEY_PREFIX}{key}=...')
    if errors:
        raise ConfigKeyError('\n'.join(errors))


def select_stages(stages: list[Stage], patterns) -> list[Stage]:
    """The stages ``--redo`` names: stage names or prefixes of them (``downstream/beitv2``).

    Raises:
        ValueError: For a pattern that selects no planned stage; the message lists the valid
            names and prefixes.
    """
    names = [s.name for s in stages]
    prefixes = []
    for name in names:
        parts = name.split('/')
        for i in range(1, len(parts)):
            if '/'.join(parts[:i]) not in prefixes:
                prefixes.append('/'.join(parts[:i]))

    def selects(pattern: str, name: str) -> bool:
        return name == pattern or name.startswith(pattern.rstrip('/') + '/')

    for pattern in patterns:
        if not any(selects(pattern, name) for name in names):
            close = difflib.get_close_matches(pattern.rstrip('/'), prefixes + names, n=3)
            hint = f' Did you mean {" or ".join(close)}?' if close else ''
            raise ValueError(
                f'--redo {pattern}: no planned stage has this name or prefix.{hint} '
                f'Prefixes: {", ".join(prefixes) or "none"}; stages: {", ".join(names)} '
                f'(--methods / --tasks decide which stages are planned)')
    return [s for s in stages if any(selects(p, s.name) for p in patterns)]


def with_dependents(stages: list[Stage], chosen) -> list[Stage]:
    """``chosen`` and every stage that reads their outputs, directly or not, in plan order.

    ``--redo`` runs these: a fingerprint covers the configs, options and fingerprints of the
    stages a run reads, not their outputs, so after only ``mim/beitv2`` was redone its
    downstream runs stayed done with the results of the old checkpoint.
    """
    names = {s.name for s in chosen}
    for stage in stages:  # dependency order: a stage's deps come before it
        if any(dep in names for dep in stage.deps):
            names.add(stage.name)
    return [s for s in stages if s.name in names]


def plan(opts: SuiteOptions) -> list[Stage]:
    """The stages to run, in dependency order; prints which data sets are real or synthetic.

    Raises:
        FileNotFoundError: When a config the plan needs or a given data root does not exist.
        ValueError: For an unknown method or task.
        ConfigKeyError: For an ``opts.extra_options`` key that no planned config has.
    """
    stages, data_kinds = _plan(opts, synthetic_data=True)
    if all(map(opts.real_root, data_kinds)) and \
            any(stage.kind == 'data' for stage in stages):
        # every data set a planned stage reads has its root: no synthetic set to generate
        # (nor a data fingerprint that would rerun those stages when --data-size changes)
        stages, data_kinds = _plan(opts, synthetic_data=False)
    print(data_summary(opts, data_kinds))
    return stages


def _plan(opts: SuiteOptions, synthetic_data: bool) -> tuple[list[Stage], set]:
    """:func:`plan`'s stages (with the ``data`` stage where a root is missing and
    ``synthetic_data``), and the kinds of data set (:data:`DATASETS`) they read."""
    check_data_roots(opts)
    real_classes.cache_clear()  # the roots' files are read afresh for every plan
    for method in opts.methods:
        if method not in DEMO_METHODS:
            raise ValueError(f'unknown method {method!r}; choose from {sorted(DEMO_METHODS)}')
    tasks = _normalise_tasks(opts.tasks)
    work = opts.work_dir.resolve()
    stages: list[Stage] = []
    loaded: dict[str, object] = {}
    fingerprints: dict[str, str] = {}
    legacy_fingerprints: dict[str, str] = {}
    # longest first: the data dir may lie in the work dir or the repository
    roots = sorted([(work, '<work_dir>'), (opts.data_dir.resolve(), '<data_dir>'),
                    (REPO_ROOT, '<repo>')], key=lambda r: -len(str(r[0])))

    def portable(options: dict) -> dict:
        return {key: portable_path(value, roots) for key, value in options.items()}

    stage_cfgs: dict[str, object] = {}  # config path -> config, of the planned stages
    data_kinds: set = set()

    def config_path(rel: str) -> str:
        path = (REPO_ROOT / rel).resolve()
        if not path.is_file():
            raise FileNotFoundError(f'run_suite: config {rel} does not exist (yet); '
                                    f'leave its method/task out with --methods / --tasks')
        return str(path)

    def cfg_of(path: str):
        if path not in loaded:
            loaded[path] = load_config(path)
        return loaded[path]

    def train_stage(name, kind, rel_config, deps=(), dep_options=None, options=None, **kw):
        path = config_path(rel_config)
        cfg = cfg_of(path)
        stage_cfgs[path] = cfg
        data_kinds.update(kind for _, _, kind in data_root_keys(cfg))
        stage_options = data_root_options(cfg, opts)
        stage_options.update(real_data_options(cfg, opts))
        stage_options.update(batch_size_options(cfg, opts))
        sched, max_iters = schedule_options(cfg, opts)
        stage_options.update(sched)
        stage_options.update(options or {})
        for key, value in opts.extra_options.items():
            if cfg_has_key(cfg, key.lstrip('+')) or key.startswith('+'):
                stage_options[key] = value
        dep_options = dict(dep_options or {})
        lacking = [k for k in dep_options if not cfg_has_key(cfg, k)]
        if lacking:  # the stage would train without what the one before it made
            raise ConfigKeyError(
                f'{rel_config}: stage {name} reads the output of '
                f'{", ".join(dep_options[k] for k in lacking)} through '
                f'{", ".join(lacking)}, which the config does not have (a MIM config: '
                'model.target_generator.checkpoint=None, a downstream config: '
                'model.backbone.init_cfg=dict(type=\'BEiTPretrained\', checkpoint=None)). '
                'Add the key to the config, set to None: the suite fills it in.')
        stage = Stage(name=name, kind=kind, work_dir=work / name, config=path,
                      deps=list(deps), options=stage_options, dep_options=dep_options,
                      max_iters=max_iters, **kw)
        # What the run depends on: its config (as loaded, _base_ included), its options and
        # the fingerprints of the stages it reads. A change reruns it and its dependents.
        # Paths count relative to the suite's own roots, so a moved or copied suite (work
        # dir, synthetic data, repository) is not trained again.
        cfg_dict = plain_cfg(cfg).to_dict()
        for fps, opts_of in ((fingerprints, portable), (legacy_fingerprints, dict)):
            payload = json.dumps(dict(cfg=cfg_dict, options=opts_of(stage_options),
                                      dep_options=dep_options,
                                      deps=[fps.get(d, '') for d in stage.deps]),
                                 sort_keys=True, default=str)
            fps[name] = hashlib.sha1(payload.encode()).hexdigest()[:16]
        stage.fingerprint = fingerprints[name]
        stage.legacy_fingerprint = legacy_fingerprints[name]
        stages.append(stage)
        return stage

    data_deps = []
    if synthetic_data and not all(map(opts.real_root, DATASETS)):
        stages.append(Stage(
            name='data', kind='data', work_dir=opts.data_dir.resolve(),
            options=dict(size=opts.data_size, seed=opts.seed),
            command=[sys.executable, str(REPO_ROOT / 'tools' / 'make_synthetic_data.py'),
                     '--out', str(opts.data_dir.resolve()), '--size', opts.data_size,
                     '--seed', str(opts.seed)],
            log_path=work / 'data_suite.log'))
        fingerprints['data'] = legacy_fingerprints['data'] = f'{opts.data_size}-{opts.seed}'
        data_deps = ['data']
    # What the pretraining stages (teacher, tokenizers, MIM, supervised) read: ImageNet.
    data_label = 'real' if opts.imagenet_root else 'synthetic'

    mim_methods = [m for m in opts.methods if DEMO_METHODS[m]['config']]
    # The tokenizer each MIM run reads; None = the config's target generator cannot load the
    # trained tokenizer (e.g. a DALL-E-architecture dVAE and the pixel VQ-VAE checkpoint):
    # it then keeps the weights its config gives it, and the leaderboard says so.
    mim_tokenizer: dict[str, str | None] = {}
    tokenizers = []
    for method in mim_methods:
        tok = DEMO_METHODS[method]['tokenizer']
        target_type = cfg_get(cfg_of(config_path(DEMO_METHODS[method]['config'])),
                           'model.target_generator.type')
        allowed = DEMO_TOKENIZERS[tok].get('loads_into')
        if allowed and target_type not in allowed:
            print(f'[suite] note: {DEMO_METHODS[method]["config"]} has target generator '
                  f'{target_type}, which cannot load the {DEMO_TOKENIZERS[tok]["name"]} '
                  f'checkpoint ({"/".join(allowed)} can): it keeps its configured weights.')
            tok = None
        mim_tokenizer[method] = tok
        if tok and tok not in tokenizers:
            tokenizers.append(tok)
    needs_teacher = any(DEMO_TOKENIZERS[t]['uses_teacher'] for t in tokenizers)
    if needs_teacher:
        train_stage('teacher', 'teacher', DEMO_TEACHER['config'], deps=data_deps)
    teacher_config = config_path(DEMO_TEACHER['config']) if needs_teacher else None
    for tok in tokenizers:
        spec = DEMO_TOKENIZERS[tok]
        deps, dep_options, options = list(data_deps), {}, {}
        if spec['uses_teacher']:
            deps.append('teacher')
            dep_options[TEACHER_CKPT_KEY] = 'teacher'
            cfg = cfg_of(config_path(spec['config']))
            if cfg_has_key(cfg, TEACHER_CFG_KEY):
                options[TEACHER_CFG_KEY] = teacher_config
        train_stage(f'tokenizer/{tok}', 'tokenizer', spec['config'], deps=deps,
                    dep_options=dep_options, options=options,
                    produces=dict(tokenizer=spec['name']))

    pretrains: dict[str, tuple[str | None, dict]] = {}
    for method in mim_methods:
        spec = DEMO_METHODS[method]
        tok = mim_tokenizer[method]
        cfg = cfg_of(config_path(spec['config']))
        if tok:
            tok_spec = DEMO_TOKENIZERS[tok]
            tok_name = tok_spec['name']
            teacher = DEMO_TEACHER['name'] if tok_spec['uses_teacher'] else None
        else:
            target_type = cfg_get(cfg, 'model.target_generator.type')
            tok_name = UNTRAINED_TOKENIZER_NAMES.get(target_type, f'{target_type} (as configured)')
            teacher = None
        info = dict(method=method, name=spec['name'], tokenizer=tok_name, teacher=teacher,
                    backbone=backbone_name(cfg), config=Path(spec['config']).name)
        stage = train_stage(f'mim/{method}', 'mim', spec['config'],
                            deps=data_deps + ([f'tokenizer/{tok}'] if tok else []),
                            dep_options={TOKENIZER_CKPT_KEY: f'tokenizer/{tok}'} if tok else {},
                            pretrain=dict(method='random_init', name='Random init'),
                            produces=info)
        info['iters'] = stage.max_iters
        if tok:  # with the size the run has (--cfg-options included): a variant is its own row
            info['tokenizer'] = with_codes(tok_name, tokenizer_codes(cfg, stage.options))
        pretrains[method] = (stage.name, info)

    task_cfg = {t: cfg_of(config_path(DEMO_TASKS[t])) for t in tasks}
    any_cfg = task_cfg.get('finetune') or next(iter(task_cfg.values()), None)
    random_info = dict(method='random_init', name='Random init', tokenizer=None,
                       teacher=None, backbone=backbone_name(any_cfg) if any_cfg else None,
                       epochs=0, config=None)
    supervised_stage = None
    if 'supervised' in opts.methods:
        finetune_cfg = config_path(DEMO_TASKS['finetune'])
        sup_info = dict(method='supervised', name='Supervised (labels of the pretrain set)',
                        tokenizer=None, teacher=None,
                        backbone=backbone_name(cfg_of(finetune_cfg)),
                        config=Path(DEMO_TASKS['finetune']).name)
        # From scratch: the random-init fine-tune run, reused as the random baseline's
        # fine-tune result when both are asked for.
        supervised_stage = train_stage(
            'pretrain/supervised', 'downstream', DEMO_TASKS['finetune'], deps=data_deps,
            options={PRETRAIN_CKPT_KEY: None}, needs_results=True,
            pretrain=random_info, produces=sup_info)
        sup_info['iters'] = supervised_stage.max_iters
        pretrains['supervised'] = (supervised_stage.name, sup_info)

    order = [m for m in opts.methods if m in pretrains or m == 'random']
    for method in order:
        for task in tasks:
            if method == 'random':
                if task == 'finetune' and supervised_stage is not None:
                    continue  # the same run as pretrain/supervised
                train_stage(f'downstream/random/{task}', 'downstream', DEMO_TASKS[task],
                            deps=data_deps, options={PRETRAIN_CKPT_KEY: None},
                            needs_results=True, pretrain=random_info)
            else:
                source, info = pretrains[method]
                train_stage(f'downstream/{method}/{task}', 'downstream', DEMO_TASKS[task],
                            deps=data_deps + [source],
                            dep_options={PRETRAIN_CKPT_KEY: source},
                            needs_results=True, pretrain=info)
    for stage in stages:
        for info in (stage.produces, stage.pretrain):
            if info:
                info.setdefault('data', data_label)
    check_extra_options(opts.extra_options, stage_cfgs.values())
    return stages, data_kinds


# ----------------------------------------------------------------------------- running
class Progress:
    """Stage counter, elapsed time and an estimate of the time left.

    The estimate uses, per stage kind, the mean measured duration of the stages already run
    in this suite (scaled by their iterations), else a prior; with ``jobs`` parallel slots
    the remaining work is divided among them.
    """

    def __init__(self, stages: list[Stage], jobs: int, stream=None):
        self.stages = stages
        self.total = len(stages)
        self.jobs = max(1, jobs)
        self.start = time.time()
        self.durations: dict[str, list[float]] = {}
        self.stream = stream or sys.stdout

    def record(self, stage: Stage, seconds: float) -> None:
        self.durations.setdefault(stage.kind, []).append(seconds)

    def estimate(self, stage: Stage) -> float:
        measured = self.durations.get(stage.kind)
        if measured:
            return sum(measured) / len(measured)
        return PRIOR_SECONDS.get(stage.kind, 30.0)

    def eta(self, remaining: list[Stage], running: dict) -> float:
        now = time.time()
        left = sum(self.estimate(s) for s in remaining)
        left += sum(max(self.estimate(s) - (now - t0), 0.0) for s, t0 in running.values())
        return left / self.jobs

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def _resolve_options(stage: Stage, outputs: dict) -> dict:
    options = dict(stage.options)
    for key, dep in stage.dep_options.items():
        options[key] = str(outputs[dep])
    return options


def format_options(options: dict) -> list:
    """``--cfg-options`` words; ``None`` is spelled as mmengine's DictAction reads it."""
    from beitv2_mm.engine.launch import format_options as _format
    return _format({k: ('None' if v is None else v) for k, v in options.items()})


def _train_command(stage: Stage, options: dict, resume: bool) -> list:
    cmd = [sys.executable, str(REPO_ROOT / 'tools' / 'train.py'), stage.config,
           '--work-dir', str(stage.work_dir)]
    if resume:
        cmd.append('--resume')
    if options:
        cmd += ['--cfg-options'] + format_options(options)
    return cmd


def _output_of(stage: Stage) -> str | None:
    checkpoint = recorded_checkpoint(stage.work_dir, read_manifest(stage.work_dir) or {})
    return str(checkpoint) if checkpoint else None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])
    except OSError:
        return ''


class _ForkedRun:
    """A tool's ``main(argv)`` run in a forked child: a ``Popen``-like handle.

    Importing torch + mmpretrain + mmseg + mmdet costs ~10 s of CPU per process; a suite
    has ~30 stages. Forking a parent that imported them once removes that cost while each
    stage still runs in its own process (a crash is contained, its output goes to its log).
    """

    def __init__(self, script: str, argv: list, log_path: Path, threads: int):
        import multiprocessing
        sys.stdout.flush()
        sys.stderr.flush()
        ctx = multiprocessing.get_context('fork')
        self._proc = ctx.Process(target=_forked_main, args=(script, argv, str(log_path), threads),
                                 daemon=False)
        self._proc.start()
        self.pid = self._proc.pid

    def poll(self):
        return self._proc.exitcode

    def terminate(self):
        self._proc.terminate()

    def kill(self):
        self._proc.kill()

    def wait(self, timeout=None):
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout)
        return self._proc.exitcode


def _forked_main(script: str, argv: list, log_path: str, threads: int) -> None:
    """Child side of :class:`_ForkedRun`: stdout/stderr to the log, run, exit."""
    import importlib.util
    import traceback
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(str(REPO_ROOT))
    os.environ['OMP_NUM_THREADS'] = str(threads)
    code = 0
    try:
        import torch
        torch.set_num_threads(threads)
        spec = importlib.util.spec_from_file_location('_suite_stage_tool', script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        result = module.main(argv)
        code = result if isinstance(result, int) else 0
    except SystemExit as exit_:
        if isinstance(exit_.code, int) or exit_.code is None:
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: B902 - report everything, exit non-zero
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:  # CPU seconds of the stage: a load-independent cost for the summary
            import resource
            usage = resource.getrusage(resource.RUSAGE_SELF)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
            Path(log_path + '.cpu').write_text(f'{cpu:.1f}')
        except Exception:
            pass
    os._exit(code)


def fork_is_safe() -> bool:
    """Whether stages may run in forked children of this process (:class:`_ForkedRun`).

    Only on Linux and only without a visible CUDA device: a child forked from a process that
    has touched CUDA cannot use it, and ``torch.cuda.is_available()`` already counts as a
    touch (seen on an H100 with torch 2.11: every forked stage failed in mmengine's
    ``collect_env`` with "Cannot re-initialize CUDA in forked subprocess"). On a GPU machine
    each stage starts a fresh interpreter instead; its ~10 s of imports are small next to a
    GPU stage.
    """
    if not (hasattr(os, 'fork') and sys.platform.startswith('linux')):
        return False
    import torch
    return not torch.cuda.is_available()


def warm_imports() -> None:
    """Import what every stage needs once, before forking (see :class:`_ForkedRun`)."""
    import beitv2_mm  # noqa: F401
    from beitv2_mm.engine import launch
    for scope in launch.SCOPE_MODULES:
        try:
            launch.register_scope(scope)
        except Exception:  # the stage itself will report it
            pass


def run_stages(stages: list[Stage], jobs: int = 1, env: dict | None = None,
               heartbeat: float = 30.0, stream=None,
               on_stage_done: Callable[[Stage], None] | None = None,
               fork: bool | None = None) -> dict:
    """Run the stages (up to ``jobs`` at once), skipping the done ones.

    Args:
        stages: From :func:`plan`, in dependency order.
        jobs (int): Stages run at once; each gets ``cores // jobs`` threads.
        env (dict | None): Environment of the subprocesses (default: this one).
        heartbeat (float): Seconds between progress lines while stages run (0: none).
        stream: Where progress goes (default stdout).
        on_stage_done: Called after each stage that finished successfully.
        fork (bool | None): Run tools/train.py and tools/make_synthetic_data.py in forked
            children of this (pre-imported) process instead of fresh interpreters; default:
            :func:`fork_is_safe`. Stages with an explicit command always use one.

    Returns:
        dict: stage name -> 'skipped' | 'done' | 'failed' | 'blocked'.
    """
    if fork is None:
        fork = fork_is_safe()
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (scheduler preemption, `kill`) unwinds like Ctrl-C, so the running stages
        # are stopped below instead of being orphaned.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    progress = Progress(stages, jobs, stream)
    status: dict[str, str] = {}
    outputs: dict[str, str] = {}
    by_name = {s.name: s for s in stages}
    for stage in stages:
        if stage_done(stage):
            status[stage.name] = 'skipped'
            outputs[stage.name] = _output_of(stage) if stage.kind != 'data' else ''
            manifest = read_manifest(stage.work_dir) or {}
            if manifest.get('seconds'):
                progress.record(stage, float(manifest['seconds']))
            if stage.kind != 'data':
                refresh_labels(stage, manifest)
    done_count = len(status)
    if done_count:
        progress.line(f'[suite] {done_count}/{len(stages)} stage(s) already done, skipped: '
                      + ', '.join(s for s in status))
    pending = [s for s in stages if s.name not in status]
    running: dict[str, tuple] = {}  # name -> (stage, t0, proc, log_path, log_file)
    base_env = dict(os.environ if env is None else env)
    base_env.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
    threads = max(1, int(base_env['OMP_NUM_THREADS']))
    base_env['PYTHONPATH'] = str(REPO_ROOT) + (
        os.pathsep + base_env['PYTHONPATH'] if base_env.get('PYTHONPATH') else '')
    last_beat = time.time()
    index = done_count
    warmed = []
    cpu_seconds: list = []

    def warm() -> None:
        if not warmed:
            progress.line('[suite] importing the stack once (forked stages share it)')
            warm_imports()
            warmed.append(True)

    def start(stage: Stage) -> None:
        nonlocal index
        index += 1
        stage.work_dir.mkdir(parents=True, exist_ok=True)
        if stage.kind == 'data':
            # not ready until this run finishes: a killed regeneration must not pass as the
            # old set (its manifest would still name the old size and seed)
            (stage.work_dir / DATA_MANIFEST).unlink(missing_ok=True)
            cmd = list(stage.command)
            if any(stage.work_dir.iterdir()):
                cmd.append('--force')  # a partial earlier attempt: start over
            log_path = stage.log_path
        else:
            options = _resolve_options(stage, outputs)
            resume = resume_or_restart(stage, progress.line)
            cmd = (list(stage.command) + format_options(options) if stage.command
                   else _train_command(stage, options, resume))
            log_path = stage.work_dir / 'suite_stage.log'
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, 'w')
        log_file.write('$ ' + ' '.join(cmd) + '\n\n')
        log_file.flush()
        if fork and (stage.kind == 'data' or not stage.command):
            warm()
            proc = _ForkedRun(cmd[1], cmd[2:], log_path, threads)
        else:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                    cwd=str(REPO_ROOT), env=base_env)
        running[stage.name] = (stage, time.time(), proc, log_path, log_file)
        remaining = [s for s in pending if s.name not in running]
        eta = progress.eta(remaining, {n: (r[0], r[1]) for n, r in running.items()})
        progress.line(f'[{index}/{len(stages)}] start {stage.name:28s} '
                      f'elapsed {fmt_seconds(time.time() - progress.start)}  '
                      f'est. left ~{fmt_seconds(eta)}  (log: {log_path})')

    def finish(name: str, returncode: int) -> None:
        stage, t0, proc, log_path, log_file = running.pop(name)
        log_file.close()
        seconds = time.time() - t0
        ok = returncode == 0
        checkpoint = None
        if ok and stage.kind == 'data':
            (stage.work_dir / DATA_MANIFEST).write_text(json.dumps(dict(stage.options)))
        elif ok:
            checkpoint = last_checkpoint(stage.work_dir)
            if checkpoint is None:
                ok = False
                progress.line(f'[suite] {name}: finished but wrote no checkpoint '
                              f'(no last_checkpoint in {stage.work_dir})')
            elif stage.needs_results and final_results(stage.work_dir) is None:
                ok = False
                progress.line(f'[suite] {name}: finished but wrote no final results.json '
                              f'in {stage.work_dir}')
        cpu_file = Path(str(log_path) + '.cpu')
        cpu = float(cpu_file.read_text()) if cpu_file.is_file() else None
        if cpu is not None:
            cpu_seconds.append(cpu)
        if ok:
            progress.record(stage, seconds)
            outputs[name] = str(checkpoint) if checkpoint else ''
            if stage.kind != 'data':
                write_manifest(stage.work_dir, dict(
                    stage=name, status='done', checkpoint=str(checkpoint), seconds=seconds,
                    cpu_seconds=cpu, fingerprint=stage.fingerprint,
                    config=stage.config, max_iters=stage.max_iters,
                    **stage_labels(stage, str(checkpoint)),
                    finished=time.strftime('%Y-%m-%dT%H:%M:%S')))
            status[name] = 'done'
            cpu_text = f' ({cpu:.0f} CPU-s)' if cpu is not None else ''
            progress.line(f'      done  {name:28s} in {fmt_seconds(seconds)}{cpu_text}')
            if on_stage_done:
                on_stage_done(stage)
        else:
            status[name] = 'failed'
            progress.line(f'      FAILED {name} (exit {returncode}) after '
                          f'{fmt_seconds(seconds)}; last lines of {log_path}:\n'
                          + _tail(log_path))

    try:
        while pending or running:
            # Block stages whose dependency failed.
            for stage in list(pending):
                bad = [d for d in stage.deps if status.get(d) in ('failed', 'blocked')]
                if bad:
                    pending.remove(stage)
                    status[stage.name] = 'blocked'
                    progress.line(f'      skip  {stage.name} (needs {", ".join(bad)})')
            for stage in list(pending):
                if len(running) >= jobs:
                    break
                if all(status.get(d) in ('done', 'skipped') for d in stage.deps
                       if d in by_name):
                    pending.remove(stage)
                    start(stage)
            if not running:
                if pending:  # unreachable dependencies
                    for stage in pending:
                        status[stage.name] = 'blocked'
                    pending.clear()
                break
            time.sleep(0.2)
            for name in list(running):
                code = running[name][2].poll()
                if code is not None:
                    finish(name, code)
            if heartbeat and time.time() - last_beat > heartbeat and running:
                last_beat = time.time()
                remaining = [s for s in pending]
                eta = progress.eta(remaining, {n: (r[0], r[1]) for n, r in running.items()})
                names = ', '.join(f'{n} ({fmt_seconds(time.time() - r[1])})'
                                  for n, r in running.items())
                progress.line(f'      ... running {names}; '
                              f'{sum(v in ("done", "skipped") for v in status.values())}'
                              f'/{len(stages)} done, elapsed '
                              f'{fmt_seconds(time.time() - progress.start)}, '
                              f'est. left ~{fmt_seconds(eta)}')
    finally:
        for name, (stage, _, proc, _, log_file) in list(running.items()):
            proc.terminate()  # our own children only
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log_file.close()
    progress.line(f'[suite] finished in {fmt_seconds(time.time() - progress.start)}: '
                  + ', '.join(f'{k}={sum(v == k for v in status.values())}'
                              for k in ('done', 'skipped', 'failed', 'blocked')))
    if cpu_seconds:
        cores = os.cpu_count() or 1
        progress.line(f'[suite] stages run now used {sum(cpu_seconds):.0f} CPU-seconds '
                      f'(~{fmt_seconds(sum(cpu_seconds) / min(cores, jobs))} of wall time on '
                      f'{min(cores, jobs)} otherwise idle core(s), plus start-up)')
    return status


def render_leaderboard(work_dir: Path, stream=None) -> int:
    """Run ``tools/leaderboard.py`` on the suite's work dir and print its table."""
    stream = stream or sys.stdout
    out = Path(work_dir) / 'leaderboard'
    cmd = [sys.executable, str(REPO_ROOT / 'tools' / 'leaderboard.py'), str(work_dir),
           '--out', str(out), '--title', f'beitv2_mm leaderboard ({work_dir})']
    proc = subprocess.run(cmd, cwd=str(REPO_ROOT), capture_output=True, text=True)
    print(proc.stdout, file=stream, end='')
    if proc.returncode != 0:
        print(proc.stderr, file=stream)
    return proc.returncode


def resume_or_restart(stage: Stage, say: Callable[[str], None]) -> bool:
    """Before a training stage starts: whether it resumes from its last checkpoint.

    A run (finished or interrupted) whose manifest recorded another fingerprint (config,
    options or an upstream stage changed) is cleared and the stage starts over: resuming would
    continue the old schedule and label the result with the new settings. Otherwise an
    interrupted run resumes. Records this start (status ``running`` with the fingerprint) for
    the next interrupted attempt.
    """
    manifest = read_manifest(stage.work_dir) or {}
    recorded = manifest.get('fingerprint')
    if recorded is not None and not fingerprint_matches(stage, recorded):
        if manifest.get('status') == 'done':
            say(f'[suite] {stage.name}: config or inputs changed since it ran; running it again')
        else:
            say(f'[suite] {stage.name}: config or inputs changed since the interrupted run; '
                'starting over instead of resuming')
        clean_stage(stage)
    resume = last_checkpoint(stage.work_dir) is not None
    stage.work_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(stage.work_dir, dict(stage=stage.name, status='running',
                                        fingerprint=stage.fingerprint, config=stage.config,
                                        started=time.strftime('%Y-%m-%dT%H:%M:%S')))
    return resume


def stage_labels(stage: Stage, checkpoint: str | None) -> dict:
    """A stage's names for its manifest: what it starts from (``pretrain``) and, for a
    pretraining stage, what it makes (``produces``, with the checkpoint that holds it)."""
    return dict(pretrain=stage.pretrain,
                produces=dict(stage.produces, checkpoint=checkpoint) if stage.produces else {})


def refresh_labels(stage: Stage, manifest: dict) -> None:
    """Give a finished stage's manifest the names this plan has for it (``pretrain``,
    ``produces``: method, tokenizer and teacher names, which the leaderboard shows).

    They describe the run and do not enter its fingerprint, so a change of them (a new name, a
    tokenizer name now with its codebook size) relabels finished runs instead of training them
    again; the recorded checkpoint stays.
    """
    produced = (manifest.get('produces') or {}).get('checkpoint', manifest.get('checkpoint'))
    labels = stage_labels(stage, produced)
    if manifest and any(manifest.get(k) != v for k, v in labels.items()):
        write_manifest(stage.work_dir, dict(manifest, **labels))


def clean_stage(stage: Stage) -> None:
    """Delete a stage's outputs (``--redo``): its work dir, or the data manifest."""
    if stage.kind == 'data':
        (stage.work_dir / DATA_MANIFEST).unlink(missing_ok=True)
    else:
        shutil.rmtree(stage.work_dir, ignore_errors=True)
