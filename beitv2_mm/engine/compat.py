"""Fixes for the pinned OpenMMLab stack, in one visible place.

Every fix here is applied once, when :mod:`beitv2_mm` is imported (configs reach it through
``custom_imports``). Each one names the breakage, the upstream code it touches and how it is
fixed, and has a test in ``tests/engine/test_compat.py`` that fails without it.

1. ``torch.load`` defaults to ``weights_only=True`` since torch 2.6. mmengine 0.10.7 cannot
   resume from its own checkpoints (they hold ``HistoryBuffer`` objects, numpy scalars and
   the config), nor load the official BEiT releases (they hold an ``argparse.Namespace``).
   Fix: mmengine's checkpoint module gets a ``torch`` whose ``load`` defaults to
   ``weights_only=False``, the behaviour mmengine was written for. Only files the user names
   in a config or on the command line go through it. The rest of torch is untouched.
2. SciPy 1.14 removed ``scipy.interpolate.interp2d``. mmpretrain
   (``resize_relative_position_bias_table``) and mmseg (``BEiT._geometric_sequence_interpolation``)
   call it to resize relative position bias tables (14x14 at 224 px -> 32x32 at 512 px), so
   fine-tuning at another resolution crashes. Fix: :class:`GridCubicInterp2d`, a drop-in for
   the one call pattern both use (cubic, rectilinear grid, called on a grid), built on
   ``RectBivariateSpline`` with zero smoothing: the same interpolating bicubic spline FITPACK
   computed for ``interp2d`` on grid data.
3. ``torch.cuda.amp.autocast`` is deprecated in torch 2.4+ and warns on every call in
   mmpretrain's VQKD/BEiT code paths; silenced here (the replacement behaves the same).
4. mmpretrain's ``BEiTTransformerEncoderLayer`` applies stochastic depth twice to the FFN branch:
   its ``FFN`` is built with ``dropout_layer=DropPath(drop_path_rate)`` and ``add_identity=False``,
   and ``forward`` wraps the FFN output in ``self.drop_path`` again. With drop path p the FFN
   branch is dropped with probability 1 - (1 - p)^2 and rescaled by 1 / (1 - p)^2; the official
   ``Block`` (unilm ``beit2/modeling_finetune.py``) drops it with probability p. Every BEiT ViT
   of the stack goes through this layer (MIM student and neck, fine-tune, UperNet, Mask R-CNN),
   so every run with drop path > 0 trained a different model. Fix: after
   ``BEiTTransformerEncoderLayer.__init__``, the FFN's own drop path is an ``nn.Identity``
   (unless the config set ``ffn_cfg.dropout_layer`` itself); no parameters change.
5. mmengine's ``OptimWrapper._clip_grad`` logs the gradient norm with ``float(grad_norm)``
   between the backward and the optimizer step: a host-device sync in the middle of every
   step that clips gradients (all BEiT recipes do), so the GPU idles while the host launches
   the optimizer and the next step. Fix: the norm stays a tensor on the wrapper
   (``pending_grad_norm``) and is published to the message hub by ``RuntimeInfoHook`` after the
   iteration, where mmengine reads the losses anyway, before any other hook looks at
   ``train/grad_norm`` (``NaNGuardHook`` still sees every step's norm). ``train_step`` itself
   no longer syncs. Outside a runner, :func:`publish_pending_grad_norm` does it.
6. mmseg's decode heads log ``acc_seg`` every step with ``accuracy``: a ``topk`` over the
   classes of every pixel and two boolean-mask indexings (each a host-device sync on a GPU).
   UperNet on an H100 (bf16, 2 images at 512 px, ADE20K's 150 classes): 7.9 ms of top-k in a
   100 ms step. Fix: for the default ``topk=1`` without threshold, the same number from an
   ``argmax`` and masked sums on the device (:func:`pixel_accuracy`); other arguments go to
   mmseg's function.
7. mmseg's decode heads upsample the logits to the label size (x4 bilinear, 150 channels)
   before the loss; PyTorch's bilinear-upsample backward on CUDA is an atomic-add scatter:
   15.9 ms of that 100 ms step. Fix: for ``mode='bilinear'``, ``align_corners=False`` in
   ``BaseDecodeHead``, the resize is two matmuls with PyTorch's own interpolation weights
   (:func:`bilinear_resize`: same values up to float rounding, tested), whose backward is two
   more matmuls. Other modes and callers, and CPU tensors (where the matmuls are slower),
   use mmseg's ``resize``.
8. mmengine's ``DefaultOptimWrapperConstructor`` logs one WARNING line per frozen parameter
   ("... is skipped since its requires_grad=False"): 50-170 lines per MIM, VQ-KD or linear-probe
   run (the frozen tokenizer, teacher or backbone), which bury the warnings that matter. Fix:
   while the constructor runs, those lines are held back and then said in one line with their
   count per top-level module (:func:`frozen_parameter_summary`); every other message passes.
9. mmpretrain's ``BEiTTransformerEncoderLayer`` hands its ``attn_drop_rate`` and ``drop_rate`` to
   ``BEiTAttention`` as ``attn_drop`` and ``proj_drop``, names ``BEiTAttention.__init__`` swallows
   in ``**kwargs``: the attention-weight dropout and the dropout after the output projection of
   every BEiT ViT of the stack stay at 0 whatever the config says (the official ``Attention`` of
   unilm ``beit2/modeling_finetune.py`` takes ``attn_drop=attn_drop_rate, proj_drop=drop_rate``).
   The BEiT recipes use 0 for both, so no shipped config changes; a config that sets them now
   gets them. Fix: ``BEiTAttention.__init__`` reads ``attn_drop`` / ``proj_drop`` as its
   ``attn_drop_rate`` / ``proj_drop_rate`` when those are not given themselves.
R. (reliability) mmengine writes checkpoints and the ``last_checkpoint`` pointer in place and
   deletes old checkpoints before writing the new one, so a kill during a save leaves a truncated
   or missing latest checkpoint; and ``--resume`` forgets RNG states, restarts a half-done epoch
   from its first batch and lets validation shift the training RNG. Fix: atomic writes (temp file
   + fsync + ``os.replace``), RNG states of every rank saved in each checkpoint, stock loops that
   resume exactly. Code and tests: :mod:`beitv2_mm.engine.checkpoint`,
   :mod:`beitv2_mm.engine.resume`, ``tests/engine/test_atomic_checkpoint.py``,
   ``tests/engine/test_resume.py``.
"""
from __future__ import annotations

import functools
import inspect
import re
import types
import warnings

import numpy as np

_APPLIED: dict[str, bool] = {}
#: Upstream functions a fix replaced, by ``'Class.method'`` (benchmarks time the stock path).
ORIGINALS: dict = {}


# --------------------------------------------------------------------------- 1. torch.load
def trusted_torch_load(*args, **kwargs):
    """``torch.load`` with the pre-2.6 default ``weights_only=False``.

    Used for checkpoints the user chose (resume files, pretrain checkpoints, official
    releases), which hold pickled Python objects besides tensors.
    """
    import torch

    kwargs.setdefault('weights_only', False)
    return torch.load(*args, **kwargs)


class _TorchWithTrustedLoad(types.ModuleType):
    """A stand-in for the ``torch`` module inside one upstream module: only ``load`` differs."""

    def __init__(self):
        import torch

        super().__init__('torch')
        self._torch = torch

    def __getattr__(self, name):
        return getattr(self._torch, name)

    @staticmethod
    def load(*args, **kwargs):
        return trusted_torch_load(*args, **kwargs)


def _fix_mmengine_torch_load() -> None:
    import mmengine.runner.checkpoint as ckpt_module

    if not isinstance(ckpt_module.torch, _TorchWithTrustedLoad):
        ckpt_module.torch = _TorchWithTrustedLoad()


# --------------------------------------------------------------------------- 2. interp2d
class GridCubicInterp2d:
    """Drop-in for ``scipy.interpolate.interp2d(x, y, z, kind='cubic')`` on grid data.

    ``interp2d`` takes ``z`` of shape ``(len(y), len(x))`` and, called as ``f(xn, yn)``,
    returns shape ``(len(yn), len(xn))``. It fitted an interpolating (s=0) bicubic spline with
    FITPACK's ``regrid``; ``RectBivariateSpline`` fits the same spline, with rows first.

    Args:
        x (sequence): Strictly increasing column coordinates.
        y (sequence): Strictly increasing row coordinates.
        z (array): Values, shape ``(len(y), len(x))``.
        kind (str): Only ``'cubic'`` (what mmpretrain and mmseg use) and ``'linear'``.
    """

    _DEGREE = {'linear': 1, 'cubic': 3}

    def __init__(self, x, y, z, kind: str = 'linear', **kwargs):
        from scipy.interpolate import RectBivariateSpline

        if kind not in self._DEGREE:
            raise NotImplementedError(
                f'beitv2_mm.engine.compat.GridCubicInterp2d supports kind in '
                f'{sorted(self._DEGREE)}, got {kind!r}')
        x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
        if z.shape != (y.size, x.size):
            raise ValueError(f'z must have shape (len(y), len(x)) = {(y.size, x.size)}, '
                             f'got {z.shape}')
        k = self._DEGREE[kind]
        self._spline = RectBivariateSpline(y, x, z, kx=k, ky=k, s=0)

    def __call__(self, xn, yn):
        xn = np.atleast_1d(np.asarray(xn, float))
        yn = np.atleast_1d(np.asarray(yn, float))
        return self._spline(np.sort(yn), np.sort(xn), grid=True)


def _fix_scipy_interp2d() -> None:
    import scipy.interpolate as interpolate

    try:  # SciPy < 1.14 still has a working interp2d: leave it alone.
        interpolate.interp2d([0, 1, 2, 3], [0, 1, 2, 3], np.zeros((4, 4)), kind='cubic')
        return
    except (NotImplementedError, AttributeError, TypeError):
        pass
    interpolate.interp2d = GridCubicInterp2d


# --------------------------------------------------------------------------- 3. warnings
def _quiet_autocast_deprecation() -> None:
    warnings.filterwarnings(
        'ignore', message=r'.*torch\.cuda\.amp\.autocast.*is deprecated', category=FutureWarning)


# --------------------------------------------------------------------------- 4. drop path
def _fix_beit_ffn_double_drop_path() -> None:
    from mmpretrain.models.backbones.beit import BEiTTransformerEncoderLayer
    from torch import nn

    original = BEiTTransformerEncoderLayer.__init__
    if getattr(original, 'single_drop_path', False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        ffn_cfg = signature.bind(self, *args, **kwargs).arguments.get('ffn_cfg') or {}
        if 'dropout_layer' not in ffn_cfg and not self.ffn.add_identity:
            self.ffn.dropout_layer = nn.Identity()  # ``forward`` applies self.drop_path

    __init__.single_drop_path = True
    BEiTTransformerEncoderLayer.__init__ = __init__


# --------------------------------------------------------------------------- 5. grad-norm sync
def publish_pending_grad_norm(optim_wrapper) -> None:
    """Log the gradient norm(s) that :func:`_sync_free_clip_grad` kept as tensors.

    ``optim_wrapper`` may be an ``OptimWrapper`` or an ``OptimWrapperDict``; each pending norm
    goes to its wrapper's message hub as ``train/<grad_name>`` (mmengine's key), once.
    """
    wrappers = getattr(optim_wrapper, 'optim_wrappers', None)
    for wrapper in (wrappers.values() if isinstance(wrappers, dict) else [optim_wrapper]):
        pending = getattr(wrapper, 'pending_grad_norm', None)
        if pending is not None:
            wrapper.pending_grad_norm = None
            wrapper.message_hub.update_scalar(f'train/{wrapper.grad_name}', float(pending))


def _sync_free_clip_grad(self) -> None:
    """``OptimWrapper._clip_grad`` that keeps the norm on the device (see fix 5)."""
    params = [p for group in self.optimizer.param_groups for p in group['params']
              if p.requires_grad and p.grad is not None]
    if params:
        grad = self.clip_func(params, **self.clip_grad_kwargs)
        if grad is not None:  # clip_grad_value_ returns None
            self.pending_grad_norm = grad.detach()


def _fix_grad_norm_sync() -> None:
    from mmengine.hooks import RuntimeInfoHook
    from mmengine.optim import OptimWrapper

    if OptimWrapper._clip_grad is _sync_free_clip_grad:
        return
    ORIGINALS['OptimWrapper._clip_grad'] = OptimWrapper._clip_grad
    OptimWrapper._clip_grad = _sync_free_clip_grad
    original = RuntimeInfoHook.after_train_iter

    @functools.wraps(original)
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        publish_pending_grad_norm(getattr(runner, 'optim_wrapper', None))
        original(self, runner, batch_idx, data_batch=data_batch, outputs=outputs)

    RuntimeInfoHook.after_train_iter = after_train_iter


# --------------------------------------------------------------------------- 6. acc_seg
def pixel_accuracy(pred, target, ignore_index=None):
    """mmseg ``accuracy(pred, target, topk=1, ignore_index=...)`` without top-k or host syncs.

    Same formula: ``(correct + eps) * 100 / (valid + eps)`` with ``eps`` float32's epsilon;
    a pixel is correct where the arg-max class equals the label. Returns a 1-element tensor.
    """
    import torch

    eps = torch.finfo(torch.float32).eps
    if pred.size(0) == 0:
        return pred.new_tensor(0.)  # as mmseg for an empty batch
    with torch.no_grad():
        correct = pred.argmax(dim=1) == target
        if ignore_index is not None:
            valid = target != ignore_index
            correct &= valid
            total = valid.sum()
        else:
            total = torch.tensor(target.numel(), device=target.device)
        correct_k = correct.sum().float().reshape(1) + eps
        return correct_k * 100.0 / (total.float() + eps)


def _patch_mmseg_decode_head(name: str, build) -> None:
    """Replace ``mmseg.models.decode_heads.decode_head.<name>`` (the function ``BaseDecodeHead``
    calls) by ``build(original)``, once; the original goes to :data:`ORIGINALS`."""
    try:
        import mmseg.models.decode_heads.decode_head as decode_head
    except ImportError:  # mmseg is optional (segmentation only)
        return
    original = getattr(decode_head, name)
    if getattr(original, 'beitv2_mm_patched', False):
        return
    ORIGINALS[f'mmseg.decode_head.{name}'] = original
    patched = functools.wraps(original)(build(original))
    patched.beitv2_mm_patched = True
    setattr(decode_head, name, patched)


def _fix_mmseg_accuracy() -> None:
    def build(original):
        def accuracy(pred, target, topk=1, thresh=None, ignore_index=None):
            if topk in (1, (1,)) and thresh is None and pred.ndim == target.ndim + 1:
                result = pixel_accuracy(pred, target, ignore_index)
                return result if topk == 1 else [result]
            return original(pred, target, topk=topk, thresh=thresh, ignore_index=ignore_index)
        return accuracy

    _patch_mmseg_decode_head('accuracy', build)


# --------------------------------------------------------------------------- 7. logit resize
def _bilinear_weights(in_size: int, out_size: int, device, dtype):
    """(out, in) matrix of PyTorch's bilinear weights along one axis, align_corners=False."""
    import torch

    scale = in_size / out_size
    src = ((torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * scale
           - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo
    weights = torch.zeros(out_size, in_size, device=device, dtype=torch.float64)
    rows = torch.arange(out_size, device=device)
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights.to(dtype)


def bilinear_resize(x, size):
    """``F.interpolate(x, size, mode='bilinear', align_corners=False)`` for (B, C, H, W) as
    ``A_h @ x @ A_w^T`` (PyTorch's interpolation weights), in ``x``'s dtype and outside
    autocast, so the result matches up to float rounding; the backward is matmuls too."""
    import torch

    out_h, out_w = (int(v) for v in size)
    in_h, in_w = x.shape[-2:]
    with torch.autocast(x.device.type, enabled=False):
        a_h = _bilinear_weights(in_h, out_h, x.device, x.dtype)
        a_w = _bilinear_weights(in_w, out_w, x.device, x.dtype)
        return torch.matmul(a_h, torch.matmul(x, a_w.t()))


def _fix_mmseg_logit_resize() -> None:
    def build(original):
        def resize(input, size=None, scale_factor=None, mode='nearest', align_corners=None,
                   warning=True):
            if (mode == 'bilinear' and not align_corners and size is not None
                    and scale_factor is None and input.dim() == 4
                    and input.is_floating_point()
                    and input.device.type == 'cuda'):  # on a CPU the matmuls are slower
                return bilinear_resize(input, size)
            return original(input, size=size, scale_factor=scale_factor, mode=mode,
                            align_corners=align_corners, warning=warning)
        return resize

    _patch_mmseg_decode_head('resize', build)


# --------------------------------------------------------------------------- 8. frozen params
_FROZEN_PARAM = re.compile(r'^(\S+) is skipped since its requires_grad=False$')


def frozen_parameter_summary(names) -> str:
    """One line for the parameters the optimizer constructor left out as frozen."""
    groups: dict[str, int] = {}
    for name in names:
        top = name.split('.', 1)[0]
        groups[top] = groups.get(top, 0) + 1
    return (f'{len(names)} parameter{"s" if len(names) != 1 else ""} with requires_grad=False '
            'not in the optimizer (frozen): '
            + ', '.join(f'{top}.* ({n})' for top, n in groups.items()))


def _fix_frozen_parameter_log() -> None:
    import logging

    from mmengine.logging import MMLogger
    from mmengine.optim import DefaultOptimWrapperConstructor

    class HoldFrozen(logging.Filter):
        def __init__(self):
            super().__init__()
            self.names = []

        def filter(self, record):
            match = _FROZEN_PARAM.match(str(record.msg))
            if match:
                self.names.append(match.group(1))
            return match is None

    original = DefaultOptimWrapperConstructor.__call__
    ORIGINALS['DefaultOptimWrapperConstructor.__call__'] = original

    @functools.wraps(original)
    def __call__(self, model):
        logger = MMLogger.get_current_instance()
        held = HoldFrozen()
        logger.addFilter(held)
        try:
            return original(self, model)
        finally:
            logger.removeFilter(held)
            if held.names:
                logger.warning(frozen_parameter_summary(held.names))

    DefaultOptimWrapperConstructor.__call__ = __call__


# --------------------------------------------------------------------------- 9. dropout names
_DROPOUT_ALIASES = {'attn_drop': 'attn_drop_rate', 'proj_drop': 'proj_drop_rate'}


def _fix_beit_attention_dropout_names() -> None:
    from mmpretrain.models.utils.attention import BEiTAttention

    original = BEiTAttention.__init__
    if getattr(original, 'reads_dropout_aliases', False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        aliases = {alias: kwargs.pop(alias) for alias in _DROPOUT_ALIASES if alias in kwargs}
        given = signature.bind_partial(self, *args, **kwargs).arguments
        for alias, value in aliases.items():
            if _DROPOUT_ALIASES[alias] not in given:  # a rate given by its own name wins
                kwargs[_DROPOUT_ALIASES[alias]] = value
        original(self, *args, **kwargs)

    __init__.reads_dropout_aliases = True
    BEiTAttention.__init__ = __init__


# --------------------------------------------------------------------------- R. reliability
# (owned by engineer "reliability": the code lives in engine/checkpoint.py and engine/resume.py)
def _fix_reliable_checkpoints_and_resume() -> None:
    """Atomic checkpoint writes + exact resume (RNG states, mid-epoch position)."""
    from .checkpoint import install_atomic_checkpointing
    from .resume import install_exact_resume

    install_atomic_checkpointing()
    install_exact_resume()


FIXES = {
    'mmengine_torch_load_weights_only': _fix_mmengine_torch_load,
    'scipy_interp2d_removed': _fix_scipy_interp2d,
    'autocast_deprecation_warning': _quiet_autocast_deprecation,
    'beit_ffn_double_drop_path': _fix_beit_ffn_double_drop_path,
    'grad_norm_sync': _fix_grad_norm_sync,
    'mmseg_accuracy_topk_and_syncs': _fix_mmseg_accuracy,
    'mmseg_logit_resize_backward': _fix_mmseg_logit_resize,
    'frozen_parameter_log': _fix_frozen_parameter_log,
    'beit_attention_dropout_names': _fix_beit_attention_dropout_names,
    'reliable_checkpoints_and_resume': _fix_reliable_checkpoints_and_resume,
}


def apply_all() -> dict[str, bool]:
    """Apply every fix once; returns which are active."""
    for name, fix in FIXES.items():
        if not _APPLIED.get(name):
            fix()
            _APPLIED[name] = True
    return dict(_APPLIED)
