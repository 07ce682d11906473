"""A checkpoint save killed midway never leaves a truncated or dangling latest checkpoint."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

import beitv2_mm  # noqa: F401
from beitv2_mm.engine.checkpoint import atomic_torch_save, atomic_write_bytes

HERE = osp.dirname(osp.abspath(__file__))
TOY = osp.join(HERE, 'toy_train.py')


def test_interrupted_atomic_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / 'ckpt.pth'
    atomic_torch_save({'w': torch.arange(4)}, target)

    class Interrupted(Exception):
        pass

    from beitv2_mm.engine.checkpoint import atomic_write
    with pytest.raises(Interrupted):
        with atomic_write(target) as f:
            f.write(b'partial garbage')
            raise Interrupted
    assert torch.equal(torch.load(target)['w'], torch.arange(4))
    assert os.listdir(tmp_path) == ['ckpt.pth']  # the temporary file was cleaned up
    atomic_write_bytes(b'x', tmp_path / 'new' / 'file.bin')  # creates missing directories
    assert (tmp_path / 'new' / 'file.bin').read_bytes() == b'x'


def test_the_written_file_itself_gets_the_name(tmp_path):
    """The file written and fsynced is renamed onto the name (one atomic step), not copied
    there: a kill during a copy would leave a truncated checkpoint under the final name. Until
    then the old file stays whole under the name."""
    from beitv2_mm.engine.checkpoint import atomic_write
    target = tmp_path / 'iter_2.pth'
    target.write_bytes(b'old')
    with atomic_write(target) as f:
        f.write(b'new checkpoint')
        written = os.fstat(f.fileno()).st_ino
        assert target.read_bytes() == b'old'
    assert os.stat(target).st_ino == written and target.read_bytes() == b'new checkpoint'
    assert os.listdir(tmp_path) == ['iter_2.pth']


def test_import_applies_the_compat_fix():
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import IterBasedTrainLoop

    from beitv2_mm.engine import checkpoint, compat, resume
    assert compat.apply_all()['reliable_checkpoints_and_resume']
    assert LocalBackend.put is checkpoint._atomic_local_put
    assert CheckpointHook._save_checkpoint_with_step is checkpoint._save_checkpoint_with_step
    assert IterBasedTrainLoop.run is resume._iter_loop_run


def _kill_during_second_save(work_dir, *extra):
    """Run the toy training (checkpoint every 2 iterations, max_keep_ckpts=1) and SIGKILL it
    half-way through writing its second checkpoint (iteration 4)."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen(
        [sys.executable, TOY, str(work_dir), '--max-iters', '8', '--ckpt-interval', '2',
         '--block-save', '2', *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    marker = osp.join(work_dir, 'BLOCKED')
    deadline = time.time() + 120
    while not osp.exists(marker):
        if proc.poll() is not None:
            raise AssertionError('toy run ended before the blocked save:\n'
                                 + proc.stdout.read().decode()[-3000:])
        assert time.time() < deadline, 'toy run never reached its second checkpoint'
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


def _latest_is_loadable(work_dir):
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(pointer):
        return False, 'no last_checkpoint'
    with open(pointer) as f:
        path = f.read().strip()
    try:
        ckpt = torch.load(path, weights_only=False)
    except Exception as exc:  # truncated or deleted
        return False, f'{path}: {exc!r}'
    return True, ckpt


@pytest.mark.slow
def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    work_dir = tmp_path / 'fixed'
    _kill_during_second_save(work_dir)
    ok, ckpt = _latest_is_loadable(work_dir)
    assert ok, ckpt
    assert ckpt['meta']['iter'] == 2  # the last complete checkpoint, not deleted by max_keep_ckpts
    assert 'rng_states' in ckpt['meta'] and len(ckpt['meta']['rng_states']) == 1
    assert not osp.exists(work_dir / 'iter_4.pth')  # the half-written one never got the name
    # its temporary file stays behind until the resumed run's next complete save removes it
    partial = list(work_dir.glob('.iter_4.pth.tmp-*'))
    assert len(partial) == 1, sorted(work_dir.iterdir())
    env = dict(os.environ, OMP_NUM_THREADS='1')
    subprocess.run([sys.executable, TOY, str(work_dir), '--max-iters', '6', '--ckpt-interval',
                    '2', '--resume'], env=env, check=True, capture_output=True, timeout=300)
    assert osp.exists(work_dir / 'iter_6.pth') and not list(work_dir.glob('.*.tmp-*'))


@pytest.mark.slow
def test_upstream_checkpointing_fails_the_same_kill(tmp_path):
    """Negative control: mmengine's own save, killed at the same point, leaves no usable latest
    checkpoint (it deleted iter_2.pth before writing iter_4.pth in place)."""
    work_dir = tmp_path / 'upstream'
    _kill_during_second_save(work_dir, '--no-fix')
    ok, why = _latest_is_loadable(work_dir)
    assert not ok, 'upstream checkpointing survived the kill: this test no longer tests anything'
