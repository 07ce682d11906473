"""VQ-KD checkpoint converters: official unilm beit2 and mmpretrain ``vqkd_encoder.pth``.

Both produce the state dict of this project's :class:`VQKDTokenizer` (raw keys:
``encoder.*``, ``encode_task_layer.*``, ``quantizer.*``, and for the official layout
``decoder.*``/``decode_task_layer.*``), which ``load_tokenizer_checkpoint`` and the
``checkpoint=`` argument of the tokenizer read directly.

Official layout (``beit2/modeling_vqkd.py``; releases such as
``vqkd_encoder_base_decoder_3x768x12_clip``): timm-style ViTs ``{encoder,decoder}.blocks.i.
{norm1,attn.qkv,attn.q_bias,attn.v_bias,attn.proj,norm2,mlp.fc1,mlp.fc2}``, patch embedding
``patch_embed.proj``, final norm ``fc_norm`` (mean-pooling ViT, ``norm`` is Identity),
quantizer ``quantize.embedding.{weight,initted,cluster_size,embed_avg}`` and
``quantize.cluster_size``; training checkpoints also hold the teacher (``teacher_model.*``)
and its ``scaling_layer.*``, which are dropped on purpose.
"""
from __future__ import annotations

import re
from typing import Dict, Tuple

import torch

from . import ConversionReport, register_converter

_VIT_BLOCK_RULES = (
    (r'blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
    (r'blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
    (r'blocks\.(\d+)\.gamma_1$', r'layers.\1.gamma_1'),
    (r'blocks\.(\d+)\.gamma_2$', r'layers.\1.gamma_2'),
    (r'patch_embed\.proj\.', r'patch_embed.projection.'),
    (r'fc_norm\.', r'ln1.'),
    (r'^norm\.', r'ln1.'),
    (r'^(cls_token|pos_embed)$', r'\1'),
)

_QUANTIZER_RULES = {
    'quantize.embedding.weight': 'quantizer.codebook',
    'quantize.embedding.initted': 'quantizer.initted',
    'quantize.cluster_size': 'quantizer.cluster_size',
}
# official EmbeddingEMA statistics the l2-normalised EMA never reads
_QUANTIZER_UNUSED = ('quantize.embedding.cluster_size', 'quantize.embedding.embed_avg')
_DROP_PREFIXES = ('teacher_model.', 'scaling_layer.', 'loss')


def _convert_vit_key(key: str):
    for pattern, repl in _VIT_BLOCK_RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return None


def _convert_quantizer(key, value, out, report) -> bool:
    if key in _QUANTIZER_RULES:
        new_key = _QUANTIZER_RULES[key]
        if new_key == 'quantizer.initted':
            value = value.reshape(1).float()
        out[new_key] = value
        report.renamed += 1
        return True
    if key in _QUANTIZER_UNUSED:
        report.dropped.append(key)
        return True
    return False


@register_converter('vqkd_official',
                    'microsoft/unilm beit2 VQ-KD (e.g. vqkd_encoder_base_decoder_3x768x12_clip'
                    ') -> VQKDTokenizer')
def convert_official_vqkd(state_dict: Dict[str, torch.Tensor]
                          ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Official unilm beit2 VQ-KD state dict -> :class:`VQKDTokenizer` state dict."""
    report = ConversionReport()
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(_DROP_PREFIXES):
            report.dropped.append(key)
            continue
        if _convert_quantizer(key, value, out, report):
            continue
        if key.startswith(('encode_task_layer.', 'decode_task_layer.')):
            out[key] = value
            report.renamed += 1
            continue
        part, _, rest = key.partition('.')
        if part in ('encoder', 'decoder'):
            if rest.startswith('head.'):
                report.dropped.append(key)
                continue
            new_rest = _convert_vit_key(rest)
            if new_rest is not None:
                out[f'{part}.{new_rest}'] = value
                report.renamed += 1
                continue
        report.unmatched.append(key)
    dropped_teacher = sum(k.startswith('teacher_model.') for k in report.dropped)
    if dropped_teacher:
        report.notes.append(f'{dropped_teacher} teacher_model.* keys dropped: the teacher is '
                            f'configured separately (model.teacher)')
    if any(k in report.dropped for k in _QUANTIZER_UNUSED):
        report.notes.append('quantize.embedding.{cluster_size,embed_avg} dropped: the '
                            'l2-normalised EMA update does not use them')
    return out, report


@register_converter('vqkd_mmpretrain',
                    "mmpretrain's VQKD target generator (vqkd_encoder.pth) -> VQKDTokenizer "
                    '(encoder only: build it with decoder=None)')
def convert_mmpretrain_vqkd(state_dict: Dict[str, torch.Tensor]
                            ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """mmpretrain ``VQKD`` state dict -> :class:`VQKDTokenizer` state dict (encoder only).

    mmpretrain's encoder is a ``BEiTViT`` with the same key names as ours; only the quantizer
    keys differ. From a whole MIM checkpoint (``target_generator.*`` beside the student's
    ``backbone.*``, ``neck.*``, ``head.*``) only the tokenizer's keys are taken, unprefixed.
    """
    report = ConversionReport()
    out: Dict[str, torch.Tensor] = {}
    prefix = 'target_generator.'
    if any(k.startswith(prefix) for k in state_dict):
        others = [k for k in state_dict if not k.startswith(prefix)]
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        report.notes.append("took the 'target_generator.*' keys, prefix stripped")
        if others:
            report.dropped.extend(others)
            report.notes.append(f'{len(others)} keys of the MIM model around the tokenizer '
                                '(student, neck, head) dropped')
    for key, value in state_dict.items():
        if _convert_quantizer(key, value, out, report):
            continue
        if key.startswith(('encoder.', 'encode_task_layer.', 'decoder.', 'decode_task_layer.')):
            out[key] = value
            report.renamed += 1
            continue
        report.unmatched.append(key)
    if not any(k.startswith('decoder.') for k in out):
        report.notes.append('no decoder in the source: load into a VQKDTokenizer built with '
                            'decoder=None (MIM targets only)')
    return out, report
