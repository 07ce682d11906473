"""Distributed runs agree with single-process runs, and a dead rank ends the job promptly.

torchrun (``python -m torch.distributed.run``) with the gloo backend, 2 processes on CPU.
"""
import os
import os.path as osp
import re
import subprocess
import sys
import time

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY = osp.join(REPO, 'tests', 'engine', 'toy_train.py')
sys.path.insert(0, osp.join(REPO, 'tests', 'engine'))  # toy_train, demo_runs
from toy_train import read_losses  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.dist]


def _env():
    path = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH')) if p)
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=path)


def _torchrun(nproc, *args, timeout=300):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           f'--nproc_per_node={nproc}', *args]
    start = time.time()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    return done, time.time() - start


def test_two_gloo_ranks_match_one_process_with_same_total_batch(tmp_path):
    steps = 6
    single = subprocess.run(
        [sys.executable, TOY, str(tmp_path / 'one'), '--no-random', '--batch-size', '8',
         '--max-iters', str(steps), '--ckpt-interval', '100'],
        env=_env(), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    done, _ = _torchrun(2, TOY, str(tmp_path / 'two'), '--launcher', 'pytorch', '--no-random',
                        '--batch-size', '4', '--max-iters', str(steps), '--ckpt-interval', '100')
    assert done.returncode == 0, done.stderr[-3000:]
    one = read_losses(str(tmp_path / 'one'))
    rank0 = read_losses(str(tmp_path / 'two'), 'losses_rank0.jsonl')
    rank1 = read_losses(str(tmp_path / 'two'), 'losses_rank1.jsonl')
    assert sorted(one) == sorted(rank0) == sorted(rank1) == list(range(1, steps + 1))
    for it in one:
        # each rank reports the mean over its half of the global batch
        assert abs((rank0[it] + rank1[it]) / 2 - one[it]) <= 1e-5 * max(1.0, abs(one[it])), it
    assert any(abs(rank0[it] - rank1[it]) > 1e-6 for it in one)  # the halves really differ


def test_dead_rank_ends_the_job_quickly_naming_the_rank(tmp_path):
    """Rank 1 is SIGKILLed at iteration 3 (a lost node): rank 0 must not hang in its next
    collective; torchrun stops it and reports which rank failed."""
    done, elapsed = _torchrun(2, TOY, str(tmp_path / 'dead'), '--launcher', 'pytorch',
                              '--max-iters', '50', '--ckpt-interval', '100', '--die', '1', '3',
                              '--dist-timeout', '60', timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert elapsed < 120, f'the surviving rank took {elapsed:.0f}s to stop'
    assert re.search(r'Root Cause[\s\S]*rank\s*:\s*1\b', output), output[-3000:]
    assert 'Traceback' not in done.stdout  # rank 0 was stopped, it did not crash on its own
    assert 'SIGKILL' in output or 'Signal 9' in output or 'exitcode' in output


def test_stuck_rank_hits_the_dist_timeout(tmp_path):
    """Rank 1 stops taking part without dying: rank 0 waits in its collective only up to
    ``env_cfg.dist_cfg.timeout`` (10 s here; runtime_reliability.py sets 1800 s), then fails, and
    torchrun stops the stuck rank."""
    done, elapsed = _torchrun(2, TOY, str(tmp_path / 'stuck'), '--launcher', 'pytorch',
                              '--max-iters', '50', '--ckpt-interval', '100', '--die', '1', '3',
                              '--hang', '--dist-timeout', '10', timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert 10 <= elapsed < 150, elapsed
    assert re.search(r'Root Cause[\s\S]*rank\s*:\s*0\b', output), output[-3000:]
    assert re.search(r'[Tt]imed? ?out', output), output[-3000:]


# --------------------------------------------------------------------------- demo configs
from demo_runs import LAUNCH_WRAPPER, config_path, demo_options, rank_losses  # noqa: E402


@pytest.mark.parametrize('config', ['vqkd_vit-tiny_synthetic.py', 'beitv2_vit-tiny_synthetic.py'])
def test_demo_config_two_ranks_match_one_process(tmp_path, tiny_data, config):
    """tools/train.py on the tiny VQ-KD / MIM demo: 2 gloo ranks x batch 2 vs 1 process x batch
    4 give the same losses over the first steps (augmentations seeded per sample, so both see
    the same batches), and every buffer (EMA codebook included) is identical on both ranks.
    When tools/train.py returns, the gloo group's threads are gone (left to interpreter teardown
    they aborted a rank now and then: see ``launch.close_distributed``)."""
    import json

    import torch
    if not osp.exists(config_path(config)):
        pytest.skip(f'configs/demo/{config} does not exist yet')
    pytest.importorskip('mmpretrain')
    steps = 3

    def args(work_dir, batch, *extra):
        options = demo_options(config, tiny_data, tmp_path, max_iters=steps, ckpt_interval=100,
                               batch_size=batch)
        if config.startswith('vqkd'):
            # k-means init draws its initial centres from the gathered batch, whose row order
            # depends on how samples are split over ranks; the EMA updates are what is compared.
            options.append('model.tokenizer.kmeans_init=False')
        return [LAUNCH_WRAPPER, '--record', '--per-sample-seed', '--', config_path(config),
                '--work-dir', str(work_dir), *extra, '--cfg-options', *options]

    single = subprocess.run([sys.executable, *args(tmp_path / 'one', 4)], env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-4000:]
    done, _ = _torchrun(2, *args(tmp_path / 'two', 2, '--launcher', 'pytorch'), timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    one = rank_losses(tmp_path / 'one', 0)
    rank0, rank1 = rank_losses(tmp_path / 'two', 0), rank_losses(tmp_path / 'two', 1)
    assert sorted(one) == sorted(rank0) == sorted(rank1) == list(range(1, steps + 1))
    # VQ-KD's loss is continuous: float noise from other batch shapes stays ~1e-6. MIM's
    # targets are argmax token ids of the tokenizer: that noise can flip a near-tie target,
    # which moves a 96-token mean CE by ~0.2%, hence the looser bound there.
    tolerance = 1e-3 if config.startswith('vqkd') else 1e-2
    for it in one:
        mean = (rank0[it] + rank1[it]) / 2
        assert abs(mean - one[it]) <= tolerance * max(1.0, abs(one[it])), (it, mean, one[it])

    buffers0 = torch.load(tmp_path / 'two' / 'buffers_rank0.pth')
    buffers1 = torch.load(tmp_path / 'two' / 'buffers_rank1.pth')
    assert buffers0.keys() == buffers1.keys() and buffers0
    differing = [k for k in buffers0 if not torch.equal(buffers0[k], buffers1[k])]
    assert not differing, f'buffers differ between ranks: {differing}'
    if config.startswith('vqkd'):
        assert any('embed' in k or 'codebook' in k for k in buffers0), sorted(buffers0)

    if sys.platform.startswith('linux'):  # thread names come from /proc/self/task
        for rank in (0, 1):
            left = json.loads((tmp_path / 'two' / f'threads_rank{rank}.json').read_text())
            assert 'python' in left and not [name for name in left if 'gloo' in name], (rank, left)


def test_failing_run_ends_the_gloo_threads_before_teardown(tmp_path, tiny_data):
    """Both ranks of the MIM demo raise inside ``Runner.train`` (after iteration 2): the job
    fails with that error, and when tools/train.py has raised, the gloo group's threads are
    gone on both ranks (the traceback's frames held the runner, hence the group, until
    ``launch.run_then_close`` cleared them)."""
    import json

    config = 'beitv2_vit-tiny_synthetic.py'
    options = demo_options(config, tiny_data, tmp_path, max_iters=3, ckpt_interval=100,
                           batch_size=2)
    done, _ = _torchrun(2, LAUNCH_WRAPPER, '--record', '--fail-at-iter', '2', '--',
                        config_path(config), '--work-dir', str(tmp_path / 'two'),
                        '--launcher', 'pytorch', '--cfg-options', *options, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert 'failing on purpose after iteration 2' in output, output[-3000:]
    assert 'terminate called' not in output, output[-3000:]
    if sys.platform.startswith('linux'):
        for rank in (0, 1):
            left = json.loads((tmp_path / 'two' / f'threads_rank{rank}.json').read_text())
            assert 'python' in left and not [name for name in left if 'gloo' in name], (rank, left)


def test_resume_with_another_number_of_processes(tmp_path):
    """Iteration-based: 1 -> 2 processes continues, saying what changes (the ranks' random
    streams: tests/engine/test_resume.py). Epoch-based: 2 -> 1 is refused naming both counts (the epoch position
    and the schedules, counted in batches per process, would be off)."""
    work = str(tmp_path / 'iter')
    first = subprocess.run([sys.executable, TOY, work, '--max-iters', '2', '--ckpt-interval',
                            '2', '--diff-rank-seed'], env=_env(), capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    done, _ = _torchrun(2, TOY, work, '--launcher', 'pytorch', '--resume', '--max-iters', '4',
                        '--ckpt-interval', '2', '--diff-rank-seed')
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert 'Resuming a run of 1 process(es) with 2: the total batch changes from 1 x 4 to ' \
           '2 x 4' in log, log[-3000:]
    assert 'continue exactly' not in log
    assert sorted(read_losses(work, 'losses_rank1.jsonl')) == [3, 4]

    work = str(tmp_path / 'epoch')
    done, _ = _torchrun(2, TOY, work, '--launcher', 'pytorch', '--loop', 'epoch',
                        '--max-iters', '6', '--ckpt-interval', '3')
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    again = subprocess.run([sys.executable, TOY, work, '--loop', 'epoch', '--max-iters', '12',
                            '--resume'], env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode != 0
    assert 'checkpoint was written by 2 process(es), this run has 1' in again.stderr, \
        again.stderr[-3000:]
