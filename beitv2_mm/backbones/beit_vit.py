"""BEiT ViTs whose attention runs through ``F.scaled_dot_product_attention``.

mmpretrain's :class:`BEiTAttention` materialises the full ``(B, heads, N, N)`` attention
matrix (``q @ k^T + bias``, softmax, dropout, ``@ v``). The classes here keep every module,
parameter of mmpretrain's :class:`BEiTViT` / :class:`BEiTPretrainViT` (so checkpoints move
freely between the two), and only replace the attention arithmetic by one call to
``torch.nn.functional.scaled_dot_product_attention``, with the relative position bias (shared,
per-layer or both) passed as an additive float mask. The result equals the explicit computation
up to floating point rounding (``tests/backbones/test_fast_beit.py`` checks forward and
gradients).

One deviation in the state dict: the per-layer ``attn.relative_position_index`` buffers (a pure
function of the window size) are neither stored nor loaded; all layers share one index per
window size and device (:func:`shared_relative_position_index`). mmpretrain keeps an int64
copy per layer, in memory and in every checkpoint: at 1024 px (the detector's 64 x 64 grid)
that is 12 x 134 MB = 1.6 GB for a ViT-B, more than its parameters. The shared index of
mmpretrain's ``RelativePositionBias`` (the MIM student's) is untouched. A stock model loading
a checkpoint of these classes builds its own index (mmengine's non-strict load lists the keys
as missing; :func:`beitv2_mm.downstream.checkpoint.load_beit_pretrained` says they were
computed).

``attn_impl='explicit'`` selects mmpretrain's original arithmetic on the same modules, so the
two paths can be benchmarked against each other on one checkpoint; the stock classes
(``type='BEiTViT'`` / ``'BEiTPretrainViT'``) also stay usable.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_
from torch import nn

from mmpretrain.models.backbones.beit import BEiTViT
from mmpretrain.models.selfsup.beit import BEiTPretrainViT
from mmpretrain.models.utils import BEiTAttention
from mmpretrain.registry import MODELS

ATTN_IMPLS = ('sdpa', 'explicit')


def relative_position_index(window_size, with_cls: bool = True) -> torch.Tensor:
    """BEiT's relative position index of a ``(Wh, Ww)`` (or square ``int``) grid plus [CLS],
    shape ``(Wh*Ww + 1, Wh*Ww + 1)``, int64; the values mmpretrain's ``BEiTAttention`` and
    ``RelativePositionBias`` build (rows of the ``(2Wh-1)(2Ww-1) + 3`` bias table: patch pairs by
    their offset, then [CLS]->patch, patch->[CLS], [CLS]->[CLS]). ``with_cls=False``: the
    ``(Wh*Ww, Wh*Ww)`` patch-to-patch part alone (a grid without [CLS], as ViTDet's windows)."""
    wh, ww = (window_size, window_size) if isinstance(window_size, int) else window_size
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww),
                                        indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    num_relative = (2 * wh - 1) * (2 * ww - 1) + 3
    index = torch.zeros((wh * ww + 1, ) * 2, dtype=torch.long)
    index[1:, 1:] = (rel[..., 0] + wh - 1) * (2 * ww - 1) + rel[..., 1] + ww - 1
    if not with_cls:
        return index[1:, 1:].contiguous()
    index[0, 0:] = num_relative - 3
    index[0:, 0] = num_relative - 2
    index[0, 0] = num_relative - 1
    return index


_SHARED_INDEX: dict = {}


def shared_relative_position_index(window_size, device, with_cls: bool = True) -> torch.Tensor:
    """One read-only :func:`relative_position_index` per (window, [CLS] or not, device), shared
    by all layers (and models) that ask for it. Built outside inference mode, so that autograd
    may save it."""
    device = torch.device(device)
    key = (tuple(int(w) for w in window_size), bool(with_cls), device.type, device.index)
    index = _SHARED_INDEX.get(key)
    if index is None:
        with torch.inference_mode(False):
            index = relative_position_index(key[0], with_cls=key[1]).to(device)
        _SHARED_INDEX[key] = index
    return index


def _drop_stored_rel_pos_index(state_dict, prefix, *args) -> None:
    """Load pre-hook: a stored ``relative_position_index`` (stock checkpoints) is not loaded;
    the shared one is a function of the window size, which the table's shape already checks."""
    state_dict.pop(prefix + 'relative_position_index', None)


def attention_bias(attn: nn.Module, shared: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The ``(heads, N, N)`` bias a ``BEiTAttention`` (stock or fast) adds to its scores: its
    own relative position table gathered by its index, plus the ``shared`` one; None if none."""
    own = None
    if getattr(attn, 'relative_position_bias_table', None) is not None:
        num_tokens = attn.relative_position_index.shape[0]  # with [CLS] or without (windows)
        # The transposed (heads, rows) table indexed gives (heads, N*N) contiguous; mmpretrain's
        # (N*N, heads) gather and permute is strided and SDPA copied it (CPU: run c9, 1.16x).
        own = attn.relative_position_bias_table.t()[:, attn.relative_position_index.view(-1)]
        own = own.view(-1, num_tokens, num_tokens)
    if shared is None:
        return own
    return shared if own is None else own + shared


def pretrain_trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """The official BEiT pretraining init: normal(0, std) truncated at +-std.

    unilm ``beit2/modeling_pretrain.py`` (and BEiT v1's) redefines ``trunc_normal_`` with
    ``a=-std, b=std``, so the drawn weights have a standard deviation of about 0.54 * std
    (0.0108 for std 0.02). mmengine's and timm's default bounds (+-2, absolute) cut nothing at
    std 0.02; they are what the official fine-tuning / VQ-KD models use.
    """
    return trunc_normal_(tensor, std=std, a=-std, b=std)


def rescale_residual_branches(layers, first_layer_id: int = 1) -> None:
    """Official ``fix_init_weight``: divide each layer's residual-branch output weights
    (``attn.proj``, the FFN's second Linear) by ``sqrt(2 * layer_id)``, ids counted from
    ``first_layer_id``."""
    for i, layer in enumerate(layers):
        scale = math.sqrt(2.0 * (first_layer_id + i))
        layer.attn.proj.weight.data.div_(scale)
        layer.ffn.layers[1].weight.data.div_(scale)


def official_vit_init(vit: nn.Module) -> None:
    """The official init of a BEiT ViT that is not pretrained (unilm ``beit2/modeling_finetune.py``
    ``VisionTransformer``: the fine-tuning model, and the VQ-KD encoder and decoder).

    Every Linear of ``vit.layers`` trunc-normal(0.02) with zero bias, ``cls_token``
    trunc-normal(0.02), the relative position bias tables (per layer and shared) zero, then
    :func:`rescale_residual_branches`. LayerNorms (1, 0), zero q/v biases, layer scales and the
    patch-embedding conv (PyTorch's default) are already as official. mmpretrain instead keeps
    PyTorch's Linear init (uniform, std 0.021 at 768 inputs, no depth rescale), re-draws the FFN
    Xavier-uniform, leaves ``cls_token`` at zero and draws the tables trunc-normal(0.02).
    ``pos_embed`` is drawn by mmpretrain's ``init_weights`` as officially.
    """
    layers = getattr(vit, 'layers', nn.ModuleList())
    for m in layers.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if getattr(vit, 'cls_token', None) is not None:
        trunc_normal_(vit.cls_token, std=0.02)
    for name, param in vit.named_parameters():
        if name.endswith('relative_position_bias_table'):
            nn.init.zeros_(param)
    rescale_residual_branches(layers)


class OfficialInitMixin:
    """``init_weights`` of a BEiT ViT with an ``official_init`` flag: mmpretrain's init, then,
    when the flag is set and no weights are loaded, :func:`official_vit_init`."""

    official_init: bool = True

    def init_weights(self) -> None:
        super().init_weights()
        if self.official_init and not loads_pretrained(self.init_cfg):
            official_vit_init(self)


def loads_pretrained(init_cfg) -> bool:
    """Whether an mmengine ``init_cfg`` loads weights (``type='Pretrained'``, or this project's
    ``'BEiTPretrained'`` with a checkpoint): then an ``init_weights`` override must not re-draw
    them."""
    if not isinstance(init_cfg, dict):
        return False
    return (init_cfg.get('type') == 'Pretrained'
            or (init_cfg.get('type') == 'BEiTPretrained' and bool(init_cfg.get('checkpoint'))))


class FastBEiTAttention(BEiTAttention):
    """:class:`BEiTAttention` with a selectable attention kernel; same parameters.

    Instances are made by :func:`use_fast_attention`, which re-classes existing
    ``BEiTAttention`` modules in place (no new parameters, so no key changes) and replaces a
    per-layer ``relative_position_index`` buffer by the shared, unsaved index (module docstring).

    Attributes:
        attn_impl (str): ``'sdpa'`` (fused ``scaled_dot_product_attention``, the relative
            position bias as additive mask) or ``'explicit'`` (mmpretrain's arithmetic).
    """

    attn_impl: str = 'sdpa'

    def _share_rel_pos_index(self) -> None:
        """Point ``relative_position_index`` (now a plain attribute, not a buffer) at the shared
        index on the table's device."""
        if self.relative_position_bias_table is not None:
            self.__dict__['relative_position_index'] = shared_relative_position_index(
                self.window_size, self.relative_position_bias_table.device)

    def _apply(self, fn, *args, **kwargs):
        # .to() / .cuda() move parameters and buffers; the index follows the table's device
        out = super()._apply(fn, *args, **kwargs)
        self._share_rel_pos_index()
        return out

    def forward(self, x: torch.Tensor, rel_pos_bias: Optional[torch.Tensor] = None):
        """Self-attention over ``x`` (B, N, C) with optional shared bias (heads, N, N)."""
        if self.attn_impl == 'explicit':
            return super().forward(x, rel_pos_bias=rel_pos_bias)
        return self.sdpa_attention(x, attention_bias(self, rel_pos_bias))

    def sdpa_attention(self, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """qkv projection, SDPA with the additive ``bias`` ((heads, N, N) or None) and output
        projection of ``x`` (B, N, C)."""
        B, N, C = x.shape
        if self.bias == 'qv_bias':
            # k has no bias in BEiT: a zero block keeps one fused qkv matmul.
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
            qkv = F.linear(x, self.qkv.weight, qkv_bias)
        else:
            qkv = self.qkv(x)
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)

        if bias is not None:
            # SDPA wants the mask in the query dtype under autocast (bf16/fp16).
            bias = bias.to(q.dtype)
            if bias.dim() == 3:
                bias = bias.unsqueeze(0)
        dropout_p = self.attn_drop.p if self.training else 0.
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=self.scale)
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(out))


def use_fast_attention(module: nn.Module, attn_impl: str = 'sdpa',
                       attention_class: type = FastBEiTAttention) -> int:
    """Switch every ``BEiTAttention`` inside ``module`` to :class:`FastBEiTAttention`.

    The modules keep their parameters; the class (hence ``forward``) changes, and a per-layer
    ``relative_position_index`` buffer becomes the shared, unsaved index (module docstring).

    Args:
        module (nn.Module): Any module holding BEiT attention layers (backbone, neck, ...).
        attn_impl (str): ``'sdpa'`` or ``'explicit'``.
        attention_class (type): The subclass of :class:`FastBEiTAttention` to switch stock
            modules to (e.g. the windowed one of :mod:`beitv2_mm.backbones.windowed_beit`).

    Returns:
        int: Number of attention modules switched.
    """
    if attn_impl not in ATTN_IMPLS:
        raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r} '
                         '(set it in the backbone/neck config)')
    count = 0
    for sub in module.modules():
        if isinstance(sub, BEiTAttention):
            if not isinstance(sub, FastBEiTAttention):
                sub.__class__ = attention_class
                if sub._buffers.pop('relative_position_index', None) is not None:
                    sub._register_load_state_dict_pre_hook(_drop_stored_rel_pos_index)
                    sub._share_rel_pos_index()
            sub.attn_impl = attn_impl
            count += 1
    return count


class PatchConv2d(nn.Conv2d):
    """A patchifying ``nn.Conv2d`` (kernel = stride, no padding, dilation or groups) computed
    as one matmul over the flattened patches; same parameters, same result.

    cuDNN runs the 16x16/16 patch convolution of a ViT poorly on an H100 (bf16, batch 128 at
    224 px: 0.7 ms forward plus NCHW->NHWC transposes, for 30 GFLOP per call), and the GEMM is
    what the FLOPs are. Any other convolution (or ``padding_mode`` other than zeros) goes
    through ``nn.Conv2d.forward``. The output is the conv's ``(B, C_out, h, w)`` as a
    channels-last view, so ``PatchEmbed``'s ``flatten(2).transpose(1, 2)`` costs no copy.
    """

    def patchifies(self) -> bool:
        return (tuple(self.stride) == tuple(self.kernel_size) and self.groups == 1
                and tuple(self.dilation) == (1, 1) and self.padding_mode == 'zeros'
                and not isinstance(self.padding, str) and tuple(self.padding) == (0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not self.patchifies():
            return super().forward(x)
        B, C, H, W = x.shape
        ph, pw = self.kernel_size
        h, w = H // ph, W // pw
        x = x[:, :, :h * ph, :w * pw]  # a strided conv ignores the remainder rows/columns
        patches = x.reshape(B, C, h, ph, w, pw).permute(0, 2, 4, 1, 3, 5)
        out = F.linear(patches.reshape(B * h * w, C * ph * pw),
                       self.weight.reshape(self.out_channels, -1), self.bias)
        return out.view(B, h, w, self.out_channels).permute(0, 3, 1, 2)


def use_matmul_patch_embed(module: nn.Module) -> int:
    """Switch every plain patchifying ``nn.Conv2d`` inside ``module`` to :class:`PatchConv2d`
    (in place, keys unchanged). Returns the number switched."""
    count = 0
    for sub in module.modules():
        if type(sub) is nn.Conv2d:
            sub.__class__ = PatchConv2d
            if sub.patchifies():
                count += 1
            else:
                sub.__class__ = nn.Conv2d
    return count


def compile_layers(layers: nn.ModuleList, compile_cfg) -> None:
    """``torch.compile`` each transformer layer in place (keys stay the same).

    Args:
        layers (nn.ModuleList): The layers to compile.
        compile_cfg (bool | dict): False/None: nothing; True: default options; a dict:
            keyword arguments for ``torch.compile`` (e.g. ``dict(mode='max-autotune')``).
    """
    if not compile_cfg:
        return
    kwargs = compile_cfg if isinstance(compile_cfg, dict) else {}
    for layer in layers:
        for module in layer.modules():
            # mmpretrain stores drop-path rates as numpy scalars (np.linspace); dynamo makes
            # them tensors, and under inference_mode (the frozen tokenizer) its guard on
            # them fails at once ("Guard failed on the same frame", torch 2.13)
            if isinstance(getattr(module, 'drop_prob', None), np.generic):
                module.drop_prob = float(module.drop_prob)
        layer.compile(**kwargs)


@MODELS.register_module()
class FastBEiTViT(OfficialInitMixin, BEiTViT):
    """mmpretrain :class:`BEiTViT` with SDPA attention (fine-tuning / tokenizer encoder).

    Args:
        attn_impl (str): ``'sdpa'`` (default) or ``'explicit'`` (mmpretrain's arithmetic).
        compile (bool | dict): ``torch.compile`` each layer (see :func:`compile_layers`).
        official_init (bool): Without pretrained weights, initialise as the official BEiT
            fine-tuning model (:func:`official_vit_init`), not as mmpretrain. Defaults to True.
        **kwargs: Everything :class:`BEiTViT` takes.
    """

    def __init__(self, *args, attn_impl: str = 'sdpa', compile=False, official_init: bool = True,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.attn_impl = attn_impl
        self.official_init = official_init
        use_fast_attention(self, attn_impl)
        use_matmul_patch_embed(self.patch_embed)
        compile_layers(self.layers, compile)


@MODELS.register_module()
class FastBEiTPretrainViT(BEiTPretrainViT):
    """mmpretrain :class:`BEiTPretrainViT` (MIM student) with SDPA attention.

    Same keys as the stock class (``mask_token``, ``rel_pos_bias.*``, ``layers.*``...), so
    its checkpoints load into ``BEiTPretrainViT``/``BEiTViT`` and vice versa.

    Args:
        attn_impl (str): ``'sdpa'`` (default) or ``'explicit'`` (mmpretrain's arithmetic).
        compile (bool | dict): ``torch.compile`` each layer (see :func:`compile_layers`).
        official_init (bool): Initialise the layers as the official BEiT code (see
            :meth:`init_weights`). Defaults to True.
        **kwargs: Everything :class:`BEiTPretrainViT` takes.
    """

    def __init__(self, *args, attn_impl: str = 'sdpa', compile=False, official_init: bool = True,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.attn_impl = attn_impl
        self.official_init = official_init
        use_fast_attention(self, attn_impl)
        use_matmul_patch_embed(self.patch_embed)
        compile_layers(self.layers, compile)

    def init_weights(self) -> None:
        """mmpretrain's init, then (``official_init``) the official BEiT pretraining one.

        Official (unilm ``beit2/modeling_pretrain.py``): every Linear and the patch-embedding
        conv trunc-normal(0.02) truncated at +-0.02 (:func:`pretrain_trunc_normal_`) with zero
        bias, ``cls_token`` / ``mask_token`` the same, LayerNorm (1, 0), the shared relative
        position bias zero, then residual-branch output weights divided by
        ``sqrt(2 * layer_id)``. mmpretrain instead draws with bounds +-2 (twice the effective
        std) and its ``TransformerEncoderLayer.init_weights`` re-draws the FFN Linear layers
        with Xavier-uniform after the config's TruncNormal.
        """
        super().init_weights()
        if not self.official_init or loads_pretrained(self.init_cfg):
            return
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                pretrain_trunc_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        pretrain_trunc_normal_(self.cls_token)
        pretrain_trunc_normal_(self.mask_token)
        self.rescale_init_weight()
