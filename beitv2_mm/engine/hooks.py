"""Reliability hooks shared by every stage: a NaN guard, a ``num_classes`` check, validation
of the buffers a checkpoint saves (rank 0's), and for ``tools/test.py`` a check that the tested
checkpoint holds the model's weights.

All are registered in mmengine's root ``HOOKS`` registry, which the registries of mmpretrain,
mmseg and mmdet inherit from, so ``dict(type='NaNGuardHook')`` works under every
``default_scope``.
"""
from __future__ import annotations

import math
import os.path as osp
import re
from collections import OrderedDict
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .checkpoint import atomic_torch_save

__all__ = ['BroadcastBuffersHook', 'CheckpointMismatchError', 'EmptyTrainLoaderError',
           'NaNGuardHook', 'NonFiniteTrainingError', 'NumClassesGuardHook',
           'NumClassesMismatchError', 'TestedCheckpointGuardHook', 'TrainBatchesGuardHook']


class NonFiniteTrainingError(RuntimeError):
    """A training step produced a non-finite loss or gradient norm (raised by NaNGuardHook)."""


class NumClassesMismatchError(ValueError):
    """The data set's classes and a head's ``num_classes`` disagree."""


def _to_float(value) -> Optional[float]:
    """A python float from a scalar tensor / number, None for anything else."""
    if hasattr(value, 'detach'):
        if value.numel() != 1:
            value = value.detach().float().sum()  # NaN/Inf anywhere survive the sum
        return float(value.detach())
    if isinstance(value, (int, float)):
        return float(value)
    return None


@HOOKS.register_module()
class NaNGuardHook(Hook):
    """Stop training cleanly at the first non-finite loss or gradient norm.

    After every training iteration it checks each loss value the model returned and, when the
    optimizer wrapper clips gradients (``optim_wrapper.clip_grad``), the gradient norm it logged
    as ``train/grad_norm``. On a non-finite value it logs and raises
    :class:`NonFiniteTrainingError` naming the iteration (1-based, as mmengine logs it) and the
    offending keys. It runs before ``CheckpointHook`` (priority ``ABOVE_NORMAL`` vs
    ``VERY_LOW``) and raising stops the hook chain, so the poisoned state is never saved and
    ``last_checkpoint`` keeps pointing at the last good checkpoint.

    Under fp16 AMP, the loss scaler skips steps whose gradients overflow and halves its scale;
    such steps are not failures (the weights were not updated). Only more than
    ``max_consecutive_skips`` skipped steps in a row (the model itself is broken then) stop the
    run.

    The check reads values mmengine already moved to the host for logging; the loss scale is
    read (a device sync) only in an iteration with a non-finite value.

    Args:
        check_grad_norm (bool): Also check ``train/grad_norm`` when it is logged.
            Defaults to True.
        dump_batch (bool): Save the offending batch to
            ``<work_dir>/nonfinite_batch_iter<N>.pth`` for inspection. Defaults to False.
        max_consecutive_skips (int): Loss-scaler skipped steps in a row tolerated under AMP.
            Defaults to 20 (from the default scale 65536 that is a factor 2**20 down).
        check_all_outputs (bool): Check every logged value, not only those whose key contains
            ``loss`` (mmengine's convention for what is summed into the loss). Defaults to
            False, so a diagnostic metric cannot stop a healthy run.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, check_grad_norm: bool = True, dump_batch: bool = False,
                 max_consecutive_skips: int = 20, check_all_outputs: bool = False) -> None:
        self.check_grad_norm = check_grad_norm
        self.check_all_outputs = check_all_outputs
        self.dump_batch = dump_batch
        self.max_consecutive_skips = int(max_consecutive_skips)
        self._scale_before: Optional[float] = None
        self._grad_norm_mark = None
        self._consecutive_skips = 0

    # -------------------------------------------------------------------- helpers
    @staticmethod
    def _loss_scaler(runner):
        optim_wrapper = getattr(runner, 'optim_wrapper', None)
        wrappers = getattr(optim_wrapper, 'optim_wrappers', None)  # OptimWrapperDict
        candidates = wrappers.values() if isinstance(wrappers, dict) else [optim_wrapper]
        for wrapper in candidates:
            scaler = getattr(wrapper, 'loss_scaler', None)
            if scaler is not None and hasattr(scaler, 'get_scale'):
                return scaler
        return None

    @staticmethod
    def _grad_norm_buffer(runner):
        return runner.message_hub.log_scalars.get('train/grad_norm')

    def _buffer_mark(self, buffer):
        """Something that changes whenever the buffer gets a new value."""
        if buffer is None:
            return None
        history = buffer.data[0]
        return (id(buffer), len(history), float(history[-1]) if len(history) else None)

    # -------------------------------------------------------------------- hook points
    @staticmethod
    def _scale_snapshot(scaler):
        """The scaler's current scale without a host-device sync (a tensor copy on GPU)."""
        scale = getattr(scaler, '_scale', None)
        if scale is not None and hasattr(scale, 'detach'):
            return scale.detach().clone()
        return float(scaler.get_scale())

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        scaler = self._loss_scaler(runner)
        self._scale_before = self._scale_snapshot(scaler) if scaler is not None else None
        self._grad_norm_mark = self._buffer_mark(self._grad_norm_buffer(runner))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        bad = {}
        for key, value in (outputs or {}).items():
            if self.check_all_outputs is False and 'loss' not in key:
                continue  # mmengine's convention: only '*loss*' entries are losses
            number = _to_float(value)
            if number is not None and not math.isfinite(number):
                bad[key] = number
        if self.check_grad_norm:
            buffer = self._grad_norm_buffer(runner)
            mark = self._buffer_mark(buffer)
            if buffer is not None and mark != self._grad_norm_mark:  # logged this iteration
                grad_norm = float(buffer.current())
                if not math.isfinite(grad_norm):
                    bad['grad_norm'] = grad_norm
        iteration = runner.iter + 1

        if not bad:
            self._consecutive_skips = 0
            return
        scaler = self._loss_scaler(runner)
        if scaler is not None and self._scale_before is not None:
            # Only read the scale (a sync on GPU) when something is non-finite.
            scale_before, scale_after = float(self._scale_before), float(scaler.get_scale())
            if scale_after < scale_before:  # the scaler found inf/NaN grads and skipped
                self._consecutive_skips += 1
                if self._consecutive_skips <= self.max_consecutive_skips:
                    runner.logger.info(
                        f'NaNGuardHook: iteration {iteration}: non-finite {bad} under AMP; the '
                        f'loss scaler skipped the step (scale {scale_before:g} -> '
                        f'{scale_after:g}), not a failure.')
                    return
                self._fail(runner, iteration, data_batch, bad,
                           f'The AMP loss scaler skipped {self._consecutive_skips} steps in a '
                           f'row (scale now {scale_after:g}): the model produces non-finite '
                           'values at any scale.')
        self._fail(runner, iteration, data_batch, bad, None)

    def _fail(self, runner, iteration: int, data_batch, bad: dict, why: Optional[str]) -> None:
        values = ', '.join(f'{k}={v}' for k, v in bad.items())
        lines = [f'NaNGuardHook: non-finite training values at iteration {iteration} '
                 f'(epoch {runner.epoch + 1}): {values}.']
        if why:
            lines.append(why)
        if self.dump_batch and data_batch is not None:
            path = osp.join(runner.work_dir, f'nonfinite_batch_iter{iteration}.pth')
            try:
                atomic_torch_save(data_batch, path)
                lines.append(f'The offending batch was saved to {path}.')
            except Exception as exc:  # the guard must still stop the run
                lines.append(f'Saving the offending batch to {path} failed: {exc!r}.')
        last = runner.message_hub.get_info('last_ckpt')
        lines.append('Training stopped before saving anything from this step; '
                     + (f'the last good checkpoint is {last} (resume with --resume).' if last
                        else 'no checkpoint had been saved yet.'))
        lines.append('Usual fixes: lower the learning rate or raise warmup, set '
                     'optim_wrapper.clip_grad, use bf16 instead of fp16, inspect the batch.')
        message = '\n'.join(lines)
        runner.logger.error(message)
        raise NonFiniteTrainingError(message)


# --------------------------------------------------------------------------- num_classes check
def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _heads_with_num_classes(model):
    """(attribute path, num_classes) of each classification-like head of ``model``.

    Skips class-agnostic proposal heads (mmdet's RPN has ``num_classes=1`` whatever the data),
    models built without a classifier (``num_classes=0``, timm's convention: a VQ-KD teacher)
    and frozen modules (every parameter ``requires_grad=False``: a teacher or tokenizer, which
    does not learn the data's labels).
    """
    found = []
    for name, module in model.named_modules():
        num_classes = getattr(module, 'num_classes', None)
        if not name or not isinstance(num_classes, int) or isinstance(num_classes, bool):
            continue
        if num_classes == 0 or 'rpn' in name.lower() or 'RPN' in type(module).__name__:
            continue
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            continue
        found.append((name, num_classes))
    # A head nested in another reporting head (e.g. bbox_head inside roi_head) is the one to
    # fix: drop parents whose num_classes is just a mirror of a child's.
    names = [n for n, _ in found]
    return [(n, c) for n, c in found
            if not any(other.startswith(n + '.') for other in names)]


def _dataset_classes(dataloader):
    dataset = getattr(dataloader, 'dataset', None)
    metainfo = getattr(dataset, 'metainfo', None) or {}
    classes = metainfo.get('classes')
    if classes is None:
        return None, dataset
    return tuple(classes), dataset


@HOOKS.register_module()
class NumClassesGuardHook(Hook):
    """Fail before the first step when a head's ``num_classes`` does not match the data.

    Compares the number of classes in the training (and validation) data set's metainfo with
    ``num_classes`` of every head of the model (classifier head, mmseg decode/auxiliary heads,
    mmdet box/mask heads, mmpretrain's data preprocessor for mixup) and raises
    :class:`NumClassesMismatchError` naming both numbers, the data set and the config key to
    change. Data sets without ``classes`` in their metainfo (MIM pretraining) are skipped.

    Args:
        check_val (bool): Also check the validation data set. Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, check_val: bool = True) -> None:
        self.check_val = check_val

    def before_train(self, runner) -> None:
        self._check(runner, 'train_dataloader', runner.train_dataloader)
        if self.check_val and runner.val_loop is not None:
            self._check(runner, 'val_dataloader', runner.val_loop.dataloader)

    def before_val(self, runner) -> None:
        if self.check_val and runner.val_loop is not None:
            self._check(runner, 'val_dataloader', runner.val_loop.dataloader)

    def before_test(self, runner) -> None:
        self._check(runner, 'test_dataloader', runner.test_loop.dataloader)

    @staticmethod
    def check_model_against_classes(model, classes, data_desc: str = 'the data set') -> None:
        """Raise :class:`NumClassesMismatchError` if a head of ``model`` disagrees with ``classes``.

        Args:
            model (nn.Module): The (maybe wrapped) model.
            classes (Sequence[str]): Class names of the data.
            data_desc (str): How to name the data in the message.
        """
        model = _unwrap(model)
        problems = []
        for path, num_classes in _heads_with_num_classes(model):
            if num_classes != len(classes):
                key = ('data_preprocessor.num_classes' if path == 'data_preprocessor'
                       else f'model.{path}.num_classes')
                problems.append((key, num_classes))
        if problems:
            shown = ', '.join(map(str, classes[:10])) + (', ...' if len(classes) > 10 else '')
            listed = '\n'.join(f'  {key} = {value}' for key, value in problems)
            overrides = ' '.join(f'{key}={len(classes)}' for key, _ in problems)
            raise NumClassesMismatchError(
                f'{data_desc} has {len(classes)} classes ({shown}) but the model was built '
                f'for another number of classes:\n{listed}\n'
                f'Fix: set these config keys to {len(classes)} (e.g. --cfg-options {overrides}), '
                'or give the data set the intended classes through its metainfo=dict(classes=...).')

    def _check(self, runner, which: str, dataloader) -> None:
        classes, dataset = _dataset_classes(dataloader)
        if not classes:
            return
        root = getattr(dataset, 'data_root', None) or ''
        desc = f'{which}.dataset ({type(dataset).__name__}{", " + root if root else ""})'
        self.check_model_against_classes(runner.model, classes, desc)


class EmptyTrainLoaderError(ValueError):
    """The training data loader yields no batch (raised by TrainBatchesGuardHook)."""


@HOOKS.register_module()
class TrainBatchesGuardHook(Hook):
    """Fail before the first step when the training loader yields no batch.

    With ``drop_last=True`` a data set smaller than one batch per rank gives an empty loader:
    an iteration-based loop then dies of a bare ``StopIteration`` and an epoch-based one
    trains nothing. The error names the data set, its size, the batch size, the number of
    processes and the keys to change.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        try:
            batches = len(loader)
        except TypeError:  # no length (an iterable-style data set): nothing to check
            return
        if batches:
            return
        from mmengine.dist import get_world_size

        dataset = getattr(loader, 'dataset', None)
        root = getattr(dataset, 'data_root', None) or ''
        size = len(dataset) if dataset is not None else 0
        raise EmptyTrainLoaderError(
            f'train_dataloader yields no batch: its data set ({type(dataset).__name__}'
            f'{", " + root if root else ""}) has {size} samples, fewer than one batch of '
            f'{loader.batch_size} per process ({get_world_size()} processes) with '
            f'drop_last={getattr(loader, "drop_last", None)}. Lower train_dataloader.batch_size '
            f'(e.g. --cfg-options train_dataloader.batch_size={max(1, size)}), use fewer '
            f'processes, or check train_dataloader.dataset.data_root.')


# --------------------------------------------------------------------------- buffers at validation
@HOOKS.register_module()
class BroadcastBuffersHook(Hook):
    """Before each validation, every rank takes rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts rank 0's buffers at the start of each training forward, and each rank then
    updates its own in that forward; mmengine's ``val_step`` bypasses DDP, so every rank
    validated its share of the data with its own statistics, while the checkpoint holds rank
    0's: the ``results.json`` of a multi-process run with plain BN (the demo UperNet config on
    CPU) was not the score of its checkpoint (14.92 validated against 14.84 from tools/test.py
    of the saved ``iter_6.pth``: a one-off run, 2 gloo processes, 2026-11-24). With rank 0's
    the validated model is the saved one. (mmengine's ``SyncBuffersHook`` averages them, after
    an iteration-based run has already saved rank 0's.) Nothing to do in a single process or
    with SyncBN, whose statistics agree on every rank.
    """

    priority = 'VERY_HIGH'

    def before_val_epoch(self, runner) -> None:
        from mmengine.dist import broadcast, get_world_size
        if get_world_size() < 2:
            return
        for buffer in _unwrap(runner.model).buffers():
            broadcast(buffer, src=0)


# --------------------------------------------------------------------------- tested checkpoint
class CheckpointMismatchError(ValueError):
    """The checkpoint under test does not hold the model's weights (TestedCheckpointGuardHook)."""


@HOOKS.register_module()
class TestedCheckpointGuardHook(Hook):
    """Refuse to evaluate a checkpoint that lacks weights of the model, or has them in other
    shapes.

    mmengine loads ``load_from`` non-strictly: a weight the checkpoint lacks (or holds in another
    shape) keeps its random initialisation, a warning lists it, and the test goes on to report
    the metrics of a partly random model, e.g. a MIM checkpoint tested with a fine-tune config
    (no head). ``tools/test.py`` adds this hook. Just before mmengine loads the weights, it loads
    them into the model itself, with the key revision mmengine applies (``module.`` dropped) and
    through the model's own load hooks (which may rename or convert keys), and raises
    :class:`CheckpointMismatchError` naming the file, the weights and what to pass instead.
    Keys the model does not have are left to mmengine's warning. A run that trains (a training
    loop is built, e.g. a resume) is not checked.
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        loop = getattr(runner, '_train_loop', None)
        if loop is not None and not isinstance(loop, dict):
            return
        state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            return
        revised = OrderedDict((re.sub(r'^module\.', '', k), v) for k, v in state.items())
        revised._metadata = getattr(state, '_metadata', OrderedDict())  # the load hooks read it
        model = _unwrap(runner.model)
        path = getattr(runner.cfg, 'load_from', None) or 'the checkpoint'
        advice = ('Pass a checkpoint trained with this config (iter_*.pth / epoch_*.pth / '
                  'best_*.pth in its work dir); a pretrain (MIM, VQ-KD) checkpoint belongs in '
                  'model.backbone.init_cfg.checkpoint of a training run (tools/train.py) first.')
        from beitv2_mm.convert import extract_state_dict
        if any(re.match(r'(module\.)?blocks\.\d+\.', str(k))
               for k in extract_state_dict(checkpoint)):
            # the unilm ({'model': ...}) / timm layout of a released (fine-tuned) checkpoint
            advice += (' Its keys (blocks.N.*) are of an official BEiT release: convert it first '
                       '(`python tools/convert_ckpt.py --list`).')
        try:
            missing = model.load_state_dict(revised, strict=False).missing_keys
        except RuntimeError as err:  # shape mismatches raise even when not strict
            raise CheckpointMismatchError(
                f'{path} does not fit the model of {runner.cfg.filename}: {err}. '
                f'{advice}') from None
        if missing:
            total = len(model.state_dict())
            shown = ', '.join(missing[:6]) + (', ...' if len(missing) > 6 else '')
            raise CheckpointMismatchError(
                f'{path} lacks {len(missing)} of the {total} weights of the model of '
                f'{runner.cfg.filename} ({shown}); the test would score them at their random '
                f'initialisation. {advice}')
