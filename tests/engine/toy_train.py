"""A tiny mmengine training run whose every random stream matters, for the reliability tests.

The data set draws python, numpy and torch random numbers per sample (augmentation), the
model has dropout and a random feature mask (like MIM masking), the optimizer has momentum state
and the learning rate follows a schedule, so a resume that forgets any of RNG states, data
position, optimizer or scheduler changes the losses after it.

Used in-process (:func:`build_cfg`, :func:`run`) and as a subprocess that the kill-and-resume
test SIGKILLs::

    python tests/engine/toy_train.py WORK_DIR [--resume] [--loop iter|epoch] [--max-iters N]
        [--ckpt-interval K] [--sleep S] [--num-workers W]

Each finished iteration appends ``{"iter": i, "loss": x}`` to ``WORK_DIR/losses.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.evaluator import BaseMetric
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


@DATASETS.register_module(force=True)
class ToyReliabilityDataset(BaseDataset):
    """Fixed random features and targets, with random augmentation on every access."""

    METAINFO = dict(classes=('a', 'b', 'c'))

    def __init__(self, length: int = 24, dim: int = 8, augment: bool = True, **kwargs):
        self.length, self.dim, self.augment = length, dim, augment
        super().__init__(lazy_init=False, serialize_data=False, **kwargs)

    def load_data_list(self):
        g = np.random.RandomState(1234)
        return [dict(x=g.randn(self.dim).astype(np.float32),
                     y=np.float32(g.randn())) for _ in range(self.length)]

    def __getitem__(self, idx):
        info = self.data_list[idx]
        if not self.augment:
            return dict(inputs=torch.from_numpy(info['x']), target=torch.tensor(info['y']))
        x = info['x'] + np.random.normal(0, 0.1, self.dim).astype(np.float32)  # numpy RNG
        if random.random() < 0.5:  # python RNG
            x = x[::-1].copy()
        x = torch.from_numpy(x) * (1 + 0.05 * torch.rand(1))  # torch RNG
        return dict(inputs=x, target=torch.tensor(info['y']))


class _PoisonGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``factor`` (NaN / inf) in backward."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


@MODELS.register_module(force=True)
class ToyReliabilityModel(BaseModel):
    """MLP regressor with dropout and a random input mask.

    ``nan_at`` makes the loss NaN at those (1-based) forward calls; ``nan_grad_at`` /
    ``inf_grad_at`` keep the loss finite but make the gradients NaN / inf.
    """

    def __init__(self, dim: int = 8, hidden: int = 16, num_classes: int = 3, nan_at=(),
                 nan_grad_at=(), inf_grad_at=(), random: bool = True):
        super().__init__()
        self.random = random
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(),
                                 nn.Dropout(0.3 if random else 0.0),
                                 nn.Linear(hidden, 1))
        self.head = nn.Module()
        self.head.num_classes = num_classes
        self.register_buffer('ema_stat', torch.zeros(hidden))  # like an EMA codebook buffer
        self.nan_at = set(nan_at)
        self.nan_grad_at = set(nan_grad_at)
        self.inf_grad_at = set(inf_grad_at)
        self.calls = 0

    def forward(self, inputs, target=None, mode='loss'):
        self.calls += 1
        mask = (torch.rand_like(inputs) > 0.2).float() if self.random else 1.0  # MIM-like
        hidden = self.net[1](self.net[0](inputs * mask))
        with torch.no_grad():
            self.ema_stat.mul_(0.9).add_(0.1 * hidden.mean(0))
        pred = self.net[3](self.net[2](hidden)).squeeze(-1)
        if self.calls in self.nan_grad_at:
            pred = _PoisonGrad.apply(pred, float('nan'))
        if self.calls in self.inf_grad_at:
            pred = _PoisonGrad.apply(pred, float('inf'))
        loss = ((pred - target) ** 2).mean()
        if self.calls in self.nan_at:
            loss = loss * float('nan')
        if mode == 'loss':
            return dict(loss=loss)
        return [pred]


@HOOKS.register_module(force=True)
class ToyLossRecorderHook(Hook):
    """Append each iteration's loss to ``<work_dir>/losses.jsonl`` (flushed: survives SIGKILL)."""

    priority = 'LOWEST'

    def __init__(self, sleep: float = 0.0):
        self.sleep = sleep

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        from mmengine.dist import get_rank, get_world_size
        name = 'losses.jsonl' if get_world_size() == 1 else f'losses_rank{get_rank()}.jsonl'
        with open(osp.join(runner.work_dir, name), 'a') as f:
            loss = float(outputs['loss'].detach())
            f.write(json.dumps(dict(iter=runner.iter + 1, loss=loss)) + '\n')
            f.flush()
            os.fsync(f.fileno())
        if self.sleep:
            time.sleep(self.sleep)


class SimulatedCrash(RuntimeError):
    """Raised by :class:`CrashAtIterHook` (the in-process stand-in for a kill)."""


@HOOKS.register_module(force=True)
class CrashAtIterHook(Hook):
    """Raise :class:`SimulatedCrash` after iteration ``at`` (after any checkpoint of that step)."""

    priority = 'LOWEST'

    def __init__(self, at: int):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            raise SimulatedCrash(f'simulated crash after iteration {self.at}')


@METRICS.register_module(force=True)
class ToyCountMetric(BaseMetric):
    """Counts the validation samples (a validation that ran leaves ``toy/count``)."""

    def process(self, data_batch, data_samples):
        self.results.append(len(data_samples[0]))

    def compute_metrics(self, results):
        return {'count': sum(results)}


@HOOKS.register_module(force=True)
class ToyValRecorderHook(Hook):
    """Append ``{"iter": i, "epoch": e}`` to ``<work_dir>/vals.jsonl`` after each validation;
    with ``crash_at_iter``, raise :class:`SimulatedCrash` as the validation at that training
    iteration starts (a run stopped during its validation)."""

    def __init__(self, crash_at_iter: int | None = None):
        self.crash_at_iter = crash_at_iter

    def before_val_epoch(self, runner):
        if runner.iter == self.crash_at_iter:
            raise SimulatedCrash(f'simulated crash in the validation at iteration {runner.iter}')

    def after_val_epoch(self, runner, metrics=None):
        with open(osp.join(runner.work_dir, 'vals.jsonl'), 'a') as f:
            f.write(json.dumps(dict(iter=runner.iter, epoch=runner.epoch)) + '\n')


def read_vals(work_dir: str) -> list:
    path = osp.join(work_dir, 'vals.jsonl')
    if not osp.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def build_cfg(work_dir: str, loop: str = 'iter', max_iters: int = 12, ckpt_interval: int = 4,
              num_workers: int = 0, sleep: float = 0.0, batch_size: int = 4, seed: int = 0,
              extra_hooks=(), model_kwargs=None, dataset_len: int = 24,
              optim_wrapper=None, diff_rank_seed: bool = False,
              val_interval: int | None = None) -> dict:
    """Config dict of the toy run (iteration- or epoch-based, checkpoints every K iterations;
    with ``val_interval``, a validation every that many iterations / epochs)."""
    from mmengine.config import Config

    sampler = (dict(type='InfiniteSampler', shuffle=True) if loop == 'iter'
               else dict(type='DefaultSampler', shuffle=True))
    if loop == 'iter':
        train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10 ** 9)
    else:
        iters_per_epoch = dataset_len // batch_size
        assert max_iters % iters_per_epoch == 0
        train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_iters // iters_per_epoch)
    cfg = dict(
        work_dir=work_dir,
        model=dict(type='ToyReliabilityModel', **(model_kwargs or {})),
        train_dataloader=dict(
            batch_size=batch_size, num_workers=num_workers,
            persistent_workers=False, sampler=sampler,
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='ToyReliabilityDataset', length=dataset_len)),
        train_cfg=train_cfg,
        optim_wrapper=optim_wrapper or dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.2, by_epoch=False, begin=0,
                              end=max_iters // 2),
                         dict(type='CosineAnnealingLR', by_epoch=False, begin=max_iters // 2,
                              end=max_iters)],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=ckpt_interval,
                            max_keep_ckpts=1),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='ToyLossRecorderHook', sleep=sleep), *extra_hooks],
        randomness=dict(seed=seed, diff_rank_seed=diff_rank_seed),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        log_level='WARNING',
        # A distinct name per run: mmengine keys its MessageHub/logger instances by it.
        experiment_name=f'toy_{osp.basename(osp.normpath(work_dir))}_{time.time_ns()}',
    )
    if val_interval:
        cfg['train_cfg']['val_interval'] = val_interval
        cfg.update(val_dataloader=dict(
            batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='ToyReliabilityDataset', length=8, augment=False)),
            val_cfg=dict(type='ValLoop'), val_evaluator=dict(type='ToyCountMetric'))
    return Config(cfg)


def run(cfg, resume: bool = False):
    """Train the toy config (optionally ``--resume``-ing the latest checkpoint)."""
    import beitv2_mm  # noqa: F401  (applies the reliability fixes)
    from mmengine.runner import Runner

    cfg.resume = resume
    if cfg.get('launcher', 'none') != 'none':  # gloo on CPU, as tools/train.py does
        from beitv2_mm.engine.launch import configure_distributed
        configure_distributed(cfg, cfg.launcher)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@HOOKS.register_module(force=True)
class DieAtIterHook(Hook):
    """Rank ``rank`` SIGKILLs itself (a lost node, an OOM-killed rank) or, with ``hang``,
    stops participating without exiting (a stuck rank) before iteration ``at``."""

    def __init__(self, rank: int, at: int, hang: bool = False):
        self.rank, self.at, self.hang = rank, at, hang

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        from mmengine.dist import get_rank
        if get_rank() == self.rank and runner.iter + 1 == self.at:
            if self.hang:
                while True:
                    time.sleep(1)
            import signal
            os.kill(os.getpid(), signal.SIGKILL)


def read_losses(work_dir: str, name: str = 'losses.jsonl') -> dict:
    """``{iteration: loss}`` from ``losses.jsonl``; later lines (the resumed run) win."""
    losses = {}
    path = osp.join(work_dir, name)
    if osp.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    losses[rec['iter']] = rec['loss']
    return losses


def block_during_checkpoint_save(nth: int, marker: str) -> None:
    """Make the ``nth`` checkpoint write stop half-way (for the kill-during-save test).

    Wraps every way a checkpoint reaches the disk (mmengine's ``LocalBackend`` opens files with
    ``open``; the atomic writer uses ``os.fdopen``): the ``nth`` write of a ``.pth`` payload
    writes half its bytes, flushes them, touches ``marker`` and sleeps until killed.
    """
    import builtins

    import mmengine.fileio.backends.local_backend as local_backend

    state = dict(count=0)

    class _HalfWriter:
        def __init__(self, f):
            self._f = f

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

        def write(self, data):
            if isinstance(data, (bytes, bytearray)) and len(data) > 1000:
                state['count'] += 1
                if state['count'] == nth:
                    self._f.write(data[:len(data) // 2])
                    self._f.flush()
                    os.fsync(self._f.fileno())
                    open(marker, 'w').close()
                    while True:
                        time.sleep(1)
            return self._f.write(data)

    real_open, real_fdopen = builtins.open, os.fdopen
    local_backend.open = lambda *a, **k: _HalfWriter(real_open(*a, **k))
    os.fdopen = lambda *a, **k: _HalfWriter(real_fdopen(*a, **k))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dir')
    parser.add_argument('--resume', action='store_true')
    parser.add_argument('--loop', default='iter', choices=['iter', 'epoch'])
    parser.add_argument('--max-iters', type=int, default=12)
    parser.add_argument('--ckpt-interval', type=int, default=4)
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument('--sleep', type=float, default=0.0)
    parser.add_argument('--diff-rank-seed', action='store_true')
    parser.add_argument('--launcher', default='none', choices=['none', 'pytorch'])
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--no-random', action='store_true',
                        help='no dropout, mask or augmentation (for world-size agreement)')
    parser.add_argument('--die', type=int, nargs=2, metavar=('RANK', 'ITER'),
                        help='rank RANK SIGKILLs itself before iteration ITER')
    parser.add_argument('--hang', action='store_true', help='with --die: hang instead')
    parser.add_argument('--dist-timeout', type=int, default=None)
    parser.add_argument('--block-save', type=int, default=0,
                        help='stop half-way through the N-th checkpoint write (then wait)')
    parser.add_argument('--no-fix', action='store_true',
                        help='run with upstream mmengine checkpointing (negative control)')
    args = parser.parse_args(argv)
    if args.no_fix:
        import beitv2_mm  # noqa: F401
        from beitv2_mm.engine.checkpoint import uninstall_atomic_checkpointing
        uninstall_atomic_checkpointing()
    if args.block_save:
        block_during_checkpoint_save(args.block_save, osp.join(args.work_dir, 'BLOCKED'))
    cfg = build_cfg(args.work_dir, loop=args.loop, max_iters=args.max_iters,
                    ckpt_interval=args.ckpt_interval, num_workers=args.num_workers,
                    sleep=args.sleep, diff_rank_seed=args.diff_rank_seed,
                    batch_size=args.batch_size,
                    extra_hooks=[dict(type='DieAtIterHook', rank=args.die[0], at=args.die[1],
                                      hang=args.hang)]
                    if args.die else [],
                    model_kwargs=dict(random=False) if args.no_random else None,
                    dataset_len=48 if args.no_random else 24)
    cfg.launcher = args.launcher
    if args.dist_timeout:
        cfg.env_cfg.dist_cfg.timeout = args.dist_timeout
    if args.no_random:
        cfg.train_dataloader.dataset.augment = False
    run(cfg, resume=args.resume)  # the runner it returns is dropped at once
    if args.launcher != 'none':  # as tools/train.py: gloo's threads end before teardown
        from beitv2_mm.engine.launch import close_distributed
        close_distributed()


if __name__ == '__main__':
    main()
