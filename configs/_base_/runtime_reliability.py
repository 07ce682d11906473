"""Reliability settings for any stage (mmpretrain, mmseg or mmdet scope).

What it turns on (engineer "reliability", issue 8; code in ``beitv2_mm/engine/``):

* ``NaNGuardHook``: stops at the first non-finite loss / gradient norm, names the iteration,
  never saves the poisoned state, dumps the offending batch to the work dir; fp16 loss-scaler
  skipped steps are not failures.
* ``NumClassesGuardHook``: fails before the first step when a head's ``num_classes`` does not
  match the classes of the data set, naming both and the config key to change.
* ``BroadcastBuffersHook``: in a multi-process run, validation uses rank 0's buffers (BN
  statistics), the ones the checkpoint saves, so the validation score is the checkpoint's.
* ``SkippedImagesHook``: where a loading transform is ``SafeLoadImageFromFile(on_error='skip')``,
  reports the unreadable images skipped after each epoch and lists them at the end of the run
  in ``<work_dir>/skipped_images.txt``.
* ``TrainBatchesGuardHook``: fails before the first step, naming the data set and the batch
  size, when the training loader yields no batch (fewer samples than one batch per process
  with ``drop_last``), instead of a bare ``StopIteration``.
* a fixed seed (exact ``--resume`` needs one: mmengine draws a new seed per run when it is
  ``None``) and ``cudnn_benchmark=False``. For bitwise GPU reproducibility also set
  ``randomness.deterministic=True`` (needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8``; slower).
* a process-group timeout (``env_cfg.dist_cfg.timeout``, seconds): a rank stuck in a
  collective fails after this long instead of hanging forever; a rank that *dies* is caught
  by torchrun at once. Raise it for very slow evaluation or checkpointing steps.

``tools/train.py`` adds these hooks to every run whose config does not list them
(``beitv2_mm.engine.launch.add_guard_hooks``); this file is for runs built another way.

Atomic checkpoints and exact resume need no config: ``import beitv2_mm`` applies them
(``beitv2_mm/engine/compat.py``, fix "R").

How to include it. mmengine refuses a key defined by two ``_base_`` files, and every runtime
piece of this project already defines ``custom_hooks``/``randomness``/``env_cfg``, so this file
defines its settings under ``reliability_*`` names, and the experiment config that lists it in
``_base_`` refers to them as ``_base_.NAME`` (plain ``{{_base_.NAME}}`` also works for whole
values)::

    _base_ = ['../_base_/mim_runtime.py', '../_base_/runtime_reliability.py']
    custom_hooks = _base_.reliability_hooks + [dict(type='CodebookUsageHook')]
    randomness = _base_.reliability_randomness
    env_cfg = dict(cudnn_benchmark=False, dist_cfg=_base_.reliability_dist_cfg)

A runtime piece (``configs/_base_/*_runtime.py``) can instead copy the three dicts below into
its own ``custom_hooks``, ``randomness`` and ``env_cfg.dist_cfg``.
"""
reliability_hooks = [
    dict(type='NaNGuardHook', check_grad_norm=True, dump_batch=True, max_consecutive_skips=20),
    dict(type='NumClassesGuardHook', check_val=True),
    dict(type='BroadcastBuffersHook'),
    dict(type='SkippedImagesHook'),
    dict(type='TrainBatchesGuardHook'),
]
# diff_rank_seed: each rank draws its own masks / drop-path / augmentations (with
# beitv2_mm the data order still follows the seed and resumes exactly).
reliability_randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)
reliability_dist_cfg = dict(backend='nccl', timeout=1800)
