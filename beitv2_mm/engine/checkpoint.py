"""Crash-safe checkpoint I/O for mmengine runs.

A week-long run is killed at any moment (preemption, OOM killer, a lost node). mmengine 0.10.7
writes checkpoints in place (``LocalBackend.put`` opens the final path with ``'wb'``), writes
the ``last_checkpoint`` pointer with a plain ``open(..., 'w')``, and with ``max_keep_ckpts``
deletes the oldest checkpoint *before* writing the new one. A kill during a save can therefore
leave a truncated ``iter_N.pth`` (and ``--resume`` then dies on an unpickling error), an empty
``last_checkpoint``, or a pointer to a checkpoint that was just deleted.

:func:`install_atomic_checkpointing` (applied by :mod:`beitv2_mm.engine.compat`) fixes the
three:

* every local file mmengine writes through its file backend (checkpoints, best checkpoints,
  dumped results) goes to a temporary file in the same directory, is flushed and fsynced, then
  ``os.replace``-d onto the final name (atomic on POSIX), and the directory is fsynced;
* ``CheckpointHook`` writes the ``last_checkpoint`` pointer the same way, only after the
  checkpoint itself is complete, and removes checkpoints beyond ``max_keep_ckpts`` only after
  that;
* each checkpoint carries the RNG states (python, numpy, torch, CUDA) of every rank under
  ``meta['rng_states']`` and the training sampler's seed under ``meta['sampler_seed']``, so
  :mod:`beitv2_mm.engine.resume` can continue the random streams exactly where the killed run
  left them.

Anything else in the project that writes a checkpoint should use :func:`atomic_torch_save`.
"""
from __future__ import annotations

import io
import os
import os.path as osp
import random
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

__all__ = [
    'atomic_write', 'atomic_write_bytes', 'atomic_write_text', 'atomic_torch_save',
    'capture_rng_state', 'restore_rng_state', 'install_atomic_checkpointing',
]


# --------------------------------------------------------------------------- atomic files
def _fsync_dir(dirname: str) -> None:
    """Persist a rename: fsync the directory entry (no-op where unsupported)."""
    try:
        fd = os.open(dirname or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(filepath: str | os.PathLike, mode: str = 'wb',
                 encoding: str | None = None) -> Iterator[io.IOBase]:
    """Open a temporary file that replaces ``filepath`` only if the block completes.

    The temporary file lives in the destination directory (``os.replace`` is atomic only within
    one file system) and is named ``.<name>.tmp-<random>``, so a killed writer leaves at worst
    a hidden temporary file, never a truncated ``filepath``.

    Args:
        filepath (str | PathLike): Final path.
        mode (str): ``'wb'`` or ``'w'``.
        encoding (str, optional): Text encoding for ``'w'``.

    Yields:
        The open temporary file.
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f'atomic_write supports mode "wb" or "w", got {mode!r}')
    filepath = os.fspath(filepath)
    dirname = osp.dirname(osp.abspath(filepath))
    os.makedirs(dirname, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{osp.basename(filepath)}.tmp-', dir=dirname)
    try:
        with os.fdopen(fd, mode, encoding=encoding if 'b' not in mode else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the checkpoint the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, filepath)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    _fsync_dir(dirname)


def atomic_write_bytes(data: bytes, filepath: str | os.PathLike) -> None:
    """Write ``data`` to ``filepath`` atomically (see :func:`atomic_write`)."""
    with atomic_write(filepath, 'wb') as f:
        f.write(data)


def atomic_write_text(text: str, filepath: str | os.PathLike, encoding: str = 'utf-8') -> None:
    """Write ``text`` to ``filepath`` atomically (see :func:`atomic_write`)."""
    with atomic_write(filepath, 'w', encoding=encoding) as f:
        f.write(text)


def atomic_torch_save(obj: Any, filepath: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a truncated file behind.

    Args:
        obj: Anything ``torch.save`` accepts.
        filepath (str | PathLike): Destination.
    """
    with atomic_write(filepath, 'wb') as f:
        torch.save(obj, f)


# --------------------------------------------------------------------------- RNG states
def capture_rng_state() -> dict:
    """The global RNG states of this process: python, numpy, torch CPU and every CUDA device.

    Returns:
        dict: Picklable states for :func:`restore_rng_state`.
    """
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Restore states captured by :func:`capture_rng_state`.

    Args:
        state (dict): As returned by :func:`capture_rng_state` (maybe loaded from a checkpoint).
    """
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(torch.as_tensor(state['torch'], dtype=torch.uint8).cpu())
    cuda_states = state.get('cuda')
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        else:  # another device count: keep the current device's stream at least
            torch.cuda.set_rng_state(cuda_states[0].cpu())


def _gather_rng_states() -> list:
    """RNG states of all ranks, rank order (a collective: every rank must call it)."""
    from mmengine.dist import all_gather_object, get_world_size

    state = capture_rng_state()
    if get_world_size() == 1:
        return [state]
    return all_gather_object(state)


def train_sampler(dataloader):
    """The index sampler of a dataloader (``sampler`` or ``batch_sampler.sampler``), or None."""
    sampler = getattr(dataloader, 'sampler', None)
    if sampler is not None and hasattr(sampler, 'seed'):
        return sampler
    batch_sampler = getattr(dataloader, 'batch_sampler', None)
    sampler = getattr(batch_sampler, 'sampler', None)
    return sampler if sampler is not None and hasattr(sampler, 'seed') else None


def train_sampler_seed(runner):
    """Seed of the training sampler: random per run when ``randomness.diff_rank_seed=True``
    (mmengine then draws it with ``sync_random_seed``), so a resume must restore it."""
    loop = getattr(runner, '_train_loop', None)
    dataloader = getattr(loop, 'dataloader', None)
    sampler = train_sampler(dataloader) if dataloader is not None else None
    seed = getattr(sampler, 'seed', None)
    return int(seed) if isinstance(seed, int) else None


# --------------------------------------------------------------------------- mmengine patches
def _atomic_local_put(self, obj: bytes, filepath) -> None:
    """``LocalBackend.put`` writing through a temporary file + fsync + rename."""
    atomic_write_bytes(obj, filepath)


def _atomic_local_put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
    """``LocalBackend.put_text`` writing through a temporary file + fsync + rename."""
    atomic_write_text(obj, filepath, encoding=encoding)


def _save_checkpoint_with_step(self, runner, step, meta):
    """Crash-safe replacement of ``CheckpointHook._save_checkpoint_with_step`` (mmengine 0.10.7).

    Same outputs as upstream, in a safe order: (1) write the new checkpoint (atomically, through
    the patched backend) with every rank's RNG state in ``meta['rng_states']``, (2) point
    ``last_checkpoint`` at it (atomically), (3) only then delete checkpoints beyond
    ``max_keep_ckpts``. Upstream deletes first and writes the pointer with a plain ``open``.
    """
    from mmengine.dist import is_main_process

    meta = dict(meta or {})
    meta['rng_states'] = _gather_rng_states()  # collective: all ranks reach this line
    sampler_seed = train_sampler_seed(runner)
    if sampler_seed is not None:
        meta['sampler_seed'] = sampler_seed

    to_remove = None
    if self.max_keep_ckpts > 0:
        # _save_checkpoint and _save_best_checkpoint may both save at one step.
        if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                to_remove = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

    ckpt_filename = self.filename_tmpl.format(step)
    self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
    runner.message_hub.update_info('last_ckpt', self.last_ckpt)

    runner.save_checkpoint(
        self.out_dir,
        ckpt_filename,
        self.file_client_args,
        save_optimizer=self.save_optimizer,
        save_param_scheduler=self.save_param_scheduler,
        meta=meta,
        by_epoch=self.by_epoch,
        backend_args=self.backend_args,
        **self.args)

    if not is_main_process():
        return
    atomic_write_text(str(self.last_ckpt), osp.join(runner.work_dir, 'last_checkpoint'))
    _remove_stale_partial_checkpoints(self)

    if to_remove is not None and to_remove != step:
        old_path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(to_remove))
        if self.file_backend.isfile(old_path):
            self.file_backend.remove(old_path)
        elif self.file_backend.isdir(old_path):  # deepspeed checkpoints are directories
            self.file_backend.rmtree(old_path)


def _remove_stale_partial_checkpoints(hook) -> None:
    """Delete the temporary files of checkpoint writes that were killed (``.iter_4.pth.tmp-*``,
    :func:`atomic_write`): each can be as large as a checkpoint, and after a preemption nothing
    else would remove them. Called after a save completed, so no write of this run is in flight.
    """
    import glob
    if not isinstance(hook.out_dir, str) or '://' in hook.out_dir:
        return  # a remote backend: its writes are not atomic_write's
    pattern = '.' + hook.filename_tmpl.format('*') + '.tmp-*'
    for path in glob.glob(osp.join(glob.escape(hook.out_dir), pattern)):
        try:
            os.unlink(path)
        except OSError:
            pass


_ORIGINALS: dict[str, Any] = {}


def install_atomic_checkpointing() -> None:
    """Patch mmengine so checkpoints and the ``last_checkpoint`` pointer are written atomically.

    Idempotent. :func:`uninstall_atomic_checkpointing` restores upstream (used by tests to show
    the upstream failure).
    """
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.hooks import CheckpointHook

    if _ORIGINALS:
        return
    _ORIGINALS['put'] = LocalBackend.put
    _ORIGINALS['put_text'] = LocalBackend.put_text
    _ORIGINALS['save_with_step'] = CheckpointHook._save_checkpoint_with_step
    LocalBackend.put = _atomic_local_put
    LocalBackend.put_text = _atomic_local_put_text
    CheckpointHook._save_checkpoint_with_step = _save_checkpoint_with_step


def uninstall_atomic_checkpointing() -> None:
    """Undo :func:`install_atomic_checkpointing` (tests only)."""
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.hooks import CheckpointHook

    if not _ORIGINALS:
        return
    LocalBackend.put = _ORIGINALS.pop('put')
    LocalBackend.put_text = _ORIGINALS.pop('put_text')
    CheckpointHook._save_checkpoint_with_step = _ORIGINALS.pop('save_with_step')
