"""Official BEiT / BEiT v2 (microsoft/unilm) and timm ``beit*``/``beitv2_*`` weights -> mmpretrain.

The output uses the key layout of this suite's MIM checkpoints (mmpretrain ``BEiT`` style):
``backbone.*`` for ``BEiTPretrainViT``/``BEiTViT``, ``neck.*`` for the BEiT v2 patch
aggregation (``BEiTV2Neck``/``BEiTV2AggregationNeck``), ``head.*`` for the lm head
(``BEiTV2Head.cls_head``) or a fine-tuned classifier (``LinearClsHead.fc``). Downstream configs
load ``backbone.*`` through ``init_cfg=dict(type='BEiTPretrained', checkpoint=...)``
(:mod:`beitv2_mm.downstream.checkpoint`).

Key map (official names; timm uses the same ones):

=====================================  ==============================================
``cls_token``, ``mask_token``,          ``backbone.`` + same name
``pos_embed``
``patch_embed.proj.*``                  ``backbone.patch_embed.projection.*``
``rel_pos_bias.*`` (shared)             ``backbone.rel_pos_bias.*``
``blocks.i.norm1/norm2.*``              ``backbone.layers.i.ln1/ln2.*``
``blocks.i.attn.*``, ``gamma_1/2``      ``backbone.layers.i.`` + same name
``blocks.i.mlp.fc1.*`` / ``fc2.*``      ``backbone.layers.i.ffn.layers.0.0.*`` / ``ffn.layers.1.*``
``cls_pt_layers.j.*`` (BEiT v2)         ``neck.patch_aggregation.j.*`` (same block map)
``norm.*``                              ``neck.norm.*`` when ``cls_pt_layers`` exist (the
                                        official norm is shared by both branches), else
                                        ``backbone.ln1.*`` (``final_norm=True``)
``fc_norm.*`` (fine-tuned)              ``backbone.ln2.*`` (``out_type='avg_featmap'``)
``lm_head.*``                           ``head.cls_head.*``
``head.*`` (fine-tuned classifier)      ``head.fc.*``
=====================================  ==============================================

``attn.k_bias`` (timm's constant zero buffer) is dropped: mmpretrain builds it on the fly.
``relative_position_index`` buffers missing from the source (some timm exports) are rebuilt
from the table size, since mmpretrain stores them.
"""
from __future__ import annotations

import math
import re
from typing import Dict, List, Tuple

import torch

from ..backbones.beit_vit import relative_position_index
from . import ConversionReport, register_converter

_BLOCK_SUBKEYS = [
    (r'norm1\.', 'ln1.'),
    (r'norm2\.', 'ln2.'),
    (r'mlp\.fc1\.', 'ffn.layers.0.0.'),
    (r'mlp\.fc2\.', 'ffn.layers.1.'),
    (r'attn\.', 'attn.'),
    (r'gamma_1$', 'gamma_1'),
    (r'gamma_2$', 'gamma_2'),
]


def _map_block(rest: str) -> str:
    for pattern, repl in _BLOCK_SUBKEYS:
        if re.match(pattern, rest):
            return re.sub('^' + pattern, repl, rest)
    return ''


def convert_beit_state(state: Dict[str, torch.Tensor]
                       ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Official unilm / timm BEiT state dict -> mmpretrain ``backbone./neck./head.`` keys."""
    report = ConversionReport()
    has_aggregation = any(k.startswith('cls_pt_layers.') for k in state)
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = ''
        if key.endswith('attn.k_bias'):
            report.dropped.append(key)
            continue
        if key in ('cls_token', 'mask_token', 'pos_embed'):
            new = 'backbone.' + key
        elif key.startswith('patch_embed.proj.'):
            new = 'backbone.patch_embed.projection.' + key[len('patch_embed.proj.'):]
        elif key.startswith('rel_pos_bias.'):
            new = 'backbone.' + key
        elif m := re.match(r'blocks\.(\d+)\.(.*)$', key):
            sub = _map_block(m.group(2))
            new = f'backbone.layers.{m.group(1)}.{sub}' if sub else ''
        elif m := re.match(r'cls_pt_layers\.(\d+)\.(.*)$', key):
            sub = _map_block(m.group(2))
            new = f'neck.patch_aggregation.{m.group(1)}.{sub}' if sub else ''
        elif key.startswith('norm.'):
            new = ('neck.norm.' if has_aggregation else 'backbone.ln1.') + key[len('norm.'):]
        elif key.startswith('fc_norm.'):
            new = 'backbone.ln2.' + key[len('fc_norm.'):]
        elif key.startswith('lm_head.'):
            new = 'head.cls_head.' + key[len('lm_head.'):]
        elif key.startswith('head.'):
            new = 'head.fc.' + key[len('head.'):]
        if not new:
            report.unmatched.append(key)
            continue
        out[new] = value
        report.renamed += 1

    # rebuild relative_position_index buffers that the source did not store
    rebuilt: Dict[int, List[str]] = {}  # window -> the rebuilt keys (one note per grid size)
    for key in list(out):
        if key.endswith('relative_position_bias_table'):
            index_key = key.replace('relative_position_bias_table', 'relative_position_index')
            if index_key not in out:
                window = int(round((math.sqrt(out[key].shape[0] - 3) + 1) / 2))
                out[index_key] = relative_position_index(window)
                rebuilt.setdefault(window, []).append(index_key)
    for window, keys in rebuilt.items():
        where = keys[0] if len(keys) == 1 else f'{len(keys)} keys, {keys[0]} ... {keys[-1]}'
        report.notes.append(f'rebuilt relative_position_index for a {window}x{window} grid '
                            f'({where}): the source does not store it')
    if has_aggregation:
        report.notes.append('BEiT v2 pretrain checkpoint: norm.* -> neck.norm.* (shared norm of '
                            'BEiTV2Neck); build the backbone with final_norm=False')
    if 'head.fc.weight' in out:
        report.notes.append('fine-tuned checkpoint: classifier -> head.fc.*, fc_norm -> '
                            'backbone.ln2.* (BEiTViT out_type="avg_featmap")')
    return out, report


@register_converter(
    'beit-official',
    'microsoft/unilm BEiT / BEiT v2 checkpoints (e.g. beitv2_base_patch16_224_pt1k.pth, '
    'pretrained or fine-tuned) -> mmpretrain BEiT layout (backbone./neck./head.)')
def convert_official_beit(state_dict):
    return convert_beit_state(state_dict)


@register_converter(
    'beit-timm',
    'timm beit_* / beitv2_* weights -> mmpretrain BEiTViT layout (backbone./head.)')
def convert_timm_beit(state_dict):
    return convert_beit_state(state_dict)
