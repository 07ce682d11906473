"""Pretrain checkpoint -> downstream BEiT ViT: the one checkpoint flow of every downstream config.

Every downstream config (mmpretrain, mmseg, mmdet) names its pretrain checkpoint at
``model.backbone.init_cfg.checkpoint`` with
``init_cfg=dict(type='BEiTPretrained', checkpoint=PATH)``.
:class:`BEiTPretrainedInit` is registered in mmengine's root ``WEIGHT_INITIALIZERS``, so all three
scopes find it. It calls :func:`load_beit_pretrained`, which

1. reads the checkpoint (mmengine checkpoint, ``{'state_dict'|'model'|'module': ...}`` or a bare
   state dict) and picks the backbone weights: keys under ``backbone.`` of an algorithm
   (this project's MIM runs, mmpretrain's ``BEiT``/``ImageClassifier``; tokenizer
   ``target_generator.*``, MIM ``neck.*``/``head.*`` and anything else are dropped and counted),
   or, with no ``backbone.`` key, the whole dict as backbone keys (the output of
   ``tools/convert_ckpt.py``);
2. maps ``BEiTPretrainViT`` to ``BEiTViT``: drops ``mask_token`` (and ``cls_token`` for a
   backbone without one, the windowed detector backbone), copies the shared relative
   position bias (``rel_pos_bias.relative_position_bias_table``) into every layer when the target
   has per-layer tables (the official fine-tune code does the same), drops the final norm ``ln1``
   when the target pools with ``fc_norm`` instead;
3. resizes relative position bias tables, per layer to that layer's window (e.g. 14x14 -> 32x32
   windows for ADE20K at 512 px, with mmpretrain's geometric-progression bicubic resize, working
   through the interp2d fix in :mod:`beitv2_mm.engine.compat`; a smaller window takes the
   table's centre) and absolute position embeddings (bicubic, extra tokens kept);
4. loads with ``strict=False`` and *reports* every missing and unexpected key in the log (and
   raises with ``strict=True``); the report is also returned. The one gap every fine-tune has,
   the new ``fc_norm`` (``ln2``) of a mean-pooling backbone, is a note at INFO level; a
   checkpoint that lacks weights of the trunk (patch embedding, [CLS], transformer layers)
   is an error unless ``allow_partial=True``: those layers would train from random weights
   under a pretrained label.

Official unilm checkpoints (``blocks.N.*`` keys) are refused with a message naming the converter
to run first.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

#: Algorithm attribute prefixes that never belong to a downstream backbone (why, per prefix).
DROPPED_PREFIXES = {
    'target_generator.': 'tokenizer (MIM target generator)',
    'tokenizer.': 'tokenizer',
    'teacher.': 'tokenizer-training teacher',
    'neck.': 'MIM neck / patch-aggregation head',
    'head.': 'MIM or classification head',
    'data_preprocessor.': 'data preprocessor buffers',
}

#: Temporary prefix for BEiT v2's final norm found at ``neck.norm.*``.
FINAL_NORM_FROM_NECK = '__neck_norm__.'

#: Backbone keys of BEiTPretrainViT that BEiTViT never has.
PRETRAIN_ONLY_KEYS = ('mask_token', )

#: The pretrained trunk: a checkpoint that lacks any of these is refused (``allow_partial``).
TRUNK_PREFIXES = ('patch_embed.', 'cls_token', 'layers.')


@dataclass
class LoadReport:
    """What :func:`load_beit_pretrained` did.

    Attributes:
        source_layout: ``'algorithm'`` (``backbone.*`` keys) or ``'backbone'`` (bare keys).
        loaded: keys loaded into the module.
        dropped: checkpoint keys left out on purpose, mapped to the reason.
        missing: module keys the checkpoint did not provide (left at their initial values).
        unexpected: checkpoint keys the module has no place for (not loaded).
        resized: keys whose tensors were resized, with ``old -> new`` shapes.
        notes: free-form remarks (e.g. shared relative position bias expanded).
    """
    source_layout: str = ''
    loaded: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    resized: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def format(self) -> str:
        """A multi-line human-readable summary for the log."""
        lines = [f'layout: {self.source_layout}; loaded {len(self.loaded)} tensors']
        by_reason: Dict[str, List[str]] = {}
        for key, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            shown = ', '.join(keys[:6]) + (' ...' if len(keys) > 6 else '')
            lines.append(f'dropped {len(keys)} key(s) on purpose ({reason}): {shown}')
        for key, change in self.resized.items():
            lines.append(f'resized {key}: {change}')
        lines += [f'note: {n}' for n in self.notes]
        lines.append(f'missing keys ({len(self.missing)}): {", ".join(self.missing) or "none"}')
        lines.append(f'unexpected keys ({len(self.unexpected)}): '
                     f'{", ".join(self.unexpected) or "none"}')
        return '\n'.join(lines)


def _logger():
    from mmengine.logging import MMLogger
    return MMLogger.get_current_instance()


def require_pretrain_file(path: str) -> None:
    """Raise a FileNotFoundError naming the config key when the local file ``path`` (a pretrain
    checkpoint) does not exist; URIs are left to mmengine."""
    import os

    if '://' not in str(path) and not os.path.isfile(str(path)):
        raise FileNotFoundError(
            f'pretrain checkpoint not found: {path!r}. Set it with '
            f'--cfg-options model.backbone.init_cfg.checkpoint=PATH (or '
            f'model.backbone.init_cfg.checkpoint=None for a random-init baseline).')


def no_pretrain_message(what: str = 'this config') -> str:
    """Why a config whose ``init_cfg`` says ``required=True`` cannot start without weights."""
    return (f'{what} evaluates a pretrained backbone, and model.backbone.init_cfg.checkpoint '
            f'is not set: pass --cfg-options model.backbone.init_cfg.checkpoint=PATH (a MIM '
            f'checkpoint of this suite or mmpretrain, or an official release converted with '
            f'tools/convert_ckpt.py), or model.backbone.init_cfg.required=False to train from '
            f'random weights on purpose (the random-init baseline).')


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint file (local path or any mmengine-supported URI) on CPU.

    Raises:
        FileNotFoundError: naming the path and the config key that sets it.
        CheckpointLoadError: the file is damaged (truncated, not a checkpoint).
    """
    from mmengine.runner.checkpoint import _load_checkpoint

    from beitv2_mm.tokenizers.checkpoint import UNREADABLE_ERRORS, unreadable_checkpoint

    require_pretrain_file(path)
    try:
        return _load_checkpoint(str(path), map_location='cpu')
    except FileNotFoundError:
        raise
    except UNREADABLE_ERRORS as err:
        if '://' in str(path):  # a remote backend's own error
            raise
        raise unreadable_checkpoint(path, err) from err


def read_checkpoint_meta(path: str) -> dict:
    """The ``meta`` dict of a checkpoint (``{}`` when it has none), without reading its tensors.

    A local file in torch's zip format is opened memory-mapped, so only the pickled objects are
    read: 0.08-0.10 s for a 1.1 GiB file with optimizer state, against 1.5-3.1 s for a full
    load (this project's CPU machine, 2026-11-24; one-off measurement). Legacy (non-zip) files
    and URIs are read in full.

    Raises:
        FileNotFoundError: naming the path and the config key that sets it.
    """
    require_pretrain_file(path)
    ckpt = None
    if '://' not in str(path):
        from beitv2_mm.engine.compat import trusted_torch_load
        try:
            ckpt = trusted_torch_load(str(path), map_location='cpu', mmap=True)
        except (RuntimeError, OSError):  # not in the zip format (or damaged: the full read
            ckpt = None                       # below names the file)
    if ckpt is None:
        ckpt = read_checkpoint(path)
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    return meta if isinstance(meta, dict) else {}


def extract_backbone_state_dict(checkpoint, report: Optional[LoadReport] = None
                                ) -> Dict[str, torch.Tensor]:
    """The backbone tensors of a pretrain checkpoint, with the ``backbone.`` prefix removed.

    Args:
        checkpoint (dict): A loaded checkpoint or state dict.
        report (LoadReport, optional): Filled with the layout and the dropped keys.

    Returns:
        dict: backbone key -> tensor.
    """
    from beitv2_mm.convert import extract_state_dict

    report = report if report is not None else LoadReport()
    state_dict = extract_state_dict(checkpoint)
    if any(k.startswith('module.') for k in state_dict):  # saved from a DDP-wrapped model
        state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                      for k, v in state_dict.items()}
    if any(k.startswith('backbone.') for k in state_dict):
        report.source_layout = 'algorithm'
        backbone = {}
        for key, value in state_dict.items():
            if key.startswith('backbone.'):
                backbone[key[len('backbone.'):]] = value
                continue
            if key in ('neck.norm.weight', 'neck.norm.bias'):
                # BEiT v2's final LayerNorm lives in the patch-aggregation neck (shared by the
                # [CLS] and patch branches); kept aside for targets with a final norm (probe).
                backbone[FINAL_NORM_FROM_NECK + key.rsplit('.', 1)[1]] = value
                continue
            reason = next((why for prefix, why in DROPPED_PREFIXES.items()
                           if key.startswith(prefix)), 'not part of the backbone')
            report.dropped[key] = reason
        return backbone
    if state_dict and all(k.startswith(('tokenizer.', 'teacher.', 'quantizer.', 'quantize.',
                                         'encode_task_layer.', 'decode_task_layer.',
                                         'encoder.', 'decoder.'))
                          for k in state_dict):
        raise ValueError(
            'this is a tokenizer checkpoint (a VQ-KD / PeCo run: tokenizer, codebook and '
            'encoder/decoder keys, no backbone.*), not a pretrained backbone: it belongs in a MIM '
            'config\'s model.target_generator.checkpoint; a downstream run starts from the MIM '
            'run\'s checkpoint (model.backbone.init_cfg.checkpoint).')
    if any(k.startswith(('blocks.', 'encoder.blocks.')) for k in state_dict):
        raise ValueError(
            'this checkpoint is in the official unilm/timm layout (keys "blocks.N.*"); convert it '
            'first: python tools/convert_ckpt.py --list, then '
            'python tools/convert_ckpt.py FORMAT SRC DST, and point '
            'model.backbone.init_cfg.checkpoint at DST.')
    report.source_layout = 'backbone'
    return dict(state_dict)


def _num_patches_side(num_tokens: int, num_extra: int, what: str) -> int:
    side = int(round((num_tokens - num_extra) ** 0.5))
    if side * side != num_tokens - num_extra:
        raise ValueError(f'{what}: {num_tokens} tokens minus {num_extra} extra is not a square '
                         f'grid; only square patch grids can be resized')
    return side


def resize_rel_pos_table(table: torch.Tensor, dst_len: int) -> torch.Tensor:
    """Resize a BEiT relative position bias table (``(2W-1)^2 + 3`` rows) to ``dst_len`` rows.

    The 3 extra rows (cls->token, token->cls, cls->cls) are kept. A larger window goes through
    mmpretrain's ``resize_relative_position_bias_table`` (the official geometric-progression
    bicubic resize); a smaller one (a ViTDet window smaller than the pretraining grid) takes the
    table's centre, the offsets it already holds: the geometric search of that resize only
    covers growth (ratio 1.01-1.5) and would stretch the table instead.
    """
    from mmpretrain.models.utils import resize_relative_position_bias_table

    src_len, num_heads = table.shape
    src = _num_patches_side(src_len, 3, 'relative_position_bias_table (checkpoint)')
    dst = _num_patches_side(dst_len, 3, 'relative_position_bias_table (model)')
    extra = table[-3:]
    if dst < src:
        start = (src - dst) // 2  # both sides odd (2W - 1): the centre is exact
        grid = table[:-3].view(src, src, num_heads)[start:start + dst, start:start + dst]
        return torch.cat([grid.reshape(dst * dst, num_heads), extra], dim=0)
    grid = resize_relative_position_bias_table(src, dst, table[:-3].float(), num_heads)
    return torch.cat([grid.to(table.dtype), extra], dim=0)


def adapt_backbone_state_dict(state_dict: Dict[str, torch.Tensor], module: nn.Module,
                              report: LoadReport) -> Dict[str, torch.Tensor]:
    """Map BEiTPretrainViT keys onto ``module`` (a BEiTViT-like backbone) and resize tables.

    Args:
        state_dict (dict): Backbone keys (no ``backbone.`` prefix).
        module (nn.Module): The backbone to load into.
        report (LoadReport): Filled with what was dropped, resized and noted.

    Returns:
        dict: The state dict ready for ``module.load_state_dict``.
    """
    from mmpretrain.models.utils import resize_pos_embed

    sd = dict(state_dict)
    target = module.state_dict()

    for key in PRETRAIN_ONLY_KEYS:
        if key in sd and key not in target:
            sd.pop(key)
            report.dropped[key] = 'MIM mask token (pretraining only)'
    if 'cls_token' in sd and 'cls_token' not in target:
        sd.pop('cls_token')
        report.dropped['cls_token'] = '[CLS] token: the backbone has none (ViTDet windows)'

    shared_key = 'rel_pos_bias.relative_position_bias_table'
    per_layer = [k for k in target if k.startswith('layers.')
                 and k.endswith('attn.relative_position_bias_table')]
    if shared_key in sd and shared_key not in target:
        shared = sd.pop(shared_key)
        sd.pop('rel_pos_bias.relative_position_index', None)
        if per_layer:
            for key in per_layer:
                sd[key] = shared.clone()
            report.notes.append(f'shared relative position bias copied into {len(per_layer)} '
                                f'layers')
        else:
            report.dropped[shared_key] = 'shared relative position bias: model uses none'

    # BEiT v2 keeps its final norm in the neck (``neck.norm``): it becomes ``ln1`` when the target
    # applies a final norm (linear probe on [CLS]) and no backbone ``ln1`` was saved.
    for name in ('weight', 'bias'):
        value = sd.pop(FINAL_NORM_FROM_NECK + name, None)
        if value is None:
            continue
        if f'ln1.{name}' in target and f'ln1.{name}' not in sd:
            sd[f'ln1.{name}'] = value
            if name == 'weight':
                report.notes.append('final norm ln1 <- neck.norm (BEiT v2 shared final norm)')
        else:
            report.dropped[f'neck.norm.{name}'] = 'MIM neck / patch-aggregation head'
    # The final norm of the pretrain ViT is not used when the model pools patches + fc_norm.
    for key in ('ln1.weight', 'ln1.bias'):
        if key in sd and key not in target:
            sd.pop(key)
            report.dropped[key] = 'pretrain final norm (model uses mean pooling + fc_norm)'

    for key in list(sd):
        if key not in target:
            continue
        src, dst = sd[key], target[key]
        if key.endswith('relative_position_index'):
            if src.shape != dst.shape:  # regenerated by the module for the new window
                sd.pop(key)
                report.dropped[key] = 'relative position index of another window size'
            continue
        if key.endswith('relative_position_bias_table') and src.shape != dst.shape:
            if src.shape[1] != dst.shape[1]:
                raise ValueError(f'{key}: checkpoint has {src.shape[1]} heads, model has '
                                 f'{dst.shape[1]}; the architectures differ')
            sd[key] = resize_rel_pos_table(src, dst.shape[0])
            report.resized[key] = f'{tuple(src.shape)} -> {tuple(sd[key].shape)}'
        elif key == 'pos_embed' and src.shape != dst.shape:
            extra = getattr(module, 'num_extra_tokens', 1)  # the model's: 0 without [CLS]
            # The checkpoint's extra tokens ([CLS] first) are what lies beyond its square grid
            # of patches: the model keeps as many of the leading ones as it has (none without
            # [CLS], as ViTDet's windowed backbone).
            src_side = math.isqrt(src.shape[1])
            src_extra = src.shape[1] - src_side ** 2
            if src_extra < extra:
                raise ValueError(f'pos_embed: the checkpoint has {src_extra} extra token(s) '
                                 f'before its patch grid, the model {extra}: a [CLS] position '
                                 f'cannot be made up')
            dst_side = _num_patches_side(dst.shape[1], extra, 'pos_embed (model)')
            kept = torch.cat([src[:, :extra], src[:, src_extra:]], dim=1)
            sd[key] = resize_pos_embed(kept, (src_side, src_side),
                                       (dst_side, dst_side), mode='bicubic',
                                       num_extra_tokens=extra)
            report.resized[key] = f'{tuple(src.shape)} -> {tuple(sd[key].shape)}'
    return sd


def load_beit_pretrained(module: nn.Module, checkpoint, strict: bool = False,
                         logger=None, allow_partial: bool = False) -> LoadReport:
    """Initialise a BEiT ViT backbone from a pretrain checkpoint; see the module docstring.

    Args:
        module (nn.Module): The backbone (``mmpretrain.BEiTViT`` or a subclass).
        checkpoint (str | dict): Path/URI of the checkpoint, or an already loaded one.
        strict (bool): Raise when keys are missing or unexpected (after the intended drops).
        logger: Where to report; defaults to mmengine's current logger.
        allow_partial (bool): Accept a checkpoint that lacks trunk weights (patch embedding,
            [CLS], transformer layers), which then keep their random initialisation. Defaults
            to False (a ValueError naming them).

    Returns:
        LoadReport: what was loaded, dropped, resized, missing and unexpected.
    """
    logger = logger or _logger()
    source = checkpoint if isinstance(checkpoint, str) else '<in-memory checkpoint>'
    if isinstance(checkpoint, str):
        checkpoint = read_checkpoint(checkpoint)
    report = LoadReport()
    sd = extract_backbone_state_dict(checkpoint, report)
    sd = adapt_backbone_state_dict(sd, module, report)

    target_keys = set(module.state_dict())
    # Shapes that still differ cannot load: report per key instead of a torch size-mismatch dump.
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(module.state_dict()[k].shape)}'
                  for k, v in sd.items() if k in target_keys
                  and v.shape != module.state_dict()[k].shape]
    if mismatched:
        raise ValueError(f'pretrain checkpoint {source} does not fit the backbone '
                         f'{type(module).__name__} (architecture differs?):\n  '
                         + '\n  '.join(mismatched))
    result = module.load_state_dict(sd, strict=False)
    # relative_position_index buffers are a pure function of the window size: the model's own
    # (built for its input size) are the right ones, not a missing weight.
    computed = [k for k in result.missing_keys if k.endswith('relative_position_index')]
    if computed:
        report.notes.append(f'{len(computed)} relative_position_index buffer(s) computed by the '
                            f'model for its window size')
    missing = sorted(set(result.missing_keys) - set(computed))
    fresh_norm = [k for k in missing if k.startswith('ln2.')
                  and getattr(module, 'out_type', None) == 'avg_featmap']
    if fresh_norm:  # the official fine-tuning's new fc_norm: no pretrain checkpoint has it
        report.notes.append('ln2 (the fc_norm of the mean-pooled features) starts fresh, as in '
                            'the official fine-tuning')
    report.missing = [k for k in missing if k not in fresh_norm]
    report.unexpected = sorted(result.unexpected_keys)
    report.loaded = sorted(k for k in sd if k in target_keys)
    message = f'BEiTPretrained: {type(module).__name__} <- {source}\n{report.format()}'
    level = logging.WARNING if (report.missing or report.unexpected) else logging.INFO
    logger.log(level, message)
    if strict and (report.missing or report.unexpected):
        raise RuntimeError(f'strict load of {source} failed:\n{report.format()}')
    if not report.loaded:
        raise ValueError(f'no tensor of {source} fits {type(module).__name__}: wrong checkpoint '
                         f'or wrong layout?\n{report.format()}')
    trunk = [k for k in report.missing if k.startswith(TRUNK_PREFIXES)]
    if trunk and not allow_partial:
        layers = sorted({int(k.split('.')[1]) for k in trunk if k.startswith('layers.')})
        where = f'layers {layers}' if layers else 'the trunk'
        raise ValueError(
            f'pretrain checkpoint {source} lacks {len(trunk)} weights of the backbone trunk '
            f'({where}: {", ".join(trunk[:6])}{", ..." if len(trunk) > 6 else ""}); they would '
            f'train from random weights under a pretrained label. Use the complete checkpoint, '
            f'or set model.backbone.init_cfg.allow_partial=True to start them at random on '
            f'purpose.\n{report.format()}')
    return report


def _register_initializer():
    from mmengine.model.weight_init import update_init_info
    from mmengine.registry import WEIGHT_INITIALIZERS

    class BEiTPretrainedInit:
        """Weight initializer ``dict(type='BEiTPretrained', checkpoint=PATH, strict=False)``.

        mmengine runs non-``Pretrained`` initializers *before* the children's own
        ``init_weights`` (which would re-draw the loaded layers), so this initializer first
        initialises the children itself, then loads; mmengine then skips them. For a backbone
        with an absolute ``pos_embed`` it also marks ``module.init_cfg['type']`` as
        ``'Pretrained'`` after loading, because ``BEiTViT.init_weights`` re-draws ``pos_embed``
        unless its init_cfg says so.

        Args:
            checkpoint (str): Pretrain checkpoint path; ``None`` or ``''`` keeps random init.
            strict (bool): Raise on missing/unexpected keys. Defaults to False (reported only).
            allow_partial (bool): Accept a checkpoint without some trunk weights (see
                :func:`load_beit_pretrained`). Defaults to False.
            required (bool): Fail without ``checkpoint`` instead of training from random
                weights (the full downstream configs set it: a run that forgot the key would
                spend its whole schedule on a random-init baseline). Defaults to False.
        """

        def __init__(self, checkpoint: Optional[str] = None, strict: bool = False,
                     allow_partial: bool = False, required: bool = False, **kwargs):
            if kwargs:
                raise TypeError(f'BEiTPretrained got unknown settings {sorted(kwargs)}; '
                                f'known: checkpoint, strict, allow_partial, required')
            self.checkpoint = checkpoint
            self.strict = strict
            self.allow_partial = allow_partial
            self.required = required
            self.report: Optional[LoadReport] = None

        def __call__(self, module: nn.Module) -> None:
            if not self.checkpoint:
                if self.required:
                    raise ValueError(
                        no_pretrain_message(f'BEiTPretrained ({type(module).__name__})'))
                _logger().warning(f'BEiTPretrained: no checkpoint given, {type(module).__name__} '
                                  f'starts from random weights')
                return
            for child in module.children():
                if hasattr(child, 'init_weights') and not getattr(child, 'is_init', False):
                    child.init_weights()
            self.report = load_beit_pretrained(module, self.checkpoint, strict=self.strict,
                                               allow_partial=self.allow_partial)
            if getattr(module, 'pos_embed', None) is not None and 'pos_embed' in self.report.loaded:
                module.init_cfg = dict(module.init_cfg, type='Pretrained')
            if hasattr(module, '_params_init_info'):
                update_init_info(module, init_info=f'BEiTPretrained: {self.checkpoint}')

    if 'BEiTPretrained' not in WEIGHT_INITIALIZERS.module_dict:
        WEIGHT_INITIALIZERS.register_module(name='BEiTPretrained', module=BEiTPretrainedInit)
    return WEIGHT_INITIALIZERS.get('BEiTPretrained')


BEiTPretrainedInit = _register_initializer()


def _declared_method(meta: dict) -> Optional[Tuple[str, str]]:
    """``(method, meta key)`` a checkpoint's meta states: ``pretrain_method`` / ``method`` (set
    by a run or ``tools/convert_ckpt.py --method``), else ``converted_from`` (the format)."""
    for key in ('pretrain_method', 'method', 'converted_from'):
        if meta.get(key):
            return str(meta[key]), key
    return None


#: display names of tokenizer classes, for leaderboard rows the suite did not run
TOKENIZER_NAMES = {'VQKDTokenizer': 'VQ-KD', 'VQKD': 'VQ-KD', 'PeCoVQVAE': 'VQ-VAE (PeCoVQVAE)',
                   'DALLETokenizer': 'DALL-E dVAE', 'DALL-E': 'DALL-E dVAE'}
#: what :func:`pretrain_details` may report (results.json ``pretrain``; the leaderboard's columns)
DETAIL_KEYS = ('tokenizer', 'backbone', 'epochs', 'iters', 'config')
#: config key of the codebook size, per tokenizer type (DALL-E's is fixed: 8192)
CODEBOOK_KEYS = {'VQKDTokenizer': 'num_codes', 'VQKD': 'num_embed', 'PeCoVQVAE': 'num_embed'}


def tokenizer_codes(cfg, options: Optional[dict] = None) -> Optional[int]:
    """The codebook size of a MIM config's tokenizer (``model.target_generator``), with
    ``--cfg-options`` ``options`` applied; None where the config does not say.

    The main ablation axis of VQ-KD (BEiT v2's codebook-size table): leaderboard rows name it,
    so runs that differ only there are not one row.
    """
    from beitv2_mm.engine.launch import cfg_get

    key = CODEBOOK_KEYS.get(str(cfg_get(cfg, 'model.target_generator.type')))
    if key is None:
        return None
    dotted = f'model.target_generator.{key}'
    options = options or {}
    value = options.get(dotted, options.get('+' + dotted, cfg_get(cfg, dotted)))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def with_codes(name: str, codes: Optional[int]) -> str:
    """``'VQ-KD, 1024 codes'``: a tokenizer's display name with its codebook size."""
    return f'{name}, {codes} codes' if codes else name


def backbone_name(cfg) -> Optional[str]:
    """``ViT-B/16`` for a named arch, ``ViT 64d x4L /8`` for a custom one (``cfg``: a config
    with ``model.backbone``)."""
    from beitv2_mm.engine.launch import cfg_get

    if cfg is None:
        return None
    backbone = cfg_get(cfg, 'model.backbone') or {}
    if not isinstance(backbone, dict):
        return None
    arch, patch = backbone.get('arch'), backbone.get('patch_size', 16)
    if isinstance(arch, dict):
        return f'ViT {arch.get("embed_dims")}d x{arch.get("num_layers")}L /{patch}'
    if isinstance(arch, str) and arch:
        return f'ViT-{arch[0].upper()}/{patch}'
    return str(backbone.get('type', 'ViT'))


def _tokenizer_weights(cfg) -> Optional[str]:
    """The weights file a MIM config's tokenizer loads: ``checkpoint`` (this project's
    tokenizers) or ``init_cfg.checkpoint`` (mmpretrain's ``VQKD`` / ``DALL-E``); None if none."""
    from beitv2_mm.engine.launch import cfg_get
    init_cfg = cfg_get(cfg, 'model.target_generator.init_cfg')
    from_init = init_cfg.get('checkpoint') if isinstance(init_cfg, dict) else None
    return cfg_get(cfg, 'model.target_generator.checkpoint') or from_init or None


def pretrain_details(meta: Optional[dict]) -> dict:
    """What a pretrain checkpoint's own meta says of its run: tokenizer, backbone, how long it
    trained (``epochs`` for an epoch-based run, else ``iters``) and its config file's name;
    only what it says.

    From the saved config (``meta['cfg']``), the counters mmengine saves (``meta['epoch']``,
    ``meta['iter']``) and its run name (``meta['experiment_name']``, the config file's stem and
    a timestamp): the leaderboard's tokenizer, backbone, epoch and config columns for runs the
    suite did not make (its own manifests say more, e.g. the tokenizer's size, and win).
    """
    meta = meta if isinstance(meta, dict) else {}
    cfg_text = meta.get('cfg')
    if not isinstance(cfg_text, str):
        return {}
    try:
        from mmengine.config import Config

        from beitv2_mm.engine.launch import cfg_get
        cfg = Config.fromstring(cfg_text, '.py')
    except Exception:  # noqa: BLE001 - an unparsable config says nothing
        return {}
    details = {}
    tokenizer = cfg_get(cfg, 'model.target_generator.type')
    if isinstance(tokenizer, str):
        details['tokenizer'] = with_codes(TOKENIZER_NAMES.get(tokenizer, tokenizer),
                                          tokenizer_codes(cfg))
        if tokenizer in TOKENIZER_NAMES and not _tokenizer_weights(cfg):
            # a pipeline check (the MIM run warned): its targets came from random weights
            details['tokenizer'] += ' (untrained: random weights)'
    name = backbone_name(cfg)
    if name:
        details['backbone'] = name
    # mmengine names a run '<config file stem>_<YYYYmmdd_HHMMSS>' and saves that name
    experiment = meta.get('experiment_name')
    if isinstance(experiment, str):
        stem = re.sub(r'_\d{8}_\d{6}$', '', experiment)
        if stem and stem != experiment:
            details['config'] = f'{stem}.py'
    loop = str(cfg_get(cfg, 'train_cfg.type') or '')
    if 'Epoch' in loop and isinstance(meta.get('epoch'), int):
        details['epochs'] = meta['epoch']
    elif isinstance(meta.get('iter'), int):
        details['iters'] = meta['iter']
    return details


def read_pretrain_info(path: Optional[str]) -> dict:
    """Method and provenance of a pretrain checkpoint, for the results file.

    Looks in the checkpoint's ``meta``: ``pretrain_method``/``method`` (written by this
    project's MIM runs if set), ``converted_from`` (``tools/convert_ckpt.py``), else the
    algorithm and target generator types in the saved config text.

    Returns:
        dict: ``{'method': str | None, 'source': str}`` and the keys of
        :func:`pretrain_details` the checkpoint's meta gives.
    """
    if not path:
        return dict(method='random_init', source='no checkpoint')
    try:
        meta = read_checkpoint_meta(path)
    except Exception as exc:  # the results file must still be written
        return dict(method=None, source=f'unreadable: {exc}')
    details = pretrain_details(meta)
    declared = _declared_method(meta)
    if declared:
        return dict(method=declared[0], source=f'meta.{declared[1]}', **details)
    cfg_text = meta.get('cfg')
    if isinstance(cfg_text, str):
        return dict(method=method_from_config_text(cfg_text), source='meta.cfg', **details)
    return dict(method=None, source='unknown (no meta)')


def tested_checkpoint_pretrain(meta: Optional[dict], role: str = 'tested') -> dict:
    """What a downstream checkpoint under test (``tools/test.py``) was pretrained from.

    From the checkpoint's ``meta``: ``pretrain``, which :class:`DownstreamResultsHook` writes
    into every checkpoint of a downstream run; for checkpoints written before it did, the
    backbone's ``init_cfg.checkpoint`` in the saved config (``meta['cfg']``) of a downstream
    run (one with that hook); for a converted one, ``converted_from``. Otherwise the method is
    None (unknown): the config under test says nothing about the tested weights, and
    ``random_init`` is only for a run that started without a pretrain checkpoint.

    Args:
        meta (dict | None): The checkpoint's ``meta``.
        role (str): What the checkpoint is to the run, for ``source``: ``'tested'``, or
            ``'resumed'`` (a resumed downstream run keeps its checkpoint's record).

    Returns:
        dict: ``{'checkpoint': str | None, 'method': str | None, 'source': str}`` and the keys
        of :func:`pretrain_details` recorded.
    """
    meta = meta if isinstance(meta, dict) else {}
    whose = f"{role} checkpoint's"
    recorded = meta.get('pretrain')
    if isinstance(recorded, dict) and 'method' in recorded:
        return dict(checkpoint=recorded.get('checkpoint'), method=recorded['method'],
                    source=f"{whose} meta.pretrain "
                           f"({recorded.get('method_source', 'recorded')})",
                    **{k: recorded[k] for k in DETAIL_KEYS if recorded.get(k) is not None})
    cfg_text = meta.get('cfg')
    if isinstance(cfg_text, str) and 'DownstreamResultsHook' in cfg_text:
        try:
            from mmengine.config import Config

            from beitv2_mm.engine.launch import cfg_get
            checkpoint = cfg_get(Config.fromstring(cfg_text, '.py'),
                                 'model.backbone.init_cfg.checkpoint')
        except Exception as exc:  # noqa: BLE001 - an unparsable config: say so, go on
            return dict(checkpoint=None, method=None,
                        source=f"unknown: {whose} meta.cfg unreadable ({exc})")
        info = read_pretrain_info(checkpoint)
        return dict(info, checkpoint=checkpoint,
                    source=f"{whose} meta.cfg -> {info['source']}")
    declared = _declared_method(meta)
    if declared:
        return dict(checkpoint=None, method=declared[0],
                    source=f"{whose} meta.{declared[1]}")
    return dict(checkpoint=None, method=None,
                source=f"unknown: the {whose} meta does not say")


def method_from_config_text(text: str) -> Optional[str]:
    """The pretrain method of a saved mmengine config text.

    A top-level ``pretrain_method = '...'`` (every MIM config of this project sets one) wins;
    otherwise it is guessed from the algorithm and tokenizer types (the demo BEiT v1 and PeCo
    configs both use ``PeCoVQVAE`` and could not be told apart that way).
    """
    declared = re.search(r"^pretrain_method\s*=\s*(['\"])(.+?)\1\s*(#.*)?$", text, re.M)
    if declared:
        return declared.group(2)

    types = re.findall(r"type\s*=\s*['\"]([\w.\-]+)['\"]", text) + \
        re.findall(r"['\"]type['\"]\s*:\s*['\"]([\w.\-]+)['\"]", text)
    names = [t.split('.')[-1].lower() for t in types]
    joined = ' '.join(names)
    if 'peco' in joined:
        return 'peco'
    if 'dalle' in joined or 'dall-e' in joined or 'beitv1' in joined or 'beitv1head' in joined:
        return 'beitv1'
    if 'vqkd' in joined or 'beitv2' in joined:
        return 'beitv2'
    if 'imageclassifier' in names:
        return 'supervised'
    return names[0] if names else None
