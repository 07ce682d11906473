"""Exact ``--resume`` for mmengine's stock training loops.

What mmengine 0.10.7 restores on ``--resume``: model (EMA codebook buffers included: they are
module buffers), optimizer, loss scaler (inside ``AmpOptimWrapper``'s state), parameter
schedulers, message hub, epoch/iteration counters and the seed. What it does not:

* **RNG states.** It re-seeds, so after a resume dropout, drop-path, mask generators and
  (with ``num_workers=0``) the data augmentations draw different numbers than the killed run
  would have. Fix: every checkpoint carries each rank's python/numpy/torch/CUDA RNG state
  (written by :mod:`beitv2_mm.engine.checkpoint`); they are restored at the exact point of the
  loop where the checkpoint was taken.
* **Dataloader position in ``EpochBasedTrainLoop``.** A checkpoint taken mid-epoch
  (``CheckpointHook(by_epoch=False)``) restarts that epoch from its first batch, so some
  batches are seen twice and the loop runs more iterations than scheduled. Fix: the resumed
  epoch skips the batches already trained.
  ``IterBasedTrainLoop`` already skips ``iter`` batches; kept, except for a run that has
  reached ``max_iters`` (a requeued job passing ``--resume`` again): nothing is left to train,
  so nothing is replayed.
* **Sampler seed.** With ``randomness.diff_rank_seed=True`` (the MIM/VQ-KD runtimes) mmengine
  draws the sampler's seed at random in every run, even with a fixed ``randomness.seed``, so a
  resumed run trains on another data order (and two runs with one seed differ). Fix: the
  sampler seed follows ``randomness.seed`` (minus the rank offset mmengine adds), and the seed
  is also saved in each checkpoint and given back to the sampler on resume (for
  ``seed=None`` runs).
* **Validation perturbs training randomness.** Creating the validation dataloader iterator
  draws from the global torch RNG, so whether a run validated at the checkpoint step changed
  the training stream after it. Fix: validation runs on a forked RNG state.
* **Validation at the checkpoint step.** A checkpoint is written before the validation of its
  step, so a run stopped during that validation resumed past it: its metrics (and for the
  last step the run's final results) were never written. Fix: a run resumed at a validation
  step validates first. That includes a finished run resumed at its last step: its final
  validation (and ``results.json``) is written again, since the checkpoint cannot tell whether
  the stopped run completed it; the same weights give the same metrics.

A checkpoint written by another number of processes (one RNG state per rank) resumes an
iteration-based run with a warning (the total batch and the data after the resume change; each
rank keeps this run's seeding) and is refused by an epoch-based one, whose position in the epoch
and schedules are counted in batches per process.

Skipping *replays* the dataloader (the batches are loaded and dropped, as mmengine's
``IterBasedTrainLoop`` does): the sampler order and the workers' augmentation RNG (mmengine
seeds workers with ``seed + worker id + rank`` at each iterator start) then match the
uninterrupted run exactly. The cost is the data loading time of the skipped batches, at most one
epoch for epoch-based loops. Exactness needs a fixed ``randomness.seed`` (mmengine draws a new
one per run when it is ``None``), and for persistent workers (``persistent_workers=True``) it
holds for the first epoch after the resume only: their RNG is not re-seeded per epoch.

:func:`install_exact_resume` patches the stock loops in place (applied by
:mod:`beitv2_mm.engine.compat`), so every config of every scope gets it without naming a
custom loop.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Optional

from .checkpoint import capture_rng_state, restore_rng_state, train_sampler

__all__ = ['install_exact_resume', 'uninstall_exact_resume', 'rng_isolated']

_RNG_ATTR = '_beitv2_resumed_rng_states'
_SKIP_ATTR = '_beitv2_resume_skip'
_SEED_ATTR = '_beitv2_resumed_sampler_seed'


@contextmanager
def rng_isolated():
    """Run a block (validation) without changing the global RNG streams of the caller."""
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)


def _log(msg: str, level=logging.INFO) -> None:
    from mmengine.logging import print_log

    print_log(msg, logger='current', level=level)


def _restore_resumed_rng(loop) -> None:
    """Restore this rank's RNG state stored in the resumed checkpoint (once)."""
    from mmengine.dist import get_rank, get_world_size

    states: Optional[list] = getattr(loop.runner, _RNG_ATTR, None)
    if states is None:
        _log('The resumed checkpoint holds no RNG states (written without beitv2_mm?): '
             'random streams restart from the seed, so losses after the resume will not match '
             'an uninterrupted run exactly.', logging.WARNING)
        return
    # another number of processes (said by _check_world_size): each rank keeps this run's
    # seeding; rank 0's state on every rank would give them all the same masks and drop-path
    if len(states) == get_world_size():
        restore_rng_state(states[get_rank()])
    setattr(loop.runner, _RNG_ATTR, None)


def _saved_world_size(loop) -> Optional[int]:
    """How many processes wrote the resumed checkpoint (one RNG state each); None: unknown."""
    states = getattr(loop.runner, _RNG_ATTR, None)
    return len(states) if isinstance(states, (list, tuple)) else None


def _check_world_size(loop, epoch_based: bool) -> bool:
    """Whether a resumed run has the number of processes of the run it resumes.

    Iteration-based: it continues, saying what changes (total batch, data order). Epoch-based:
    refused, since the epoch's position and the parameter schedules (converted to iterations of
    the old epoch length, restored with the schedulers) would both be off.
    """
    from mmengine.dist import get_world_size

    saved, now = _saved_world_size(loop), get_world_size()
    if saved is None or saved == now:
        return True
    if epoch_based:
        raise RuntimeError(
            f'Cannot resume: the checkpoint was written by {saved} process(es), this run has '
            f'{now}. An epoch-based run counts iterations in batches per process, so the '
            'position in the epoch and the learning-rate schedule would not fit. Resume with '
            f'{saved} process(es) (tools/dist_train.sh CONFIG {saved} --resume), or start a new '
            'run from its weights (--cfg-options load_from=CHECKPOINT, without --resume).')
    batch = getattr(loop.dataloader, 'batch_size', None)
    per = f' x {batch}' if batch else ''
    _log(f'Resuming a run of {saved} process(es) with {now}: the total batch changes from '
         f'{saved}{per} to {now}{per} per iteration (the learning rate stays as configured), '
         'the data after the resume is not the stopped run\'s and random streams continue from '
         'this run\'s seeding.', logging.WARNING)
    return False


def _restore_sampler_seed(loop) -> bool:
    """Give the training sampler the seed it had in the resumed run; True if it changed.

    With ``randomness.diff_rank_seed=True`` mmengine draws the sampler seed at random for every
    run, so without this the resumed run would replay (and then train on) another data order.
    """
    seed = getattr(loop.runner, _SEED_ATTR, None)
    setattr(loop.runner, _SEED_ATTR, None)
    sampler = train_sampler(loop.dataloader)
    if seed is None or sampler is None or sampler.seed == seed:
        return False
    _log(f'Resuming: training sampler seed {sampler.seed} -> {seed} (the resumed run\'s).')
    sampler.seed = seed
    if hasattr(sampler, '_indices_of_rank'):  # InfiniteSampler caches its index generator
        sampler.indices = sampler._indices_of_rank()
    return True


def _build_dataloader(dataloader, seed=None, diff_rank_seed=False):
    """``Runner.build_dataloader`` whose sampler seed follows ``randomness.seed`` also with
    ``diff_rank_seed=True``.

    Upstream passes ``seed=None`` to the sampler in that case, which then draws a random seed
    (shared by the ranks) in every run: two runs with the same ``randomness.seed`` see
    different data orders. The runner's seed is ``base + rank`` there, so ``seed - rank`` is the
    rank-independent base seed the sampler needs (every rank must shuffle alike).
    """
    from mmengine.dist import get_rank

    built = _ORIGINALS['build_dataloader'](dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
    if diff_rank_seed and seed is not None:
        sampler = train_sampler(built)
        if sampler is not None:
            sampler.seed = int(seed) - get_rank()
            if hasattr(sampler, '_indices_of_rank'):  # InfiniteSampler caches its generator
                sampler.indices = sampler._indices_of_rank()
    return built


# --------------------------------------------------------------------------- Runner
def _load_checkpoint(self, filename, *args, **kwargs):
    """``Runner.load_checkpoint`` that also keeps the RNG states and sampler seed saved in the
    checkpoint (used only when the loop resumes, i.e. starts at iteration > 0)."""
    checkpoint = _ORIGINALS['load_checkpoint'](self, filename, *args, **kwargs)
    meta = checkpoint.get('meta', {}) if isinstance(checkpoint, dict) else {}
    setattr(self, _RNG_ATTR, meta.get('rng_states'))
    setattr(self, _SEED_ATTR, meta.get('sampler_seed'))
    return checkpoint


def _validate_at_resume(loop, step: int, max_steps: int, unit: str) -> None:
    """Validate first when a run resumes at a step the loop validates after.

    The checkpoint of such a step is written before its validation, so a run stopped during
    that validation (or before it) resumed past it: the last validation (and the results file
    written after it, ``results.json``) was lost, and for the final step never made at all.
    The validation is run again even if the stopped run had finished it (one more validation;
    its RNG draws are isolated from training).
    """
    val_loop = loop.runner.val_loop
    if val_loop is None or step < loop.val_begin or not (
            step % loop.val_interval == 0 or step == max_steps):
        return
    _log(f'Resuming at {unit} {step}, where the run validates: validating first (the checkpoint '
         'was written before that validation, which the stopped run may not have finished).')
    with rng_isolated():
        val_loop.run()


# --------------------------------------------------------------------------- IterBasedTrainLoop
def _iter_loop_run(self):
    """``IterBasedTrainLoop.run`` with RNG restore after the skip and RNG-neutral validation."""
    self.runner.call_hook('before_train')
    # The whole iteration-based run is one big epoch for the hooks.
    self.runner.call_hook('before_train_epoch')
    if self._iter >= self._max_iters > 0:
        # A finished run (a requeued job that always passes --resume): nothing is left to
        # train, so the replay (hours of data loading on a long schedule), the sampler seed
        # and the RNG states are not needed; the validation below still runs once.
        _log(f'Resuming at iteration {self._iter}: the run has finished (max_iters='
             f'{self._max_iters}); no batches are replayed, nothing is trained.')
        setattr(self.runner, _RNG_ATTR, None)
        setattr(self.runner, _SEED_ATTR, None)
        self._decide_current_val_interval()
        _validate_at_resume(self, self._iter, self._max_iters, 'iteration')
    elif self._iter > 0:
        same_world = _check_world_size(self, epoch_based=False)
        if _restore_sampler_seed(self):  # the iterator was built with the new run's seed
            from mmengine.runner.loops import _InfiniteDataloaderIterator
            self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
        _log(f'Resuming at iteration {self._iter}: replaying {self._iter} batches of the '
             'dataloader' + (' so sampler order and augmentation randomness continue exactly.'
                             if same_world else '.'))
        for _ in range(self._iter):
            next(self.dataloader_iterator)
        _restore_resumed_rng(self)
        self._decide_current_val_interval()
        _validate_at_resume(self, self._iter, self._max_iters, 'iteration')
    while self._iter < self._max_iters and not self.stop_training:
        self.runner.model.train()
        data_batch = next(self.dataloader_iterator)
        self.run_iter(data_batch)
        self._decide_current_val_interval()
        if (self.runner.val_loop is not None and self._iter >= self.val_begin
                and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
            with rng_isolated():
                self.runner.val_loop.run()
    self.runner.call_hook('after_train_epoch')
    self.runner.call_hook('after_train')
    return self.runner.model


# --------------------------------------------------------------------------- EpochBasedTrainLoop
def _epoch_loop_run(self):
    """``EpochBasedTrainLoop.run`` that resumes mid-epoch and validates on a forked RNG."""
    self.runner.call_hook('before_train')
    if self._iter > 0:
        _check_world_size(self, epoch_based=True)
        done_in_epoch = self._iter - self._epoch * len(self.dataloader)
        if not 0 <= done_in_epoch <= len(self.dataloader):
            raise RuntimeError(
                f'Cannot resume: the checkpoint says epoch {self._epoch}, iteration '
                f'{self._iter}, which does not fit {len(self.dataloader)} batches per epoch. '
                'Did train_dataloader.batch_size, the data set or the number of GPUs change '
                'since the checkpoint was written?')
        setattr(self, _SKIP_ATTR, done_in_epoch)
        _restore_sampler_seed(self)  # run_epoch builds its iterator afterwards
        if done_in_epoch == 0:  # resumed at an epoch boundary: that epoch's checkpoint
            self._decide_current_val_interval()
            _validate_at_resume(self, self._epoch, self._max_epochs, 'epoch')
    while self._epoch < self._max_epochs and not self.stop_training:
        self.run_epoch()
        self._decide_current_val_interval()
        if (self.runner.val_loop is not None and self._epoch >= self.val_begin
                and (self._epoch % self.val_interval == 0 or self._epoch == self._max_epochs)):
            with rng_isolated():
                self.runner.val_loop.run()
    self.runner.call_hook('after_train')
    return self.runner.model


def _epoch_loop_run_epoch(self):
    """``EpochBasedTrainLoop.run_epoch`` that skips the batches a resumed epoch already trained."""
    skip = getattr(self, _SKIP_ATTR, None)
    setattr(self, _SKIP_ATTR, None)
    if skip == 0:  # resumed at an epoch boundary: the checkpoint was taken right here
        _restore_resumed_rng(self)
    self.runner.call_hook('before_train_epoch')
    self.runner.model.train()
    batches = iter(self.dataloader)
    if skip:
        _log(f'Resuming epoch {self._epoch} at batch {skip}: replaying {skip} batches of the '
             'dataloader so sampler order and augmentation randomness continue exactly.')
        for _ in range(skip):
            next(batches)
        _restore_resumed_rng(self)
    for idx, data_batch in enumerate(batches, start=skip or 0):
        self.run_iter(idx, data_batch)
    self.runner.call_hook('after_train_epoch')
    self._epoch += 1


_ORIGINALS: dict[str, Any] = {}


def install_exact_resume() -> None:
    """Patch mmengine's Runner and stock train loops for exact resume (idempotent)."""
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, Runner

    if _ORIGINALS:
        return
    _ORIGINALS.update(
        build_dataloader=Runner.build_dataloader,
        load_checkpoint=Runner.load_checkpoint,
        iter_run=IterBasedTrainLoop.run,
        epoch_run=EpochBasedTrainLoop.run,
        epoch_run_epoch=EpochBasedTrainLoop.run_epoch,
    )
    Runner.build_dataloader = staticmethod(_build_dataloader)
    Runner.load_checkpoint = _load_checkpoint
    IterBasedTrainLoop.run = _iter_loop_run
    EpochBasedTrainLoop.run = _epoch_loop_run
    EpochBasedTrainLoop.run_epoch = _epoch_loop_run_epoch


def uninstall_exact_resume() -> None:
    """Undo :func:`install_exact_resume` (tests only)."""
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, Runner

    if not _ORIGINALS:
        return
    Runner.build_dataloader = staticmethod(_ORIGINALS.pop('build_dataloader'))
    Runner.load_checkpoint = _ORIGINALS.pop('load_checkpoint')
    IterBasedTrainLoop.run = _ORIGINALS.pop('iter_run')
    EpochBasedTrainLoop.run = _ORIGINALS.pop('epoch_run')
    EpochBasedTrainLoop.run_epoch = _ORIGINALS.pop('epoch_run_epoch')
