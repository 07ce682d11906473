"""BEiT v2 MIM that computes the last student layer and the last aggregation layer only
for the rows the loss reads.

The BEiT v2 loss reads, per image, the masked patch tokens of the last student layer, the
[CLS] token of that layer (it enters the aggregation neck) and the masked patch tokens of
the last aggregation layer: 1 + 75 of 197 rows at 224 px. mmpretrain's ``BEiT`` and the
official code run both layers on all 197 rows and then select. Here those two layers compute
keys and values for every row (attention still sees the whole sequence) but queries,
attention output, projection and FFN only for the rows that are read. The result is the same
up to floating point rounding (``tests/tools/test_benchmark.py`` compares losses and
gradients with mmpretrain's step); the saving is about half of each of the two layers
(~5% of the FLOPs of a ViT-B/16 step with its tokenizer), on any device.

Everything else is :class:`beitv2_mm.algorithms.beit.BEiTMIM` (frozen tokenizer under
``inference_mode``, sync-free masked gather, the checks of the mask count and of the
tokenizer's grid); without ``num_masked_patches`` or without a neck (BEiT v1) it falls
back to its ``loss``.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from beitv2_mm.algorithms.beit import BEiTMIM
from beitv2_mm.backbones.beit_vit import attention_bias


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (B, M) of ``x`` (B, N, C) -> (B, M, C)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def attention_rows(attn: nn.Module, h: torch.Tensor, index: torch.Tensor,
                   rel_pos_bias: Optional[torch.Tensor]) -> torch.Tensor:
    """mmpretrain ``BEiTAttention`` output at rows ``index`` only (keys/values from all rows).

    Args:
        attn (nn.Module): A ``BEiTAttention`` (or this project's ``FastBEiTAttention``; its
            ``attn_impl`` picks SDPA or the explicit arithmetic).
        h (Tensor): The normalised layer input (B, N, C).
        index (Tensor): Query rows (B, M).
        rel_pos_bias (Tensor, optional): Shared relative position bias (heads, N, N).

    Returns:
        Tensor: (B, M, C).
    """
    B, N, C = h.shape
    M = index.shape[1]
    heads = attn.num_heads
    weight = attn.qkv.weight
    if attn.bias == 'qv_bias':
        q_bias, k_bias, v_bias = attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias
    elif attn.qkv.bias is not None:
        q_bias, k_bias, v_bias = attn.qkv.bias.chunk(3)
    else:
        q_bias = k_bias = v_bias = None
    q = F.linear(gather_rows(h, index), weight[:C], q_bias)
    kv_bias = None if v_bias is None else torch.cat((k_bias, v_bias))
    kv = F.linear(h, weight[C:], kv_bias)
    q = q.view(B, M, heads, -1).transpose(1, 2)
    k, v = kv.view(B, N, 2, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    bias = attention_bias(attn, rel_pos_bias)
    if bias is not None:
        bias = bias[:, index].transpose(0, 1)  # (B, heads, M, N)
    if getattr(attn, 'attn_impl', 'explicit') == 'sdpa':
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None if bias is None else bias.to(q.dtype),
            dropout_p=attn.attn_drop.p if attn.training else 0., scale=attn.scale)
    else:
        scores = (q * attn.scale) @ k.transpose(-2, -1)
        if bias is not None:
            scores = scores + bias
        out = attn.attn_drop(scores.softmax(dim=-1)) @ v
    out = out.transpose(1, 2).reshape(B, M, C)
    return attn.proj_drop(attn.proj(out))


def layer_rows(layer: nn.Module, x: torch.Tensor, index: torch.Tensor,
               rel_pos_bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``BEiTTransformerEncoderLayer(x)`` at rows ``index`` (B, M) only -> (B, M, C)."""
    attn_out = attention_rows(layer.attn, layer.ln1(x), index, rel_pos_bias)
    x = gather_rows(x, index)
    if layer.gamma_1 is None:
        x = x + layer.drop_path(attn_out)
        return x + layer.drop_path(layer.ffn(layer.ln2(x)))
    x = x + layer.drop_path(layer.gamma_1 * attn_out)
    return x + layer.drop_path(layer.gamma_2 * layer.ffn(layer.ln2(x)))


def student_forward_rows(backbone: nn.Module, images: torch.Tensor, mask: torch.Tensor,
                         last_rows: torch.Tensor) -> tuple:
    """``BEiTPretrainViT.forward(images, mask)`` with its last layer at ``last_rows`` only.

    Returns:
        tuple: the outputs at ``backbone.out_indices``; the last one has ``len(last_rows[0])``
        rows. Sets ``backbone.shared_rel_pos_bias`` as the stock forward does.
    """
    x, patch_resolution = backbone.patch_embed(images)
    B, L, _ = x.shape
    mask_token = backbone.mask_token.expand(B, L, -1)
    w = mask.flatten(1).unsqueeze(-1).type_as(mask_token)
    x = x * (1. - w) + mask_token * w
    x = torch.cat((backbone.cls_token.expand(B, -1, -1), x), dim=1)
    if backbone.pos_embed is not None:
        x = x + resize_pos_embed(backbone.pos_embed, backbone.patch_resolution,
                                 patch_resolution, mode=backbone.interpolate_mode,
                                 num_extra_tokens=backbone.num_extra_tokens)
    x = backbone.drop_after_pos(x)
    shared = backbone.rel_pos_bias().to(x.device) if backbone.rel_pos_bias is not None else None
    backbone.shared_rel_pos_bias = shared
    last = len(backbone.layers) - 1
    outs = []
    for i, layer in enumerate(backbone.layers):
        x = layer_rows(layer, x, last_rows, shared) if i == last else layer(x, rel_pos_bias=shared)
        if i == last and backbone.final_norm:
            x = backbone.norm1(x)
        if i in backbone.out_indices:
            outs.append(x)
    return tuple(outs)


@MODELS.register_module()
class SelectiveBEiTMIM(BEiTMIM):
    """:class:`BEiTMIM` (BEiT v2) whose two last layers compute only the rows the loss reads.

    Same arguments, modules, keys and losses (``loss_mim``, ``loss_agg``) as
    :class:`BEiTMIM`; needs ``num_masked_patches`` (exact mask count) and the
    patch-aggregation neck, and the student's ``out_indices`` = (early layer, last layer).
    """

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        backbone = self.backbone
        last = len(backbone.layers) - 1
        usable = (self.num_masked_patches and self.with_neck
                  and len(backbone.out_indices) == 2 and backbone.out_indices[1] == last
                  and backbone.out_indices[0] < last)
        if not usable:
            return super().loss(inputs, data_samples, **kwargs)
        mask, index = self.masked_positions(data_samples)
        target = self.masked_targets(inputs[1], mask, index)
        patch_rows = index + 1  # token rows: [CLS] first
        cls_row = torch.zeros_like(index[:, :1])
        early, last_rows = student_forward_rows(backbone, inputs[0], mask,
                                                torch.cat((cls_row, patch_rows), dim=1))
        shared = backbone.shared_rel_pos_bias
        layers = self.neck.patch_aggregation
        x = torch.cat((last_rows[:, :1], early[:, 1:]), dim=1)
        for layer in layers[:-1]:
            x = layer(x, rel_pos_bias=shared)
        agg_rows = layer_rows(layers[-1], x, patch_rows, shared)
        norm, lm_head, criterion = self.neck.norm, self.head.cls_head, self.head.loss_module
        feats = norm(last_rows[:, 1:]).flatten(0, 1)
        feats_agg = norm(agg_rows).flatten(0, 1)
        return dict(loss_mim=criterion(lm_head(feats), target),
                    loss_agg=criterion(lm_head(feats_agg), target))
