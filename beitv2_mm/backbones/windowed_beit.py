"""ViTDet's window attention for BEiT ViTs: the Mask R-CNN backbone at 1024 px.

ViTDet (Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection", 2022;
detectron2 ``projects/ViTDet``, mmdet ``projects/ViTDet``) runs a plain ViT on a 64 x 64 patch
grid with attention inside non-overlapping 14 x 14 windows in most blocks and global attention
in four (blocks 2, 5, 8, 11 of a ViT-B; the last block of each quarter), and no [CLS] token.
For a BEiT backbone the windows fit the pretraining: a 14 x 14 window is the pretraining's
14 x 14 patch grid, so a windowed block uses its pretrained relative position table as it is
(27 x 27 offsets), and only the global blocks need theirs resized (to 127 x 127 offsets), which
the checkpoint flow does per layer (:mod:`beitv2_mm.downstream.checkpoint`). The three [CLS]
rows of each table stay in the state dict (same keys and shapes as mmpretrain's ``BEiTViT``)
and are unused.

Window partitioning follows detectron2's ``window_partition`` / ``window_unpartition``: after
``ln1`` the grid is zero-padded at the bottom and right to a multiple of the window, padded
tokens take part in attention as keys and values without a mask (as ViTDet; with a 64 x 64 grid
and 14 x 14 windows that is a 70 x 70 grid of 25 windows), and the output is cropped back. Only
attention is windowed: LayerNorm, FFN, layer scale and drop path see the whole image (so drop
path drops per image, not per window).

The grid is fixed at construction (``img_size / patch_size``), as for mmpretrain's ``BEiTViT``,
whose relative position index is built for one grid: the detector pads every image to
``img_size`` (mmdet's ``BatchFixedSizePad``).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from mmpretrain.models.backbones.beit import BEiTViT
from mmpretrain.registry import MODELS

from .beit_vit import (FastBEiTAttention, OfficialInitMixin, attention_bias, compile_layers,
                       shared_relative_position_index, use_fast_attention,
                       use_matmul_patch_embed)


def window_partition(x: torch.Tensor, window: Tuple[int, int]) -> Tuple[torch.Tensor, tuple]:
    """Cut a ``(B, H, W, C)`` grid into ``(B * nWh * nWw, wh * ww, C)`` windows, zero-padding the
    bottom and right to a multiple of the window (detectron2's ``window_partition``).

    Returns:
        tuple: The windows and the padded grid size ``(Hp, Wp)``.
    """
    B, H, W, C = x.shape
    wh, ww = window
    pad_h, pad_w = (-H) % wh, (-W) % ww
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // wh, wh, Wp // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, C), (Hp, Wp)


def window_unpartition(windows: torch.Tensor, window: Tuple[int, int], padded: Tuple[int, int],
                       grid: Tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, wh * ww, C)`` windows back to the
    ``(B, H, W, C)`` grid, padding cropped."""
    wh, ww = window
    Hp, Wp = padded
    H, W = grid
    C = windows.shape[-1]
    x = windows.view(-1, Hp // wh, Wp // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(-1, Hp, Wp, C)
    return x[:, :H, :W] if (Hp, Wp) != (H, W) else x


def vitdet_window_block_indexes(num_layers: int) -> list:
    """ViTDet's layout: every block windowed except the last of each quarter of the depth
    (global blocks 2, 5, 8, 11 of 12; 5, 11, 17, 23 of 24)."""
    if num_layers % 4:
        raise ValueError(f'ViTDet puts a global block at the end of each quarter of the depth; '
                         f'{num_layers} layers do not split in 4: set window_block_indexes')
    step = num_layers // 4
    return [i for i in range(num_layers) if (i + 1) % step]


class WindowedBEiTAttention(FastBEiTAttention):
    """:class:`FastBEiTAttention` over a patch grid without [CLS], inside windows.

    Instances are made by :class:`WindowedBEiTViT`, which sets:

    Attributes:
        grid_size (tuple[int, int]): The patch grid ``(H, W)`` of the input tokens.
        attn_window (tuple[int, int]): The attention window; equal to ``grid_size`` for a
            global block (no partition).
    """

    grid_size: Tuple[int, int]
    attn_window: Tuple[int, int]

    def _share_rel_pos_index(self) -> None:
        # the patch-to-patch index of the window (no [CLS] row or column)
        if self.relative_position_bias_table is not None:
            self.__dict__['relative_position_index'] = shared_relative_position_index(
                self.window_size, self.relative_position_bias_table.device, with_cls=False)

    def forward(self, x: torch.Tensor, rel_pos_bias: Optional[torch.Tensor] = None):
        """Attention over ``x`` (B, H*W, C), within windows of ``attn_window``."""
        if rel_pos_bias is not None:
            raise ValueError('WindowedBEiTViT takes per-layer relative position tables only '
                             '(use_shared_rel_pos_bias=False)')
        B, N, C = x.shape
        H, W = self.grid_size
        if N != H * W:
            raise ValueError(
                f'WindowedBEiTViT was built for a {H}x{W} patch grid (img_size / patch_size) and '
                f'got {N} tokens: pad every image to img_size (mmdet BatchFixedSizePad) or build '
                f'the backbone with img_size equal to the input size')
        bias = attention_bias(self, None)
        if tuple(self.attn_window) == (H, W):
            return self.sdpa_attention(x, bias)
        windows, padded = window_partition(x.view(B, H, W, C), self.attn_window)
        out = self.sdpa_attention(windows, bias)
        return window_unpartition(out, self.attn_window, padded, (H, W)).reshape(B, N, C)


def _num_layers(arch) -> int:
    if isinstance(arch, str):
        settings = BEiTViT.arch_zoo.get(arch.lower())
        if settings is None:
            raise ValueError(f'arch {arch!r} is not one of {sorted(BEiTViT.arch_zoo)}')
        return settings['num_layers']
    return arch['num_layers']


@MODELS.register_module()
class WindowedBEiTViT(OfficialInitMixin, BEiTViT):
    """BEiT ViT with ViTDet's window attention (module docstring) and the fast attention path
    of :class:`~beitv2_mm.backbones.beit_vit.FastBEiTViT` (SDPA, shared unsaved index).

    Same parameters as :class:`BEiTViT` (per-layer relative position tables sized to each
    block's window) minus the [CLS] token, so a pretrain checkpoint loads through the usual
    checkpoint flow, which crops or resizes each table to its block's window.

    Args:
        window_size (int | tuple[int, int]): Attention window in patches. Defaults to 14 (the
            pretraining grid of a 224 px / 16 px ViT).
        window_block_indexes (Sequence[int], optional): Blocks that attend within windows; the
            others attend globally. Defaults to ViTDet's layout
            (:func:`vitdet_window_block_indexes`).
        attn_impl (str): Only ``'sdpa'``: mmpretrain's explicit arithmetic has no form without
            [CLS].
        compile (bool | dict): ``torch.compile`` each layer (see :func:`compile_layers`).
        official_init (bool): Without pretrained weights, initialise as the official BEiT
            fine-tuning model (:func:`~beitv2_mm.backbones.beit_vit.official_vit_init`).
            Defaults to True.
        **kwargs: Everything :class:`BEiTViT` takes, except ``with_cls_token=True`` and
            ``use_shared_rel_pos_bias=True`` (one bias for the whole grid).
    """

    def __init__(self, *args, window_size=14, window_block_indexes: Optional[Sequence[int]] = None,
                 attn_impl: str = 'sdpa', compile=False, official_init: bool = True, **kwargs):
        if kwargs.pop('with_cls_token', False):
            raise ValueError('WindowedBEiTViT has no [CLS] token (a window cannot hold it, as in '
                             'ViTDet): drop with_cls_token from the backbone config')
        if kwargs.get('use_shared_rel_pos_bias', False):
            raise ValueError('WindowedBEiTViT needs per-layer relative position tables (each '
                             'sized to its window): set use_shared_rel_pos_bias=False and '
                             'use_rel_pos_bias=True; the checkpoint flow copies a shared table '
                             'into every layer')
        if kwargs.get('out_type') == 'cls_token':
            raise ValueError("WindowedBEiTViT has no [CLS] token: out_type='cls_token' "
                             "is not available (use 'featmap')")
        if attn_impl != 'sdpa':
            raise ValueError(f"WindowedBEiTViT supports attn_impl='sdpa' only, got {attn_impl!r}")
        arch = args[0] if args else kwargs.get('arch', 'base')
        num_layers = _num_layers(arch)
        window = (window_size, ) * 2 if isinstance(window_size, int) else tuple(window_size)
        if window_block_indexes is None:
            window_block_indexes = vitdet_window_block_indexes(num_layers)
        windowed = sorted({int(i) for i in window_block_indexes})
        if windowed and not 0 <= windowed[0] <= windowed[-1] < num_layers:
            raise ValueError(f'window_block_indexes {list(window_block_indexes)} must lie in '
                             f'0..{num_layers - 1}')
        layer_cfgs = kwargs.pop('layer_cfgs', dict())
        if isinstance(layer_cfgs, dict):
            layer_cfgs = [layer_cfgs] * num_layers
        layer_cfgs = [dict(cfg, window_size=window) if i in windowed else dict(cfg)
                      for i, cfg in enumerate(layer_cfgs)]
        super().__init__(*args, with_cls_token=False, layer_cfgs=layer_cfgs, **kwargs)
        self.attn_impl = attn_impl
        self.window_size = window
        self.window_block_indexes = windowed
        grid = tuple(self.patch_resolution)
        use_fast_attention(self, attn_impl, attention_class=WindowedBEiTAttention)
        for i, layer in enumerate(self.layers):
            layer.attn.grid_size = grid
            layer.attn.attn_window = window if i in windowed else grid
        self.official_init = official_init
        use_matmul_patch_embed(self.patch_embed)
        compile_layers(self.layers, compile)
