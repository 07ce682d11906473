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

A stage is *done* when its manifest ``<work_dir>/suite_stage.json`` says so and the output it
names (the final checkpoint, and for downstream runs ``results.json``) exists; done stages
are skipped, so an interrupted suite resumes where it stopped (a stage killed half-way
resumes from its last checkpoint with ``--resume``).

Baselines:

* **random init**: every downstream protocol from a randomly initialised backbone
  (``model.backbone.init_cfg.checkpoint=None``).
* **supervised**: the backbone of the classifier trained from random init on the labels of
  the pretraining set (the fine-tune config from scratch: stage ``pretrain/supervised``),
  then evaluated by every protocol like a pretrained model. On the synthetic demo the
  labels are the synthetic ImageNet-layout labels, the same ones the downstream
  classification protocols use, so this baseline is an upper reference, not a competitor.
  Its run is also the random-init fine-tune result (the same run), so it is not run twice.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = 'suite_stage.json'
DATA_MANIFEST = '.suite_data.json'

#: Hand-off keys (COMMON conventions).
TEACHER_CKPT_KEY = 'model.teacher.checkpoint'
TEACHER_CFG_KEY = 'model.teacher.config'
TOKENIZER_CKPT_KEY = 'model.target_generator.checkpoint'
PRETRAIN_CKPT_KEY = 'model.backbone.init_cfg.checkpoint'
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')

DEMO_TEACHER = dict(config='configs/demo/teacher_vit-tiny_synthetic.py',
                    name='demo ViT-tiny (supervised on synthetic labels)')
DEMO_TOKENIZERS = {
    'vqkd': dict(config='configs/demo/vqkd_vit-tiny_synthetic.py', name='VQ-KD (ViT-tiny)',
                 uses_teacher=True),
    'peco': dict(config='configs/demo/peco_vqvae-tiny_synthetic.py',
                 name='PeCo VQ-VAE (tiny, perceptual)', uses_teacher=True),
    'pixel': dict(config='configs/demo/pixel_vqvae-tiny_synthetic.py',
                  name='pixel VQ-VAE (tiny; stands in for DALL-E)', uses_teacher=False),
}
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


# ----------------------------------------------------------------------------- helpers
def _plain(cfg):
    """The ConfigDict inside an mmengine ``Config`` (which is not a ``dict`` itself)."""
    return cfg._cfg_dict if hasattr(cfg, '_cfg_dict') else cfg


def _has_key(cfg, dotted: str) -> bool:
    node = _plain(cfg)
    for part in dotted.split('.'):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def _get(cfg, dotted: str, default=None):
    node = _plain(cfg)
    for part in dotted.split('.'):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return default
    return node


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
    path = Path(work_dir) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def last_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint mmengine's CheckpointHook recorded last in ``work_dir``."""
    record = Path(work_dir) / 'last_checkpoint'
    if not record.is_file():
        return None
    path = Path(record.read_text().strip())
    if not path.is_absolute():
        path = Path(work_dir) / path
    return path if path.is_file() else None


def final_results(work_dir: Path) -> Path | None:
    """``results.json`` of a finished downstream run (``final`` true), if any."""
    path = Path(work_dir) / 'results.json'
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return path if data.get('final', True) else None


def stage_done(stage: Stage) -> bool:
    """Done = manifest says done and every output it names exists."""
    if stage.kind == 'data':
        return data_ready(stage.work_dir, stage.options)
    manifest = read_manifest(stage.work_dir)
    if not manifest or manifest.get('status') != 'done':
        return False
    checkpoint = manifest.get('checkpoint')
    if not checkpoint or not Path(checkpoint).is_file():
        return False
    if stage.needs_results and final_results(stage.work_dir) is None:
        return False
    return True


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
    methods: tuple = ('beitv2', 'beitv1', 'peco', 'random', 'supervised')
    tasks: tuple = ('linear_probe', 'finetune', 'upernet', 'mask_rcnn')
    schedule: float = 1.0
    max_iters: int | None = None
    data_dir: Path = Path('data/synthetic')
    data_size: str = 'demo'
    seed: int = 0
    imagenet_root: str | None = None
    ade20k_root: str | None = None
    coco_root: str | None = None
    jobs: int = 1
    extra_options: dict = field(default_factory=dict)


def _dataset_kind(value: str, dataset_type: str) -> str | None:
    text = f'{value} {dataset_type}'.lower()
    if 'ade' in text:
        return 'ade20k'
    if 'coco' in text:
        return 'coco'
    if 'imagenet' in text or 'in1k' in text or 'customdataset' in text:
        return 'imagenet'
    return None


def data_root_options(cfg, opts: SuiteOptions) -> dict:
    """``--cfg-options`` pointing every dataloader of a config at the suite's data."""
    synthetic_roots = dict(imagenet=opts.data_dir / 'imagenet',
                           ade20k=opts.data_dir / 'ade20k' / 'ADEChallengeData2016',
                           coco=opts.data_dir / 'coco')
    real_roots = dict(imagenet=opts.imagenet_root, ade20k=opts.ade20k_root,
                      coco=opts.coco_root)
    options = {}
    for loader in DATALOADERS:
        for key in (f'{loader}.dataset.data_root', f'{loader}.dataset.dataset.data_root'):
            value = _get(cfg, key)
            if not isinstance(value, str):
                continue
            dataset_type = str(_get(cfg, key.rsplit('.', 1)[0] + '.type', ''))
            kind = _dataset_kind(value, dataset_type)
            if kind is None:
                continue
            if real_roots[kind]:
                options[key] = str(Path(real_roots[kind]).resolve())
            elif value.startswith('data/synthetic'):
                options[key] = str((opts.data_dir.resolve() / value[len('data/synthetic'):]
                                    .lstrip('/')))
            else:
                options[key] = str(synthetic_roots[kind].resolve())
    return options


def schedule_options(cfg, opts: SuiteOptions) -> tuple[dict, int | None]:
    """Scale (or cap) the training length of a config.

    Iteration-based loops get ``max_iters`` scaled by ``opts.schedule`` (or set to
    ``opts.max_iters``); the validation and checkpoint intervals and iteration-based
    parameter schedulers shrink with it so warm-up and decay still fit in the run.
    Epoch-based loops get ``max_epochs`` scaled (at least 1).

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
        factor = new / old
        options['train_cfg.max_iters'] = new
        if train_cfg.get('val_interval'):
            options['train_cfg.val_interval'] = max(1, min(int(train_cfg['val_interval']), new))
        interval = _get(cfg, 'default_hooks.checkpoint.interval')
        if isinstance(interval, int) and interval > 0:
            options['default_hooks.checkpoint.interval'] = max(1, min(interval, new))
        log_interval = _get(cfg, 'default_hooks.logger.interval')
        if isinstance(log_interval, int) and log_interval > new:
            options['default_hooks.logger.interval'] = max(1, new)
        schedulers = cfg.get('param_scheduler') or []
        single = isinstance(schedulers, dict)
        for i, sched in enumerate([schedulers] if single else schedulers):
            if not isinstance(sched, dict) or sched.get('by_epoch', True):
                continue
            prefix = 'param_scheduler' if single else f'param_scheduler.{i}'
            for bound in ('begin', 'end'):
                if isinstance(sched.get(bound), int):
                    options[f'{prefix}.{bound}'] = min(new, round(sched[bound] * factor))
            if isinstance(sched.get('milestones'), (list, tuple)):
                options[f'{prefix}.milestones'] = [
                    max(1, min(new, round(m * factor))) for m in sched['milestones']]
        return options, new
    if 'max_epochs' in train_cfg and (opts.schedule != 1.0 or opts.max_iters):
        old = int(train_cfg['max_epochs'])
        new = 1 if opts.max_iters else max(1, round(old * opts.schedule))
        options['train_cfg.max_epochs'] = new
        if train_cfg.get('val_interval'):
            options['train_cfg.val_interval'] = max(1, min(int(train_cfg['val_interval']), new))
    return options, None


def _normalise_tasks(tasks) -> tuple:
    out = []
    for task in tasks:
        task = TASK_ALIASES.get(task, task)
        if task not in DEMO_TASKS:
            raise ValueError(f'unknown task {task!r}; choose from {sorted(DEMO_TASKS)}')
        if task not in out:
            out.append(task)
    return tuple(out)


def plan(opts: SuiteOptions) -> list[Stage]:
    """The stages to run, in dependency order.

    Raises:
        FileNotFoundError: When a config the plan needs does not exist.
        ValueError: For an unknown method or task.
    """
    for method in opts.methods:
        if method not in DEMO_METHODS:
            raise ValueError(f'unknown method {method!r}; choose from {sorted(DEMO_METHODS)}')
    tasks = _normalise_tasks(opts.tasks)
    work = opts.work_dir.resolve()
    stages: list[Stage] = []
    loaded: dict[str, object] = {}

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
        stage_options = data_root_options(cfg, opts)
        sched, max_iters = schedule_options(cfg, opts)
        stage_options.update(sched)
        stage_options.update(options or {})
        for key, value in opts.extra_options.items():
            if _has_key(cfg, key.lstrip('+')) or key.startswith('+'):
                stage_options[key] = value
        dep_options = {k: v for k, v in (dep_options or {}).items() if _has_key(cfg, k)}
        stage = Stage(name=name, kind=kind, work_dir=work / name, config=path,
                      deps=list(deps), options=stage_options, dep_options=dep_options,
                      max_iters=max_iters, **kw)
        stages.append(stage)
        return stage

    real = dict(imagenet=opts.imagenet_root, ade20k=opts.ade20k_root, coco=opts.coco_root)
    data_deps = []
    if not all(real.values()):
        stages.append(Stage(
            name='data', kind='data', work_dir=opts.data_dir.resolve(),
            options=dict(size=opts.data_size, seed=opts.seed),
            command=[sys.executable, str(REPO_ROOT / 'tools' / 'make_synthetic_data.py'),
                     '--out', str(opts.data_dir.resolve()), '--size', opts.data_size,
                     '--seed', str(opts.seed)],
            log_path=work / 'data_suite.log'))
        data_deps = ['data']
    data_label = 'synthetic' if not any(real.values()) else 'real'

    mim_methods = [m for m in opts.methods if DEMO_METHODS[m]['config']]
    tokenizers = []
    for method in mim_methods:
        tok = DEMO_METHODS[method]['tokenizer']
        if tok not in tokenizers:
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
            if _has_key(cfg, TEACHER_CFG_KEY):
                options[TEACHER_CFG_KEY] = teacher_config
        train_stage(f'tokenizer/{tok}', 'tokenizer', spec['config'], deps=deps,
                    dep_options=dep_options, options=options,
                    produces=dict(tokenizer=spec['name']))

    pretrains: dict[str, tuple[str | None, dict]] = {}
    for method in mim_methods:
        spec = DEMO_METHODS[method]
        tok = spec['tokenizer']
        tok_spec = DEMO_TOKENIZERS[tok]
        cfg = cfg_of(config_path(spec['config']))
        info = dict(method=method, name=spec['name'], tokenizer=tok_spec['name'],
                    teacher=DEMO_TEACHER['name'] if tok_spec['uses_teacher'] else None,
                    backbone=_backbone_name(cfg), config=Path(spec['config']).name)
        stage = train_stage(f'mim/{method}', 'mim', spec['config'],
                            deps=data_deps + [f'tokenizer/{tok}'],
                            dep_options={TOKENIZER_CKPT_KEY: f'tokenizer/{tok}'},
                            pretrain=dict(method='random_init', name='Random init'),
                            produces=info)
        info['iters'] = stage.max_iters
        pretrains[method] = (stage.name, info)

    task_cfg = {t: cfg_of(config_path(DEMO_TASKS[t])) for t in tasks}
    any_cfg = next(iter(task_cfg.values()), None)
    random_info = dict(method='random_init', name='Random init', tokenizer=None,
                       teacher=None, backbone=_backbone_name(any_cfg) if any_cfg else None,
                       epochs=0, config=None)
    supervised_stage = None
    if 'supervised' in opts.methods:
        finetune_cfg = config_path(DEMO_TASKS['finetune'])
        sup_info = dict(method='supervised', name='Supervised (labels of the pretrain set)',
                        tokenizer=None, teacher=None,
                        backbone=_backbone_name(cfg_of(finetune_cfg)),
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
    return stages


def _backbone_name(cfg) -> str | None:
    if cfg is None:
        return None
    backbone = _get(cfg, 'model.backbone') or {}
    if not isinstance(backbone, dict):
        return None
    arch = backbone.get('arch')
    if isinstance(arch, dict):
        dims = arch.get('embed_dims')
        layers = arch.get('num_layers')
        arch = f'{dims}d-{layers}L' if dims else 'custom'
    patch = backbone.get('patch_size')
    name = str(backbone.get('type', 'ViT'))
    parts = [name]
    if arch:
        parts.append(str(arch))
    if patch:
        parts.append(f'/{patch}')
    return ' '.join(parts[:2]) + (parts[2] if len(parts) > 2 else '')


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
    from beitv2_mm.launch import format_options as _format
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
    manifest = read_manifest(stage.work_dir) or {}
    return manifest.get('checkpoint')


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])
    except OSError:
        return ''


def run_stages(stages: list[Stage], jobs: int = 1, env: dict | None = None,
               heartbeat: float = 30.0, stream=None,
               on_stage_done: Callable[[Stage], None] | None = None) -> dict:
    """Run the stages (up to ``jobs`` at once), skipping the done ones.

    Returns:
        dict: stage name -> 'skipped' | 'done' | 'failed' | 'blocked'.
    """
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
    done_count = len(status)
    if done_count:
        progress.line(f'[suite] {done_count}/{len(stages)} stage(s) already done, skipped: '
                      + ', '.join(s for s in status))
    pending = [s for s in stages if s.name not in status]
    running: dict[str, tuple] = {}  # name -> (stage, t0, proc, log_path, log_file)
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    base_env = dict(os.environ if env is None else env)
    base_env.setdefault('OMP_NUM_THREADS', str(threads))
    base_env['PYTHONPATH'] = str(REPO_ROOT) + (
        os.pathsep + base_env['PYTHONPATH'] if base_env.get('PYTHONPATH') else '')
    last_beat = time.time()
    index = done_count

    def start(stage: Stage) -> None:
        nonlocal index
        index += 1
        stage.work_dir.mkdir(parents=True, exist_ok=True)
        if stage.kind == 'data':
            cmd = list(stage.command)
            if any(stage.work_dir.iterdir()):
                cmd.append('--force')  # a partial earlier attempt: start over
            log_path = stage.log_path
        else:
            options = _resolve_options(stage, outputs)
            resume = last_checkpoint(stage.work_dir) is not None
            cmd = (list(stage.command) + format_options(options) if stage.command
                   else _train_command(stage, options, resume))
            log_path = stage.work_dir / 'suite_stage.log'
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, 'w')
        log_file.write('$ ' + ' '.join(cmd) + '\n\n')
        log_file.flush()
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
        if ok:
            progress.record(stage, seconds)
            outputs[name] = str(checkpoint) if checkpoint else ''
            if stage.kind != 'data':
                write_manifest(stage.work_dir, dict(
                    stage=name, status='done', checkpoint=str(checkpoint), seconds=seconds,
                    config=stage.config, max_iters=stage.max_iters,
                    pretrain=stage.pretrain, produces=dict(stage.produces, checkpoint=str(
                        checkpoint)) if stage.produces else {},
                    finished=time.strftime('%Y-%m-%dT%H:%M:%S')))
            status[name] = 'done'
            progress.line(f'      done  {name:28s} in {fmt_seconds(seconds)}')
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


def clean_stage(stage: Stage) -> None:
    """Delete a stage's outputs (``--redo``): its work dir, or the data manifest."""
    if stage.kind == 'data':
        (stage.work_dir / DATA_MANIFEST).unlink(missing_ok=True)
    else:
        shutil.rmtree(stage.work_dir, ignore_errors=True)
