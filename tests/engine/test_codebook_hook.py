"""CodebookUsageHook judges collapse on full windows only (a resumed run's first is short)."""
from types import SimpleNamespace

import torch
from mmengine.logging import MessageHub
from torch import nn

from beitv2_mm.engine.codebook_hooks import CodebookUsageHook
from beitv2_mm.tokenizers.quantizer import NormEMAQuantizer


def _window(hook, model, hub, iteration, steps, max_iters=100):
    """One hook read at 0-based ``iteration`` after ``steps`` counted forwards that hit one
    code of 16 (usage 1/16, under the threshold)."""
    q = model.quantizer
    q.usage_counts.zero_()
    q.usage_counts[3] = 7.0
    q.usage_steps.fill_(steps)
    runner = SimpleNamespace(model=model, message_hub=hub, iter=iteration, max_iters=max_iters,
                             train_loop=SimpleNamespace(max_iters=max_iters))
    hook.after_train_iter(runner, batch_idx=iteration)
    return [w['iter'] for w in hub.get_info('codebook_collapse_warnings', []) or []]


def test_collapse_is_judged_on_full_windows_only():
    model = nn.Module()
    model.quantizer = NormEMAQuantizer(num_codes=16, code_dim=4, kmeans_init=False)
    hook = CodebookUsageHook(interval=10, warn_threshold=0.5)
    hub = MessageHub.get_instance('test_codebook_windows')
    # resumed at iteration 15: the read at 20 covers 5 iterations -> logged, not judged
    assert _window(hook, model, hub, iteration=19, steps=5) == []
    assert hub.get_scalar('train/codebook/quantizer/usage').current() == 1 / 16
    # the next full window is judged
    assert _window(hook, model, hub, iteration=29, steps=10) == [30]
    # a run shorter than the interval: its one window is the whole run, judged
    hub = MessageHub.get_instance('test_codebook_short_run')
    assert _window(hook, model, hub, iteration=7, steps=8, max_iters=8) == [8]
    assert torch.count_nonzero(model.quantizer.usage_counts) == 0  # read and reset


def test_no_collapse_warning_before_warmup_iters():
    """configs/_base_/vqkd_runtime.py sets warmup_iters=1000: the codebook starts from k-means
    and uses few codes at first, which is no collapse; from that iteration on it is judged."""
    model = nn.Module()
    model.quantizer = NormEMAQuantizer(num_codes=16, code_dim=4, kmeans_init=False)
    hook = CodebookUsageHook(interval=10, warn_threshold=0.5, warmup_iters=30)
    hub = MessageHub.get_instance('test_codebook_warmup')
    assert _window(hook, model, hub, iteration=9, steps=10) == []
    assert _window(hook, model, hub, iteration=19, steps=10) == []
    assert hub.get_info('codebook_usage')['iter'] == 20  # logged all the same
    assert _window(hook, model, hub, iteration=29, steps=10) == [30]
