"""NaNGuardHook stops at the first non-finite loss / grad norm, never saving the poisoned state;
AMP loss-scaler skipped steps are tolerated; NumClassesGuardHook names the mismatching keys."""
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from toy_train import build_cfg, read_losses, run  # noqa: E402

import beitv2_mm  # noqa: F401,E402
from beitv2_mm.engine.hooks import (NaNGuardHook, NonFiniteTrainingError, NumClassesGuardHook,
                                    NumClassesMismatchError)


@OPTIM_WRAPPERS.register_module(force=True)
class CPUGradScalerOptimWrapper(OptimWrapper):
    """fp32 compute with a real dynamic ``torch.amp.GradScaler`` on CPU: mmengine's
    ``AmpOptimWrapper`` refuses to build without a GPU, the scaler logic is the same."""

    def __init__(self, init_scale: float = 2.0 ** 8, **kwargs):
        super().__init__(**kwargs)
        self.loss_scaler = torch.amp.GradScaler('cpu', init_scale=init_scale)

    def backward(self, loss, **kwargs):
        self.loss_scaler.scale(loss).backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs):
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update()


def _guard(**kwargs):
    return dict(type='NaNGuardHook', **kwargs)


def test_nan_loss_stops_run_and_keeps_last_good_checkpoint(tmp_path):
    work_dir = str(tmp_path / 'nan')
    # Iteration 6 is both poisoned and a checkpoint step: the guard must win.
    cfg = build_cfg(work_dir, max_iters=9, ckpt_interval=3, extra_hooks=[_guard(dump_batch=True)],
                    model_kwargs=dict(nan_at=[6]))
    with pytest.raises(NonFiniteTrainingError) as info:
        run(cfg)
    message = str(info.value)
    assert 'iteration 6' in message and 'loss=nan' in message
    assert 'iter_3.pth' in message  # names the last good checkpoint
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('iter_3.pth')
    assert not osp.exists(osp.join(work_dir, 'iter_6.pth'))
    assert sorted(read_losses(work_dir)) == [1, 2, 3, 4, 5]  # hooks after the guard never ran
    batch = torch.load(osp.join(work_dir, 'nonfinite_batch_iter6.pth'), weights_only=False)
    assert batch['inputs'].shape == (4, 8)
    ckpt = torch.load(osp.join(work_dir, 'iter_3.pth'), weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values())


def test_nan_grad_norm_with_finite_loss_is_caught(tmp_path):
    cfg = build_cfg(str(tmp_path / 'grad'), max_iters=6, ckpt_interval=100,
                    extra_hooks=[_guard()], model_kwargs=dict(nan_grad_at=[4]),
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05),
                                       clip_grad=dict(max_norm=10.0)))
    with pytest.raises(NonFiniteTrainingError, match=r'iteration 4 .*grad_norm=nan'):
        run(cfg)


def test_loss_scaler_skipped_steps_are_not_failures(tmp_path):
    amp = dict(type='CPUGradScalerOptimWrapper', optimizer=dict(type='SGD', lr=0.05),
               clip_grad=dict(max_norm=10.0))
    work_dir = str(tmp_path / 'amp')
    cfg = build_cfg(work_dir, max_iters=8, ckpt_interval=100, optim_wrapper=amp,
                    extra_hooks=[_guard(max_consecutive_skips=3)],
                    model_kwargs=dict(inf_grad_at=[3, 4, 7]))
    runner = run(cfg)  # overflowing steps 3, 4 and 7 are skipped by the scaler: no failure
    assert sorted(read_losses(work_dir)) == list(range(1, 9))
    assert runner.optim_wrapper.loss_scaler.get_scale() < 2.0 ** 8  # the scaler did back off

    cfg = build_cfg(str(tmp_path / 'amp_broken'), max_iters=10, ckpt_interval=100,
                    optim_wrapper=amp, extra_hooks=[_guard(max_consecutive_skips=3)],
                    model_kwargs=dict(inf_grad_at=list(range(2, 11))))
    with pytest.raises(NonFiniteTrainingError,
                       match=r'iteration 5 [\s\S]*skipped 4 steps in a row'):
        run(cfg)


def test_nan_guard_is_found_from_every_scope():
    from mmengine.registry import HOOKS, DefaultScope  # noqa: F401

    assert isinstance(HOOKS.build(dict(type='NaNGuardHook')), NaNGuardHook)
    for scope in ('mmpretrain', 'mmseg', 'mmdet'):
        registry = pytest.importorskip(f'{scope}.registry')
        assert registry.HOOKS.get('NaNGuardHook') is NaNGuardHook
        assert registry.HOOKS.get('NumClassesGuardHook') is NumClassesGuardHook


def test_num_classes_mismatch_names_both_and_the_key(tmp_path):
    cfg = build_cfg(str(tmp_path / 'cls'), max_iters=2, ckpt_interval=100,
                    extra_hooks=[dict(type='NumClassesGuardHook')],
                    model_kwargs=dict(num_classes=5))
    with pytest.raises(NumClassesMismatchError) as info:
        run(cfg)
    message = str(info.value)
    assert 'ToyReliabilityDataset' in message and '3 classes' in message
    assert 'model.head.num_classes = 5' in message
    assert '--cfg-options model.head.num_classes=3' in message
    assert not osp.exists(osp.join(str(tmp_path / 'cls'), 'losses.jsonl'))  # failed before step 1

    # a head with *more* classes than the data (an ImageNet config's 1000 on a 3-class set)
    # trains without error but is just as wrong
    cfg = build_cfg(str(tmp_path / 'wide'), max_iters=2, ckpt_interval=100,
                    extra_hooks=[dict(type='NumClassesGuardHook')],
                    model_kwargs=dict(num_classes=1000))
    with pytest.raises(NumClassesMismatchError, match='model.head.num_classes = 1000'):
        run(cfg)

    cfg = build_cfg(str(tmp_path / 'ok'), max_iters=2, ckpt_interval=100,
                    extra_hooks=[dict(type='NumClassesGuardHook')])
    run(cfg)  # 3 == 3: trains


def test_num_classes_check_skips_class_agnostic_rpn_and_reports_nested_heads():
    def head(n):
        m = nn.Module()
        m.num_classes = n
        return m

    detector = nn.Module()
    detector.rpn_head = head(1)  # class agnostic by design
    detector.roi_head = nn.Module()
    detector.roi_head.bbox_head = head(80)
    detector.roi_head.mask_head = head(10)
    with pytest.raises(NumClassesMismatchError) as info:
        NumClassesGuardHook.check_model_against_classes(detector, [f'c{i}' for i in range(10)])
    message = str(info.value)
    assert 'model.roi_head.bbox_head.num_classes = 80' in message
    assert 'mask_head' not in message and 'rpn' not in message


def test_num_classes_check_skips_headless_and_frozen_modules():
    """A VQ-KD teacher (timm, built with num_classes=0 and frozen) trains on ImageNet's 1000
    classes without a classifier; a frozen module that has one is not trained on the labels
    either. A trainable head is still checked."""
    def head(n, frozen=False):
        m = nn.Linear(2, max(n, 1))
        m.num_classes = n
        m.requires_grad_(not frozen)
        return m

    classes = [f'c{i}' for i in range(10)]
    algorithm = nn.Module()
    algorithm.teacher = head(0)  # no classifier, trainable flags as built
    algorithm.tokenizer = head(5, frozen=True)
    NumClassesGuardHook.check_model_against_classes(algorithm, classes)
    algorithm.head = head(7)
    with pytest.raises(NumClassesMismatchError, match=r'model\.head\.num_classes = 7'):
        NumClassesGuardHook.check_model_against_classes(algorithm, classes)


def test_runtime_reliability_piece_enables_the_guards(tmp_path, repo_root):
    """configs/_base_/runtime_reliability.py, included as its docstring says, gives a runner
    with both guards, a fixed seed and a process-group timeout."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    piece = repo_root / 'configs' / '_base_' / 'runtime_reliability.py'
    toy = build_cfg(str(tmp_path / 'work'), max_iters=2, ckpt_interval=100)
    toy.pop('custom_hooks')
    toy.pop('randomness')
    toy.pop('env_cfg')
    experiment = tmp_path / 'experiment.py'
    experiment.write_text(
        f'_base_ = [{str(piece)!r}]\n'
        'custom_hooks = _base_.reliability_hooks + [dict(type="ToyLossRecorderHook")]\n'
        'randomness = _base_.reliability_randomness\n'
        'env_cfg = dict(cudnn_benchmark=False, dist_cfg=_base_.reliability_dist_cfg)\n')
    cfg = Config.fromfile(str(experiment))
    cfg.merge_from_dict(toy.to_dict())
    assert cfg.env_cfg.dist_cfg.timeout > 0 and cfg.randomness.seed is not None
    runner = Runner.from_cfg(cfg)
    names = [type(h).__name__ for h in runner.hooks]
    assert 'NaNGuardHook' in names and 'NumClassesGuardHook' in names
    assert 'BroadcastBuffersHook' in names
    from beitv2_mm.engine.launch import GUARD_HOOKS  # what tools/train.py adds: the same
    assert [dict(h) for h in cfg.reliability_hooks] == [dict(h) for h in GUARD_HOOKS]
    runner.train()


def _buffers_rank(rank, init_file, out_dir):
    import torch.distributed as dist
    from types import SimpleNamespace

    from beitv2_mm.engine.hooks import BroadcastBuffersHook

    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        bn = nn.BatchNorm1d(3)
        bn.running_mean.fill_(float(rank + 1))  # each rank's own statistics, as after training
        BroadcastBuffersHook().before_val_epoch(SimpleNamespace(model=bn))
        torch.save(bn.running_mean, osp.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_validation_uses_rank_zero_buffers(tmp_path):
    """Two gloo ranks with different BN statistics validate with rank 0's, which the
    checkpoint holds; in one process the hook does nothing."""
    import torch.multiprocessing as mp

    from beitv2_mm.engine.hooks import BroadcastBuffersHook

    mp.spawn(_buffers_rank, args=(str(tmp_path / 'init'), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f'rank{rank}.pth'), torch.ones(3)), rank
    from types import SimpleNamespace
    bn = nn.BatchNorm1d(3)
    BroadcastBuffersHook().before_val_epoch(SimpleNamespace(model=bn))
    assert torch.equal(bn.running_mean, torch.zeros(3))


def test_tested_checkpoint_of_an_official_release_is_sent_to_the_converter():
    """tools/test.py on an unconverted official release (keys ``blocks.N.*``): the refusal
    names the converter, as training from such a file does."""
    from types import SimpleNamespace

    from beitv2_mm.engine.hooks import CheckpointMismatchError, TestedCheckpointGuardHook
    runner = SimpleNamespace(_train_loop=None, model=nn.Linear(2, 2),
                             cfg=SimpleNamespace(load_from='beitv2_ft1k.pth', filename='ft.py'))
    official = {'blocks.0.attn.qkv.weight': torch.zeros(6, 2), 'head.weight': torch.zeros(2, 2)}
    with pytest.raises(CheckpointMismatchError,
                       match=r'beitv2_ft1k\.pth lacks 2 of the 2 weights.*official BEiT release: '
                             r'convert it first'):
        TestedCheckpointGuardHook().after_load_checkpoint(runner, {'model': official})
    ours = {'weight': torch.zeros(3, 2)}  # a shape mismatch, no release keys: no converter
    with pytest.raises(CheckpointMismatchError) as err:
        TestedCheckpointGuardHook().after_load_checkpoint(runner, {'state_dict': ours})
    assert 'convert' not in str(err.value)
