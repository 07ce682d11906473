"""A run interrupted mid-epoch and resumed gives the same losses as an uninterrupted run.

The toy run (tests/engine/toy_train.py) draws python/numpy/torch random numbers in its data
augmentation and model, keeps momentum and an LR schedule and an EMA buffer, so forgetting
any of RNG states, data position, optimizer, scheduler or buffers changes the losses.
"""
import math
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from toy_train import SimulatedCrash, build_cfg, read_losses, run  # noqa: E402

import beitv2_mm  # noqa: F401,E402
from beitv2_mm.engine import resume as resume_module  # noqa: E402

TOY = osp.join(osp.dirname(osp.abspath(__file__)), 'toy_train.py')
MAX_ITERS, CKPT_EVERY, CRASH_AT = 12, 4, 6  # 6 batches per epoch: checkpoint mid-epoch


def _reference(tmp_path, loop, num_workers=0):
    work_dir = str(tmp_path / f'ref_{loop}_{num_workers}')
    run(build_cfg(work_dir, loop=loop, max_iters=MAX_ITERS, ckpt_interval=CKPT_EVERY,
                  num_workers=num_workers))
    losses = read_losses(work_dir)
    assert sorted(losses) == list(range(1, MAX_ITERS + 1))
    return losses


def _crash_and_resume_in_process(tmp_path, loop, name):
    work_dir = str(tmp_path / name)
    crash = dict(type='CrashAtIterHook', at=CRASH_AT)
    with pytest.raises(SimulatedCrash):
        run(build_cfg(work_dir, loop=loop, max_iters=MAX_ITERS, ckpt_interval=CKPT_EVERY,
                      extra_hooks=[crash]))
    run(build_cfg(work_dir, loop=loop, max_iters=MAX_ITERS, ckpt_interval=CKPT_EVERY),
        resume=True)
    return read_losses(work_dir)


@pytest.mark.parametrize('loop', ['iter', 'epoch'])
def test_resume_matches_uninterrupted_run(tmp_path, loop):
    reference = _reference(tmp_path, loop)
    resumed = _crash_and_resume_in_process(tmp_path, loop, f'resumed_{loop}')
    assert sorted(resumed) == sorted(reference)  # no batch trained twice, none skipped
    for it in range(CKPT_EVERY + 1, MAX_ITERS + 1):
        assert math.isclose(resumed[it], reference[it], rel_tol=1e-6, abs_tol=1e-7), \
            (it, resumed[it], reference[it])


@pytest.mark.parametrize('loop', ['iter', 'epoch'])
def test_run_stopped_in_its_validation_validates_on_resume(tmp_path, loop):
    """The checkpoint of a validation step is written before that validation: a run stopped
    during it resumed past it, and a run stopped in its final validation never wrote its
    metrics. Resumed at such a step, the run validates first; then goes on as scheduled."""
    from toy_train import ToyValRecorderHook, read_vals  # noqa: F401  (registers the hook)
    work_dir = str(tmp_path / loop)
    # iter: validation every 4 iterations; epoch: every epoch (6 iterations), 2 epochs
    val_interval, stop_at = (4, 4) if loop == 'iter' else (1, 6)
    max_iters = 8 if loop == 'iter' else 12

    def cfg(crash=None):
        c = build_cfg(work_dir, loop=loop, max_iters=max_iters, ckpt_interval=4,
                      val_interval=val_interval,
                      extra_hooks=[dict(type='ToyValRecorderHook', crash_at_iter=crash)])
        if loop == 'epoch':  # the checkpoint of an epoch, written before its validation
            c.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=True,
                                              interval=1)
        return c

    with pytest.raises(SimulatedCrash):
        run(cfg(crash=stop_at))
    assert read_vals(work_dir) == []
    run(cfg(), resume=True)
    steps = [v['iter'] for v in read_vals(work_dir)]
    assert steps == [stop_at, max_iters]  # the lost validation first, then the last one
    # resumed at the last step (stopped in the final validation): it validates, trains nothing
    os.remove(osp.join(work_dir, 'vals.jsonl'))
    losses = read_losses(work_dir)
    run(cfg(), resume=True)
    assert [v['iter'] for v in read_vals(work_dir)] == [max_iters]
    assert read_losses(work_dir) == losses


def test_resuming_a_finished_run_replays_no_batches(tmp_path, monkeypatch):
    """A requeued job always passes --resume: on a finished iteration-based run it replayed
    every training batch of the schedule (hours of data loading for a 160k-iteration run) to
    train nothing. Now it loads no training batch; the final validation runs once (the
    checkpoint cannot tell whether the stopped run finished it), nothing is trained."""
    from toy_train import ToyReliabilityDataset, ToyValRecorderHook, read_vals  # noqa: F401
    work_dir = str(tmp_path / 'finished')

    def cfg():
        return build_cfg(work_dir, max_iters=8, ckpt_interval=4, val_interval=4,
                         extra_hooks=[dict(type='ToyValRecorderHook')])

    run(cfg())
    losses = read_losses(work_dir)
    assert [v['iter'] for v in read_vals(work_dir)] == [4, 8]
    loaded = []
    get_item = ToyReliabilityDataset.__getitem__

    def counting(self, idx):
        if self.augment:  # the training set (the validation set is not augmented)
            loaded.append(idx)
        return get_item(self, idx)

    monkeypatch.setattr(ToyReliabilityDataset, '__getitem__', counting)
    runner = run(cfg(), resume=True)
    assert runner.iter == 8 and loaded == []
    assert [v['iter'] for v in read_vals(work_dir)] == [4, 8, 8]
    assert read_losses(work_dir) == losses
    # a run stopped before the end still replays its batches (exact data position)
    loaded.clear()
    run(build_cfg(work_dir, max_iters=12, ckpt_interval=4), resume=True)
    assert len(loaded) == 8 * 4 + 4 * 4  # 8 batches replayed, 4 trained, 4 samples each


def _with_random_seed(monkeypatch, seed):
    """Make mmengine's ``sync_random_seed`` (its draw for unset seeds) return ``seed``."""
    import mmengine.dataset.sampler as sampler_module
    import mmengine.runner.runner as runner_module
    import mmengine.runner.utils as runner_utils

    for module in (sampler_module, runner_module, runner_utils):
        if hasattr(module, 'sync_random_seed'):
            monkeypatch.setattr(module, 'sync_random_seed', lambda *a, **k: seed)


@pytest.mark.parametrize('loop', ['iter', 'epoch'])
def test_resume_restores_the_seeds_of_an_unseeded_run(tmp_path, monkeypatch, loop):
    """``randomness.seed=None``: mmengine draws a seed per run (and, with diff_rank_seed, a
    sampler seed); the resumed run must continue the killed run's data order and streams."""
    def cfg(name, *hooks):
        return build_cfg(str(tmp_path / name), loop=loop, max_iters=MAX_ITERS, seed=None,
                         ckpt_interval=CKPT_EVERY, diff_rank_seed=True, extra_hooks=list(hooks))

    _with_random_seed(monkeypatch, 111)
    run(cfg('ref'))
    with pytest.raises(SimulatedCrash):
        run(cfg('resumed', dict(type='CrashAtIterHook', at=CRASH_AT)))
    _with_random_seed(monkeypatch, 222)  # the new process draws other seeds
    run(cfg('resumed'), resume=True)
    reference, resumed = read_losses(str(tmp_path / 'ref')), read_losses(str(tmp_path / 'resumed'))
    for it in range(CKPT_EVERY + 1, MAX_ITERS + 1):
        assert math.isclose(resumed[it], reference[it], rel_tol=1e-6, abs_tol=1e-7), it


def test_data_order_follows_the_seed_with_diff_rank_seed(tmp_path, monkeypatch):
    """Upstream draws a random sampler seed when ``diff_rank_seed=True`` even with a fixed
    ``randomness.seed``; here two runs with seed 0 must train identically."""
    losses = []
    for name, drawn in (('a', 111), ('b', 222)):
        _with_random_seed(monkeypatch, drawn)
        work_dir = str(tmp_path / name)
        run(build_cfg(work_dir, max_iters=4, ckpt_interval=100, diff_rank_seed=True))
        losses.append(read_losses(work_dir))
    assert losses[0] == losses[1]


@pytest.mark.parametrize('loop', ['iter', 'epoch'])
def test_upstream_resume_diverges(tmp_path, loop):
    """Negative control: with mmengine's own resume (re-seeded RNG; the epoch loop restarting
    the half-done epoch) the losses after the resume differ, so the test above tests something."""
    reference = _reference(tmp_path, loop)
    resume_module.uninstall_exact_resume()
    try:
        resumed = _crash_and_resume_in_process(tmp_path, loop, f'upstream_{loop}')
    finally:
        resume_module.install_exact_resume()
    after = range(CKPT_EVERY + 1, MAX_ITERS + 1)
    assert any(abs(resumed.get(it, 0.0) - reference[it]) > 1e-4 for it in after)


def test_checkpoint_holds_every_resumable_state(tmp_path):
    work_dir = str(tmp_path / 'content')
    runner = run(build_cfg(work_dir, max_iters=4, ckpt_interval=4))
    ckpt = torch.load(osp.join(work_dir, 'iter_4.pth'), weights_only=False)
    assert torch.equal(ckpt['state_dict']['ema_stat'], runner.model.ema_stat)  # EMA buffers
    assert ckpt['optimizer']['state']  # momentum buffers
    assert len(ckpt['param_schedulers']) == 2
    assert ckpt['meta']['iter'] == 4 and ckpt['meta']['seed'] == 0
    assert set(ckpt['meta']['rng_states'][0]) >= {'python', 'numpy', 'torch'}
    assert 'train/loss' in ckpt['message_hub']['log_scalars']


@pytest.mark.slow
@pytest.mark.parametrize('loop,num_workers', [('iter', 0), ('epoch', 1)])
def test_sigkill_then_resume_matches(tmp_path, loop, num_workers):
    """Kill a real training process with SIGKILL mid-epoch, ``--resume`` it, compare losses."""
    reference = _reference(tmp_path, loop, num_workers)
    work_dir = str(tmp_path / f'killed_{loop}')
    args = [sys.executable, TOY, work_dir, '--loop', loop, '--max-iters', str(MAX_ITERS),
            '--ckpt-interval', str(CKPT_EVERY), '--num-workers', str(num_workers)]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen(args + ['--sleep', '0.3'], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(read_losses(work_dir)) < CRASH_AT:  # past the checkpoint at iteration 4
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    killed_at = max(read_losses(work_dir))
    assert killed_at < MAX_ITERS, 'the run finished before it was killed'

    done = subprocess.run(args + ['--resume'], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = read_losses(work_dir)
    assert sorted(resumed) == list(range(1, MAX_ITERS + 1))
    for it in range(CKPT_EVERY + 1, MAX_ITERS + 1):
        assert math.isclose(resumed[it], reference[it], rel_tol=1e-6, abs_tol=1e-7), \
            (it, resumed[it], reference[it])


# --------------------------------------------------------------------------- real demo configs
from demo_runs import (DEMO_CONFIGS, LAUNCH_WRAPPER, config_path, demo_options,  # noqa: E402
                       scalar_losses, train_in_process)

DEMO_ITERS, DEMO_CKPT, DEMO_CRASH = 6, 2, 4


def _demo_reference(config, tiny_data, tmp_path):
    if not osp.exists(config_path(config)):
        pytest.skip(f'configs/demo/{config} does not exist yet')
    pytest.importorskip('mmpretrain')
    options = demo_options(config, tiny_data, tmp_path, max_iters=DEMO_ITERS,
                           ckpt_interval=DEMO_CKPT, as_cli=False)
    ref_dir = tmp_path / 'reference'
    train_in_process(config, options, ref_dir, [dict(type='ToyLossRecorderHook')])
    reference = read_losses(str(ref_dir))
    assert len(reference) == DEMO_ITERS, reference
    return options, reference


def _assert_same_after_checkpoint(resumed, reference):
    assert sorted(resumed) == sorted(reference)  # nothing trained twice or skipped
    for it in range(DEMO_CKPT + 1, max(reference) + 1):
        assert math.isclose(resumed[it], reference[it], rel_tol=1e-5, abs_tol=1e-6), \
            (it, resumed[it], reference[it])


@pytest.mark.slow
@pytest.mark.parametrize('config', sorted(DEMO_CONFIGS))
def test_demo_config_crash_then_resume_matches(tmp_path, tiny_data, config):
    """Each stage's demo config (VQ-KD, MIM, fine-tune, UperNet, Mask R-CNN), crashed after
    its first checkpoint and resumed: same losses as an uninterrupted run."""
    options, reference = _demo_reference(config, tiny_data, tmp_path)
    run_dir = tmp_path / 'crashed'
    recorder = dict(type='ToyLossRecorderHook')
    with pytest.raises(SimulatedCrash):
        train_in_process(config, options, run_dir,
                         [recorder, dict(type='CrashAtIterHook', at=DEMO_CRASH)])
    train_in_process(config, options, run_dir, [recorder], resume=True)
    _assert_same_after_checkpoint(read_losses(str(run_dir)), reference)


@pytest.mark.slow
@pytest.mark.parametrize('config', ['vqkd_vit-tiny_synthetic.py', 'beitv2_vit-tiny_synthetic.py'])
def test_demo_config_sigkill_then_resume_matches(tmp_path, tiny_data, config):
    """tools/train.py on the VQ-KD / MIM demo, SIGKILLed after its first checkpoint and
    restarted with --resume: the losses after the checkpoint match an uninterrupted run."""
    options, reference = _demo_reference(config, tiny_data, tmp_path)
    cli = [f'{k}={v}' for k, v in options.items()]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    run_dir = str(tmp_path / 'killed')

    def train(*extra, delay=0.0):
        return [sys.executable, LAUNCH_WRAPPER, '--delay', str(delay), '--',
                config_path(config), '--work-dir', run_dir, *extra, '--cfg-options', *cli]

    proc = subprocess.Popen(train(delay=1.0), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while max(scalar_losses(run_dir), default=0) < DEMO_CKPT + 1:  # the checkpoint is on disk
        assert proc.poll() is None, proc.stderr.read().decode()[-4000:]
        assert time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert max(scalar_losses(run_dir)) < max(reference), 'the run finished before the kill'

    done = subprocess.run(train('--resume'), env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    _assert_same_after_checkpoint(scalar_losses(run_dir), reference)


def test_rng_states_of_another_number_of_processes_are_not_restored(monkeypatch):
    """Every rank of a resumed run with more processes took rank 0's saved state, so they all
    drew the same masks and drop-path; with as many processes each rank gets its own back."""
    from types import SimpleNamespace

    import mmengine.dist

    from beitv2_mm.engine.checkpoint import capture_rng_state
    torch.manual_seed(0)
    saved = [capture_rng_state()]
    torch.manual_seed(1)
    saved.append(capture_rng_state())
    torch.manual_seed(2)
    own = torch.get_rng_state()
    loop = SimpleNamespace(runner=SimpleNamespace())
    monkeypatch.setattr(mmengine.dist, 'get_rank', lambda: 1)
    for world_size, expected in ((3, own), (2, saved[1]['torch'])):
        monkeypatch.setattr(mmengine.dist, 'get_world_size', lambda: world_size)
        torch.set_rng_state(own)
        setattr(loop.runner, resume_module._RNG_ATTR, saved)
        resume_module._restore_resumed_rng(loop)
        assert torch.equal(torch.get_rng_state(), expected), world_size
