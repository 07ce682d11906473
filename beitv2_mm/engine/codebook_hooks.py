"""Codebook usage logging and collapse warning for EMA-codebook tokenizers (VQ-KD, PeCo)."""
from __future__ import annotations

import json
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmpretrain.registry import HOOKS


def find_quantizers(model):
    """(name, module) of every module with ``pop_usage_stats`` (e.g. ``NormEMAQuantizer``)."""
    if hasattr(model, 'module'):  # DDP / FSDP wrappers
        model = model.module
    return [(name, m) for name, m in model.named_modules() if hasattr(m, 'pop_usage_stats')]


@HOOKS.register_module()
class CodebookUsageHook(Hook):
    """Logs codebook usage every ``interval`` training iterations and warns on collapse.

    The quantizer counts code hits on the device (no per-step host sync); this hook reads
    them once per interval (:meth:`NormEMAQuantizer.pop_usage_stats`) and resets them, so
    ``usage`` is the fraction of the codebook hit over the last ``interval`` iterations.
    A shorter window (the first after a resume, the counts not being checkpointed) is logged
    but not judged for collapse: fewer tokens hit fewer codes.

    Every number goes to ``runner.message_hub`` as log scalars
    ``codebook/<quantizer>/{usage,used_codes,perplexity}`` (so they show in the log line and
    in the visualizer backends). When usage falls under ``warn_threshold`` a warning is
    logged and recorded in the message hub info ``codebook_collapse_warnings`` (a list of
    dicts: iter, quantizer, usage, threshold), which result writers can copy into a run's
    results; ``runner.message_hub.get_info('codebook_usage')`` holds the latest numbers.
    When training ends, both go to the run's results file ``<work_dir>/codebook_results.json``
    (``{"collapsed": bool, "warnings": [...], "latest": {...}}``), written atomically.

    Args:
        interval (int): Iterations between reads. Defaults to 50.
        warn_threshold (float): Usage fraction under which collapse is reported.
            Defaults to 0.1 (fewer than 10% of the codes in use).
        warmup_iters (int): No warning before this iteration (the codebook starts from
            k-means and needs some steps to spread). Defaults to 0.
    """

    priority = 'NORMAL'  # before LoggerHook (BELOW_NORMAL) formats the log line

    def __init__(self, interval: int = 50, warn_threshold: float = 0.1,
                 warmup_iters: int = 0) -> None:
        if interval < 1:
            raise ValueError(f'CodebookUsageHook: interval must be >= 1, got {interval}')
        self.interval = interval
        self.warn_threshold = warn_threshold
        self.warmup_iters = warmup_iters

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not self.every_n_train_iters(runner, self.interval) and \
                not self.is_last_train_iter(runner):
            return
        hub = runner.message_hub
        latest = {}
        for name, quantizer in find_quantizers(runner.model):
            stats = quantizer.pop_usage_stats(reset=True)
            if stats['steps'] == 0:
                continue
            key = name or 'quantizer'
            for stat in ('usage', 'used_codes', 'perplexity'):
                hub.update_scalar(f'train/codebook/{key}/{stat}', stats[stat])
            latest[key] = stats
            # A window shorter than the interval (the first after a resume: the counts are not
            # checkpointed) sees fewer tokens, so less usage: not judged, unless it is the
            # whole run so far (a run shorter than the interval).
            judged = stats['steps'] >= min(self.interval, runner.iter + 1)
            if stats['usage'] < self.warn_threshold and judged and \
                    runner.iter + 1 >= self.warmup_iters:
                warnings = list(hub.get_info('codebook_collapse_warnings', []) or [])
                warnings.append(dict(iter=runner.iter + 1, quantizer=key,
                                     usage=stats['usage'], threshold=self.warn_threshold))
                hub.update_info('codebook_collapse_warnings', warnings)
                print_log(f'CODEBOOK COLLAPSE WARNING at iter {runner.iter + 1}: {key} uses '
                          f'{stats["used_codes"]:.0f}/{quantizer.num_codes} codes '
                          f'({stats["usage"]:.1%} < {self.warn_threshold:.1%}) over the last '
                          f'{stats["steps"]:.0f} iterations. Remedies: k-means init, lower '
                          f'lr, smaller code_dim, check the teacher checkpoint.',
                          logger='current', level=30)
        if latest:
            hub.update_info('codebook_usage', dict(iter=runner.iter + 1, **latest))

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        from .checkpoint import atomic_write_text

        hub = runner.message_hub
        warnings = list(hub.get_info('codebook_collapse_warnings', []) or [])
        payload = dict(collapsed=bool(warnings), warn_threshold=self.warn_threshold,
                       warnings=warnings, latest=hub.get_info('codebook_usage', None))
        atomic_write_text(json.dumps(payload, indent=2, default=float),
                          osp.join(runner.work_dir, 'codebook_results.json'))
