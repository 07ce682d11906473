"""What ``tools/train.py`` and ``tools/test.py`` share: config loading, scope dispatch,
strict ``--cfg-options``, AMP on any device, and distributed start-up that also works on CPU.

The launchers are thin; everything that can go wrong lives here so it can be tested without
spawning processes.

Design notes (why this is not mmpretrain's ``tools/train.py``):

* **Scope dispatch.** A config names its OpenMMLab package with ``default_scope``
  (``mmpretrain``, ``mmseg`` or ``mmdet``). :func:`register_scope` imports that package's
  ``register_all_modules`` so every registry of the scope is filled before the runner is
  built, whichever package the config belongs to. One launcher runs the whole pipeline.
* **Strict ``--cfg-options``.** mmengine silently *adds* a key it does not know, so a typo
  (``model.backbone.drop_path=0.1``) trains the wrong model for days. Here a key must exist;
  the error names the closest existing keys (difflib). A key prefixed with ``+`` is added
  on purpose (``+randomness.seed=0``).
* **AMP on CPU.** mmengine's ``AmpOptimWrapper`` asserts a GPU. On a machine without CUDA,
  ``--amp`` uses :class:`CPUAutocastOptimWrapper`: bfloat16 autocast, which is the only dtype
  CPU autocast supports and needs no loss scaling (bf16 has fp32's exponent range). A config
  that asks for ``AmpOptimWrapper`` itself (the GPU recipes) runs in fp32 there: without
  native bf16 instructions (AVX512-BF16 / AMX) bf16 GEMMs are emulated, 10-60x slower than
  fp32. One-off measurements on the project's 2-core AVX2 machine (2026-11-24, not kept as
  scripts): 8 Linear 768x768 layers over 788 rows, forward and backward, 7.6 s bf16 against
  0.13-0.70 s fp32 (two rounds); a ViT-B forward and backward at batch 2, 85 s against 1.7 s;
  a step of ``configs/vqkd/vqkd_vitb_clip-b16_in1k.py`` at batch 2, 125-134 s.
* **Distributed on CPU.** mmengine's ``init_dist`` calls ``torch.cuda.set_device``, which
  fails without a GPU, and its default DDP wrapper passes ``device_ids=[LOCAL_RANK]``, which
  DDP rejects for CPU modules. Without CUDA we start the ``gloo`` process group ourselves
  (mmengine then skips its own start-up) and wrap with ``device_ids=None``. So
  ``tools/dist_train.sh CONFIG 2`` runs on a laptop.
"""
from __future__ import annotations

import difflib
import importlib
import os
import os.path as osp
import re
import subprocess
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

#: ``default_scope`` -> module holding that package's ``register_all_modules``.
SCOPE_MODULES = {
    'mmpretrain': 'mmpretrain.utils',
    'mmseg': 'mmseg.utils',
    'mmdet': 'mmdet.utils',
}

LAUNCHERS = ('none', 'pytorch', 'slurm')

#: Prefix that marks a ``--cfg-options`` key the user means to add.
NEW_KEY_PREFIX = '+'


class ConfigKeyError(KeyError):
    """A ``--cfg-options`` key that the config does not have."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


# ----------------------------------------------------------------------------- scope
def register_scope(scope: str | None, config_path: str = '<config>') -> str:
    """Fill the registries of the package a config runs in.

    Args:
        scope (str | None): The config's ``default_scope``.
        config_path (str): Used in the error message.

    Returns:
        str: The scope.

    Raises:
        ValueError: When the scope is missing or not one of :data:`SCOPE_MODULES`.
    """
    if scope not in SCOPE_MODULES:
        raise ValueError(
            f'{config_path}: default_scope = {scope!r} is not supported by this launcher; '
            f'set default_scope to one of {sorted(SCOPE_MODULES)} in the config.')
    module = importlib.import_module(SCOPE_MODULES[scope])
    # init_default_scope=False: the runner sets the scope from the config itself.
    module.register_all_modules(init_default_scope=False)
    return scope


# ----------------------------------------------------------------------------- cfg-options
def plain_cfg(cfg: Any) -> Any:
    """The ConfigDict inside an mmengine ``Config`` (which is not a ``dict`` itself)."""
    return cfg._cfg_dict if isinstance(cfg, Config) else cfg


def flatten_keys(node: Any, prefix: str = '') -> list[str]:
    """All dotted keys of a config tree, lists indexed by position (``a.b.0.c``)."""
    node = plain_cfg(node)
    keys = []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return keys
    for key, value in items:
        full = f'{prefix}.{key}' if prefix else str(key)
        keys.append(full)
        keys.extend(flatten_keys(value, full))
    return keys


_MISSING = object()


def _lookup(cfg: Any, dotted: str) -> Any:
    """The value at a dotted key (list items by position, ``a.b.0.c``), or ``_MISSING``."""
    node = plain_cfg(cfg)
    for part in dotted.split('.'):
        if isinstance(node, dict):
            if part not in node:
                return _MISSING
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit():
            if int(part) >= len(node):
                return _MISSING
            node = node[int(part)]
        else:
            return _MISSING
    return node


def cfg_has_key(cfg: Any, dotted: str) -> bool:
    """Whether a config (or config dict) has the dotted key (``--cfg-options`` spelling)."""
    return _lookup(cfg, dotted) is not _MISSING


def cfg_get(cfg: Any, dotted: str, default: Any = None) -> Any:
    """The value at a dotted key of a config, ``default`` where there is none."""
    value = _lookup(cfg, dotted)
    return default if value is _MISSING else value


def closest_keys(cfg: Any, dotted: str, n: int = 3) -> list[str]:
    """The existing keys most similar to ``dotted``, best first.

    Keys under the deepest existing parent are tried first (a typo in the last part is
    the common case), then the whole config.
    """
    parts = dotted.split('.')
    parent, node = [], plain_cfg(cfg)
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
            parent.append(part)
        else:
            break
    prefix = '.'.join(parent)
    siblings = flatten_keys(node, prefix) if parent else []
    matches = difflib.get_close_matches(dotted, siblings, n=n, cutoff=0.7)
    if len(matches) < n:
        everything = flatten_keys(cfg)
        for key in difflib.get_close_matches(dotted, everything, n=n, cutoff=0.7):
            if key not in matches:
                matches.append(key)
    return matches[:n]


#: Top-level config keys something reads after the file is loaded: mmengine's Runner
#: (``from_cfg`` and the model wrapper), tools/train.py and this project (``pretrain_method``:
#: read back from the saved config to label the checkpoints). Any other top-level name is a
#: variable of the config file, already substituted where the file uses it.
RUN_KEYS = frozenset({
    'pretrain_method',
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg',
    'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler',
    'val_evaluator', 'test_evaluator', 'default_hooks', 'custom_hooks', 'data_preprocessor',
    'load_from', 'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level', 'visualizer',
    'default_scope', 'randomness', 'experiment_name', 'custom_imports', 'model_wrapper_cfg',
    'find_unused_parameters', 'compile', 'runner_type', 'strategy'})


def variable_override_error(cfg: Config | dict, key: str) -> str | None:
    """Why overriding ``key`` would change nothing, or None.

    A config file's own variables (``max_iters = 2400``, ``img_size``, ``data_root``) are
    substituted where the file uses them when mmengine reads it; overriding the variable
    afterwards is accepted by mmengine and silently does nothing. The message names the keys
    holding the same value, which are what to override.
    """
    top = key.split('.', 1)[0]
    if top in RUN_KEYS:
        return None
    value = cfg_get(cfg, key)
    same = [k for k in flatten_keys(cfg)
            if k.split('.', 1)[0] in RUN_KEYS and type(cfg_get(cfg, k)) is type(value)
            and cfg_get(cfg, k) == value and not isinstance(value, (dict, list))]
    name = key.rsplit('.', 1)[-1]
    same.sort(key=lambda k: k.rsplit('.', 1)[-1] != name)  # same-named keys first
    hint = (f' Override the keys that use it instead, e.g. '
            f'{", ".join(f"{k}=..." for k in same[:6])}.' if same else '')
    return (f'--cfg-options: {key!r} is a variable of the config file: mmengine substituted its '
            f'value where the file uses it when it read the file, so overriding it changes '
            f'nothing.{hint} To set it anyway, write {NEW_KEY_PREFIX}{key}=...')


def check_cfg_options(cfg: Config | dict, options: dict | None,
                      config_path: str = '<config>') -> dict:
    """Validate ``--cfg-options`` against a config and strip the ``+`` markers.

    Args:
        cfg (Config | dict): The loaded config.
        options (dict | None): Parsed ``--cfg-options`` (mmengine ``DictAction``).
        config_path (str): Used in the error message.

    Returns:
        dict: Options ready for ``Config.merge_from_dict``.

    Raises:
        ConfigKeyError: For a key the config does not have and that is not marked new (the
            message lists the closest existing keys), a variable of the config file
            (:func:`variable_override_error`), or text where the config holds a number.
    """
    checked = {}
    for key, value in (options or {}).items():
        if key.startswith(NEW_KEY_PREFIX):
            checked[key[len(NEW_KEY_PREFIX):]] = value
            continue
        if not cfg_has_key(cfg, key):
            suggestions = closest_keys(cfg, key)
            hint = (f' Did you mean {" or ".join(repr(s) for s in suggestions)}?'
                    if suggestions else '')
            raise ConfigKeyError(
                f'--cfg-options: {config_path} has no key {key!r}.{hint} '
                f'To add a new key on purpose, write it as {NEW_KEY_PREFIX}{key}=...')
        error = variable_override_error(cfg, key)
        if error:
            raise ConfigKeyError(f'{error} ({config_path})')
        current = cfg_get(cfg, key)
        if (isinstance(current, (int, float)) and not isinstance(current, bool)
                and isinstance(value, str)):
            # DictAction keeps what is no number as text: mmengine would fail deep inside
            # (int('abc')) or compare a number with a string
            raise ConfigKeyError(
                f'--cfg-options {key}={value}: {config_path} holds a number there '
                f'({current!r}); give a number')
        checked[key] = value
    return checked


# ----------------------------------------------------------------------------- AMP
@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that runs forward passes under CPU bfloat16 autocast.

    mmengine's ``AmpOptimWrapper`` refuses to start without a GPU; CPU autocast only
    supports bfloat16, which has fp32's exponent range, so no loss scaler is needed and
    the optimizer state stays fp32.

    Args:
        dtype (str | torch.dtype): Must be bfloat16 (the only CPU autocast dtype).
        loss_scale: Accepted and ignored, so an ``AmpOptimWrapper`` config converts as is.
        **kwargs: Passed to ``OptimWrapper``.
    """

    def __init__(self, dtype: str | torch.dtype | None = 'bfloat16', loss_scale: Any = None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if dtype not in (None, torch.bfloat16):
            raise ValueError(
                f'CPUAutocastOptimWrapper: CPU autocast supports only bfloat16, got {dtype}; '
                f'set optim_wrapper.dtype="bfloat16" or run without --amp.')
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield


def configure_amp(cfg: Config, enable: bool, cuda: bool | None = None) -> str:
    """Set the optimizer wrapper for mixed precision on the device at hand.

    With CUDA, ``--amp`` selects mmengine's ``AmpOptimWrapper`` (dynamic loss scale, fp16
    unless the config sets ``dtype``). Without CUDA, ``--amp`` gets
    :class:`CPUAutocastOptimWrapper` (bf16; a warning when the CPU has no native bf16), and a
    config's own ``AmpOptimWrapper`` becomes a plain fp32 ``OptimWrapper`` (one printed line;
    see the module docstring for why).

    Args:
        cfg (Config): Config with an ``optim_wrapper`` (test-only configs have none).
        enable (bool): ``--amp`` was given.
        cuda (bool | None): Override CUDA detection (tests).

    Returns:
        str: The optimizer wrapper type in effect (``''`` without ``optim_wrapper``).
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    wrapper = cfg.get('optim_wrapper')
    if wrapper is None:
        return ''
    current = wrapper.get('type', 'OptimWrapper')
    if enable and current not in ('OptimWrapper', 'AmpOptimWrapper', 'CPUAutocastOptimWrapper'):
        raise ValueError(
            f'--amp: optim_wrapper.type is {current!r}; --amp can only switch OptimWrapper '
            f'to AmpOptimWrapper. Set the mixed-precision wrapper in the config instead.')
    wants_amp = enable or current in ('AmpOptimWrapper', 'CPUAutocastOptimWrapper')
    if not wants_amp:
        return current
    if cuda:
        wrapper['type'] = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
    elif not enable and current == 'AmpOptimWrapper':
        # the recipe's GPU mixed precision; emulated bf16 would be far slower than fp32 here
        wrapper['type'] = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            wrapper.pop(key, None)
        print('[launch] no CUDA: the config\'s AmpOptimWrapper runs as a plain fp32 '
              'OptimWrapper on the CPU (--amp asks for bf16 autocast)')
    else:
        wrapper['type'] = 'CPUAutocastOptimWrapper'
        if wrapper.get('dtype') not in (None, 'bfloat16', torch.bfloat16):
            print(f'[launch] no CUDA: mixed precision falls back from '
                  f'{wrapper.get("dtype")} to bfloat16 (the only CPU autocast dtype)')
        wrapper['dtype'] = 'bfloat16'
        if cpu_has_native_bf16() is False:
            print('[launch] WARNING: this CPU has no native bf16 instructions (AVX512-BF16 / '
                  'AMX): bf16 autocast emulates them and is 10-60x slower than fp32 here; '
                  'drop --amp unless you are testing bf16 numerics')
    return wrapper['type']


def cpu_has_native_bf16() -> bool | None:
    """Whether the CPU has bf16 GEMM instructions (AVX512-BF16 or AMX); None: torch cannot say."""
    probes = [getattr(torch.cpu, name, None)
              for name in ('_is_avx512_bf16_supported', '_is_amx_tile_supported')]
    if not all(callable(probe) for probe in probes):
        return None
    return any(probe() for probe in probes)


# ----------------------------------------------------------------------------- distributed
def _slurm_env() -> None:
    """Export the torch.distributed ranks from slurm's (as mmengine does); the rendezvous
    address and port come from :func:`_slurm_master_env`."""
    os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))


def _slurm_master_env() -> None:
    """Export MASTER_PORT and MASTER_ADDR for a slurm job, for our gloo start-up and for
    mmengine's ``_init_dist_slurm`` (CUDA) alike: it takes both from the environment when set.

    Raises:
        ValueError: No MASTER_ADDR, and the first host of SLURM_NODELIST cannot be found.
    """
    # PORT as for torchrun; else one port per job (a fixed 29500 made two jobs sharing a node
    # collide, or a rank of one join the other's rendezvous)
    os.environ.setdefault('MASTER_PORT', os.environ.get('PORT') or str(
        29500 + int(os.environ.get('SLURM_JOB_ID', '0') or 0) % 2000))
    if os.environ.get('MASTER_ADDR'):
        return
    nodes = os.environ['SLURM_NODELIST']
    # mmengine's shell pipeline made "/bin/sh: 1: scontrol: not found" the address where
    # scontrol is missing (containers): every rank then waited until the dist timeout
    addr = _scontrol_first_host(nodes) or first_slurm_host(nodes)
    if addr is None:
        raise ValueError(f'--launcher slurm: cannot tell the first host of SLURM_NODELIST='
                         f'{nodes!r} (no scontrol, and not a host list this launcher can '
                         'read); set MASTER_ADDR to the address of the node of rank 0')
    os.environ['MASTER_ADDR'] = addr


_HOST_NAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]*')


def _scontrol_first_host(nodes: str) -> str | None:
    """The first host of a slurm node list as ``scontrol`` expands it; None when scontrol is
    missing, fails, or prints something that is not a host name."""
    try:
        done = subprocess.run(['scontrol', 'show', 'hostnames', nodes], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or not lines or not _HOST_NAME.fullmatch(lines[0]):
        return None
    return lines[0]


def first_slurm_host(nodes: str) -> str | None:
    """The first host of a slurm host list, without scontrol: ``node[01-02,05]`` -> ``node01``,
    ``gpu-a,gpu-b`` -> ``gpu-a``, ``n[1-3]x`` -> ``n1x``, ``r[1-2]-n[3-4]`` -> ``r1-n3``.

    Returns:
        str | None: The host name; None for a list this cannot read.
    """
    depth, end = 0, len(nodes)
    for i, ch in enumerate(nodes):  # the first entry ends at the first comma outside [...]
        depth += {'[': 1, ']': -1}.get(ch, 0)
        if depth not in (0, 1):
            return None
        if ch == ',' and depth == 0:
            end = i
            break
    first = nodes[:end].strip()
    # each bracket's first range starts with the first host's digits (zero padding kept)
    host = re.sub(r'\[([0-9]+)(?:-[0-9]+)?(?:,[0-9-]*)*\]', r'\1', first)
    return host if _HOST_NAME.fullmatch(host) else None


def configure_distributed(cfg: Config, launcher: str, cuda: bool | None = None) -> str:
    """Prepare the config (and, on CPU, the process group) for a launcher.

    Args:
        cfg (Config): The config; ``launcher`` and ``env_cfg.dist_cfg.backend`` are set.
        launcher (str): ``none``, ``pytorch`` or ``slurm``.
        cuda (bool | None): Override CUDA detection (tests).

    Returns:
        str: The communication backend (``''`` for ``none``).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'--launcher must be one of {LAUNCHERS}, got {launcher!r}')
    cfg.launcher = launcher
    if launcher == 'none':
        return ''
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')
               if launcher == 'slurm' and k not in os.environ]
    if missing:  # else a bare KeyError from deep in the set-up
        raise ValueError(f'--launcher slurm: {", ".join(missing)} not set, so this process was '
                         'not started by srun; use tools/slurm_train.sh / slurm_test.sh, or '
                         '--launcher pytorch under torchrun (tools/dist_train.sh), or '
                         '--launcher none for one process')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if launcher == 'pytorch' and k not in os.environ]
    if missing:  # else torch's bare "env:// rendezvous: RANK expected"
        raise ValueError(f'--launcher pytorch: {", ".join(missing)} not set, so this process '
                         'was not started by torchrun; use tools/dist_train.sh / dist_test.sh '
                         'CONFIG GPUS, or --launcher none for one process')
    if launcher == 'slurm':
        # on CUDA too: mmengine's own slurm start-up falls back to port 29500 and a shell
        # pipeline for the address
        _slurm_master_env()
    cuda = torch.cuda.is_available() if cuda is None else cuda
    env_cfg = cfg.setdefault('env_cfg', ConfigDict())
    dist_cfg = env_cfg.setdefault('dist_cfg', ConfigDict())
    if cuda:
        dist_cfg.setdefault('backend', 'nccl')
        return dist_cfg['backend']
    # No GPU: gloo, a process group started here, and a DDP wrapper without device ids.
    dist_cfg['backend'] = 'gloo'
    wrapper_cfg = cfg.get('model_wrapper_cfg') or ConfigDict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_cfg['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper_cfg
    import torch.distributed as torch_dist
    if not torch_dist.is_initialized():
        if launcher == 'slurm':
            _slurm_env()
        kwargs = {}
        if dist_cfg.get('timeout') is not None:
            import datetime
            kwargs['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
        torch_dist.init_process_group(backend='gloo', **kwargs)
    return 'gloo'


# ----------------------------------------------------------------------------- config
def load_config(config: str, cfg_options: dict | None = None) -> Config:
    """Load a config file and apply validated ``--cfg-options``.

    Args:
        config (str): Path of the config file.
        cfg_options (dict | None): Parsed ``--cfg-options``.

    Returns:
        Config: The merged config.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    options = check_cfg_options(cfg, cfg_options, config)
    if options:
        cfg.merge_from_dict(options)
    return cfg


def default_work_dir(config: str) -> str:
    """``work_dirs/<config name without .py>``, relative to the current directory."""
    return osp.join('work_dirs', osp.splitext(osp.basename(config))[0])


def _load_for_run(config: str, cfg_options: dict | None, work_dir: str | None) -> Config:
    """Config with ``--cfg-options`` applied, its scope registered and ``work_dir`` set
    (precedence: CLI > config > ``work_dirs/<config name>``): what train and test share."""
    cfg = load_config(config, cfg_options)
    register_scope(cfg.get('default_scope'), config)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config)
    return cfg


def prepare_train_config(config: str, cfg_options: dict | None = None,
                         work_dir: str | None = None, resume: str | None = None,
                         amp: bool = False, launcher: str = 'none',
                         cuda: bool | None = None, auto_scale_lr: bool = False) -> Config:
    """Everything ``tools/train.py`` does before building the runner.

    Args:
        config (str): Config file.
        cfg_options (dict | None): ``--cfg-options``.
        work_dir (str | None): ``--work-dir``; precedence: CLI > config > default.
        resume (str | None): ``None`` (no resume), ``'auto'`` (latest checkpoint of the
            work dir) or a checkpoint path.
        amp (bool): ``--amp``.
        launcher (str): ``--launcher``.
        cuda (bool | None): Override CUDA detection (tests).
        auto_scale_lr (bool): ``--auto-scale-lr`` (see :func:`enable_auto_scale_lr`).

    Returns:
        Config: Ready for :func:`build_runner`.
    """
    cfg = _load_for_run(config, cfg_options, work_dir)
    if auto_scale_lr:
        enable_auto_scale_lr(cfg, config)
    resumed = None
    if resume == 'auto':
        resumed = latest_checkpoint(cfg.work_dir)
        if resumed is None:
            # resume-if-present is how requeued jobs start, so not an error; but say it. Not
            # a resume (mmengine would look for a checkpoint ''): the config's load_from stays
            cfg.resume = False
            if os.environ.get('RANK', '0') == '0':
                print(f'--resume: no checkpoint in {cfg.work_dir} yet (no last_checkpoint): '
                      'training starts from the beginning', file=sys.stderr)
        else:
            cfg.resume = True
            cfg.load_from = resumed
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume: checkpoint not found: {resume}')
        cfg.resume = True
        cfg.load_from = resumed = resume
    if resumed and '://' not in resumed:
        check_readable_checkpoint(resumed)
    _check_pretrain_file(cfg, resumed)
    configure_amp(cfg, amp, cuda=cuda)
    configure_distributed(cfg, launcher, cuda=cuda)
    add_guard_hooks(cfg)
    return cfg


def check_readable_checkpoint(path: str) -> None:
    """A damaged checkpoint to resume or test (truncated copy, not a checkpoint) fails here
    naming the file, its size and the fix, not as a torch traceback inside the runner. Reads
    only its pickled objects (memory-mapped), not the tensors.

    Raises:
        ValueError: The file cannot be read as a checkpoint.
    """
    from beitv2_mm.downstream.checkpoint import read_checkpoint_meta
    from beitv2_mm.tokenizers.checkpoint import CheckpointLoadError
    try:
        read_checkpoint_meta(path)
    except CheckpointLoadError as err:
        raise ValueError(str(err)) from err


def _check_pretrain_file(cfg: Config, resumed: str | None) -> None:
    """A missing pretrain checkpoint (``model.backbone.init_cfg.checkpoint``), or none where
    the config's ``init_cfg`` says ``required=True``, fails here, before the runner makes its
    work dir (the loader would say the same inside ``Runner.train``).

    A resumed run (``resumed``: the checkpoint it resumes) replaces every weight with the
    resumed ones, so its pretrain file is only loaded to be overwritten: when that file is gone
    (moved, cleaned up), it resumes without it. The results keep the resumed checkpoint's
    record of it (``DownstreamResultsHook``).
    """
    from beitv2_mm.downstream.checkpoint import no_pretrain_message, require_pretrain_file
    pretrain = cfg_get(cfg, 'model.backbone.init_cfg.checkpoint')
    if not isinstance(pretrain, str) or not pretrain:
        if cfg_get(cfg, 'model.backbone.init_cfg.required'):
            if resumed is None:
                raise ValueError(no_pretrain_message(cfg.filename or 'this config'))
            cfg.model.backbone.init_cfg = None  # the resumed weights replace any init
        return
    try:
        require_pretrain_file(pretrain)
    except FileNotFoundError:
        if resumed is None:
            raise
        cfg.model.backbone.init_cfg = None
        if os.environ.get('RANK', '0') == '0':
            print(f'--resume: the pretrain checkpoint {pretrain} '
                  '(model.backbone.init_cfg.checkpoint) no longer exists; not needed, the '
                  f'weights come from {resumed}', file=sys.stderr)


def enable_auto_scale_lr(cfg: Config, config: str) -> None:
    """``--auto-scale-lr``: turn on mmengine's linear lr scaling for this run.

    mmengine's runner then multiplies every parameter group's lr by (world size x
    ``train_dataloader.batch_size``) / ``auto_scale_lr.base_batch_size`` before the schedulers
    are built (absolute ``eta_min`` floors are not scaled, ``eta_min_ratio`` ones follow).
    """
    scale = cfg.get('auto_scale_lr')
    if not scale or scale.get('base_batch_size') is None:
        raise ValueError(f'--auto-scale-lr: {config} has no auto_scale_lr.base_batch_size (the '
                         'total batch its lr is set for); add e.g. '
                         '"auto_scale_lr = dict(base_batch_size=256)" to the config')
    cfg.auto_scale_lr.enable = True


# Every training run started by tools/train.py is guarded (issue 8). A config that lists one of
# these hook types itself keeps its own settings for it.
GUARD_HOOKS = (
    dict(type='NaNGuardHook', check_grad_norm=True, dump_batch=True, max_consecutive_skips=20),
    dict(type='NumClassesGuardHook', check_val=True),
    dict(type='BroadcastBuffersHook'),
    dict(type='SkippedImagesHook'),
    dict(type='TrainBatchesGuardHook'),
)


def die_with_launcher() -> bool:
    """Under torchrun, make this worker receive SIGTERM when its launcher dies.

    torchrun starts its workers in sessions of their own, so a launcher killed with SIGKILL
    (a scheduler's hard kill, ``kill -9``) leaves them training: a ``--resume`` started
    meanwhile shares the work dir with them. Linux's ``PR_SET_PDEATHSIG`` ties each worker to
    the launcher (the thread that started it, the launcher's main thread). SIGTERM ends the
    worker; checkpoints are written atomically, so the last complete one stays.

    Returns:
        bool: Whether the tie is in place (False: not under torchrun, or not Linux).
    """
    if 'TORCHELASTIC_RUN_ID' not in os.environ or not sys.platform.startswith('linux'):
        return False
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL('libc.so.6', use_errno=True)
        if libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            return False
    except OSError:
        return False
    if os.getppid() != parent:  # the launcher died before the tie was made
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def close_distributed() -> None:
    """Destroy the default process group, if any, and its gloo threads, before interpreter exit.

    Left to interpreter teardown, a gloo group's threads (``gloo_tcp_loop``, ``pt_gloo_runloop``)
    can be destroyed while still joinable: "terminate called without an active exception" and
    SIGABRT on one rank after a finished run, which ``torchrun`` reports as a failure (2 of 41
    runs of the 2-rank MIM demo on a 2-core CPU, torch 2.13). ``destroy_process_group`` alone
    does not end those threads while the runner lives: its DDP wrapper holds the group and the
    runner sits in reference cycles. So the runner must be gone first (:func:`run_then_close`
    drops it, and clears the frames of a failed run's traceback that hold it), and the cycles
    are collected here, before the group is destroyed.
    """
    import gc

    import torch.distributed as dist

    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_then_close(cfg: Config, method: str) -> tuple[Any, bool]:
    """Build the runner of ``cfg``, call its ``method`` (``'train'`` / ``'test'``), then
    :func:`close_distributed`, also when the run raises.

    Returns:
        tuple: What the method returned, and whether this process is the main one (asked
        before the process group is gone).

    The runner is only ever named here, so deleting it drops the last reference. When the run
    raises, the traceback's frames (``Runner.train`` and below) hold the runner too: in a
    distributed run their locals are cleared before the group is destroyed, otherwise it could
    still abort in gloo's teardown after printing its traceback (which keeps every file and
    line: only the locals go). A single-process run keeps them for a post-mortem debugger.
    """
    runner = build_runner(cfg)
    try:
        return getattr(runner, method)(), is_main_process()
    except BaseException as err:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            traceback.clear_frames(err.__traceback__)
        raise
    finally:
        del runner
        close_distributed()


def add_guard_hooks(cfg: Config, guards: Iterable[dict] = GUARD_HOOKS) -> None:
    """Append ``guards`` (default: the NaN guard, the num_classes check, the rank-0 buffers at
    validation, the skipped-images report and the empty-loader check) to ``custom_hooks``,
    each unless a hook of its type is already there."""
    hooks = list(cfg.get('custom_hooks') or [])
    for hook in hooks:
        if not isinstance(hook, dict):
            raise TypeError(
                f'custom_hooks holds {hook!r}, a {type(hook).__name__}, not a dict(type=...): '
                f'--cfg-options cannot write dicts inside lists (it passes "dict(...)" as a '
                'string); set custom_hooks in a config file that inherits this one.')
    present = {hook.get('type') for hook in hooks}
    hooks += [dict(hook) for hook in guards if hook['type'] not in present]
    cfg.custom_hooks = hooks


def own_checkpoint(work_dir: str, named: str) -> str | None:
    """The checkpoint a run in ``work_dir`` recorded as ``named``, found in ``work_dir`` first.

    Runs record absolute paths (mmengine's ``last_checkpoint``, the suite's manifests). In a
    work dir moved, copied or mounted at another path they name a missing file or, worse, the
    original run's; the file of that name in ``work_dir`` itself is the run's own.

    Returns:
        str | None: That file, else ``named`` (relative to ``work_dir`` if not absolute) when
        it exists, else None.
    """
    path = named if osp.isabs(named) else osp.join(work_dir, named)
    local = osp.join(work_dir, osp.basename(named))
    if osp.isfile(local) and osp.abspath(local) != osp.abspath(path):
        return local
    return path if osp.isfile(path) else None


def newest_checkpoint_file(work_dir: str) -> str | None:
    """The ``iter_N.pth`` with the largest N in ``work_dir``, else the ``epoch_N.pth`` with the
    largest N (both kinds: the one written last); None when there is neither."""
    newest = {}
    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            match = re.fullmatch(r'(iter|epoch)_([0-9]+)\.pth', name)
            path = osp.join(work_dir, name)
            if match and osp.isfile(path):
                kind, step = match.group(1), int(match.group(2))
                if kind not in newest or step > newest[kind][0]:
                    newest[kind] = (step, path)
    if not newest:
        return None
    return max((path for _, path in newest.values()), key=osp.getmtime)


def latest_checkpoint(work_dir: str, announce: bool = True) -> str | None:
    """The checkpoint ``work_dir/last_checkpoint`` points at, found also in a moved work dir
    (:func:`own_checkpoint`); a pointer to a missing file fails naming it. Without a pointer
    (or an empty one), the newest ``iter_N.pth`` / ``epoch_N.pth`` of ``work_dir``
    (:func:`newest_checkpoint_file`). ``announce`` says on stderr (rank 0) when the work dir's
    own file is taken.

    Returns:
        str | None: The checkpoint to resume, or None when ``work_dir`` has none.

    Raises:
        FileNotFoundError: The pointer names a file that exists neither there nor in
            ``work_dir``.
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = ''
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
    if not named:
        # a pointer lost or left empty (a kill while mmengine wrote it) while the checkpoints
        # are there: without this the run would start again from iteration 0
        found = newest_checkpoint_file(work_dir)
        if found is not None and announce and os.environ.get('RANK', '0') == '0':
            state = 'is empty' if osp.isfile(pointer) else 'does not exist'
            print(f'--resume: {pointer} {state}; resuming {found}, the newest checkpoint '
                  'file of the work dir', file=sys.stderr)
        return found
    if '://' in named:  # a remote checkpoint backend: left to it
        return named
    found = own_checkpoint(work_dir, named)
    if found is None:
        raise FileNotFoundError(
            f'--resume: {pointer} names {named}, which does not exist (nor does '
            f'{osp.join(work_dir, osp.basename(named))}); pass the checkpoint to resume as '
            '--resume PATH')
    if found != named and announce and os.environ.get('RANK', '0') == '0':
        print(f'--resume: {pointer} names {named}; resuming {found}, the file of that name '
              'in this work dir (the work dir was moved or copied)', file=sys.stderr)
    return found


def prepare_test_config(config: str, checkpoint: str, cfg_options: dict | None = None,
                        work_dir: str | None = None, amp: bool = False,
                        launcher: str = 'none', cuda: bool | None = None) -> Config:
    """Everything ``tools/test.py`` does before building the runner.

    Args:
        config (str): Config file.
        checkpoint (str): Checkpoint to evaluate.
        cfg_options (dict | None): ``--cfg-options``.
        work_dir (str | None): ``--work-dir``.
        amp (bool): Run the test loop under autocast (``test_cfg.fp16``).
        launcher (str): ``--launcher``.
        cuda (bool | None): Override CUDA detection (tests).

    Returns:
        Config: Ready for :func:`build_runner`.
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    check_readable_checkpoint(checkpoint)
    cfg = _load_for_run(config, cfg_options, work_dir)
    # else mmengine's "self._test_loop should not be None" after the runner is built
    missing = [key for key in ('test_dataloader', 'test_evaluator', 'test_cfg')
               if cfg.get(key) is None]
    if missing:
        raise ValueError(
            f'{config} has no {", ".join(missing)}, so it cannot be tested; a pretraining '
            '(MIM / tokenizer) config has no test loop: test the downstream configs trained '
            'from its checkpoint instead (fine-tuning, linear probe, UperNet, Mask R-CNN)')
    cfg.load_from = checkpoint
    cfg.resume = False
    # a checkpoint without the model's weights would be scored at random initialisation
    add_guard_hooks(cfg, [dict(type='TestedCheckpointGuardHook')])
    if amp:
        cfg.setdefault('test_cfg', ConfigDict())
        cfg.test_cfg['fp16'] = True
    configure_distributed(cfg, launcher, cuda=cuda)
    return cfg


def build_runner(cfg: Config):
    """Build the runner the config asks for (``runner_type``) or mmengine's ``Runner``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def is_main_process() -> bool:
    """Rank 0, or not distributed."""
    import torch.distributed as torch_dist
    return not torch_dist.is_initialized() or torch_dist.get_rank() == 0


def repo_root() -> Path:
    """The repository root (the parent of the ``beitv2_mm`` package)."""
    return Path(__file__).resolve().parents[1]


def format_options(options: dict[str, Any] | Iterable[tuple[str, Any]]) -> list[str]:
    """``{'a.b': 1}`` -> ``['a.b=1']`` for a ``--cfg-options`` command line.

    Strings are passed as is; lists/tuples are written in the bracket syntax mmengine's
    ``DictAction`` parses.
    """
    items = options.items() if isinstance(options, dict) else options
    out = []
    for key, value in items:
        if isinstance(value, (list, tuple)):
            inner = ','.join(str(v) for v in value)
            value = f'[{inner}]' if isinstance(value, list) else f'({inner})'
        out.append(f'{key}={value}')
    return out
