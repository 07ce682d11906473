"""The VQ-KD visual tokenizer of BEiT v2, trainable, usable as mmpretrain ``BEiT`` target generator.

Structure and numerics follow the official ``beit2/modeling_vqkd.py``:

    images -> [-1, 1] -> encoder ViT (abs pos emb, no rel bias, no layer scale, final LN on
    the patch tokens) -> Linear-Tanh-Linear to ``code_dim`` (fp32) -> l2-normalised EMA
    quantizer -> decoder ViT over the (h, w) code map (patch size 1) -> Linear-Tanh-Linear
    to the teacher's dimension.

Input range: the official tokenizer maps its input to [-1, 1] (``x / 127.5 - 1``; inputs
``<= 1`` were multiplied by 255 first, a data-dependent test). Here the caller states the
range once with ``input_range`` ((0, 255) default: what mmpretrain's data preprocessors give
without mean/std; (0, 1); or (-1, 1), what mmpretrain's ``TwoNormDataPreprocessor`` gives
with ``second_mean=second_std=127.5``), and the tokenizer does the mapping, with no
host-device sync.
"""
from __future__ import annotations

import copy
import math
from typing import NamedTuple, Optional, Sequence

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import nn

from mmpretrain.registry import MODELS

from ..backbones.beit_vit import official_vit_init
from .checkpoint import load_tokenizer_checkpoint, require_tokenizer_checkpoint
from .quantizer import NormEMAQuantizer

# official VisionTransformer._init_weights: Linear trunc-normal(0.02) / bias 0, LayerNorm 1 / 0
# (the patch-embedding conv keeps PyTorch's default init, as there)
VIT_INIT = [
    dict(type='TruncNormal', std=0.02, layer='Linear'),
    dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0),
]


def vqkd_vit_cfg(arch='base', img_size=224, patch_size=16, in_channels=3, **overrides) -> dict:
    """A ``FastBEiTViT`` config (mmpretrain's ``BEiTViT`` with SDPA attention, same keys) as the
    official VQ-KD encoder/decoder, as the shipped VQ-KD configs build it.

    Absolute position embedding, no relative position bias, no layer scale, a final LayerNorm
    (the official ``fc_norm`` on patch tokens), ``featmap`` output. ``type='BEiTViT'`` in
    ``overrides`` gives the stock class.
    """
    cfg = dict(type='FastBEiTViT', arch=arch, img_size=img_size, patch_size=patch_size,
               in_channels=in_channels, out_indices=-1, drop_path_rate=0.0,
               norm_cfg=dict(type='LN', eps=1e-6), final_norm=True, out_type='featmap',
               with_cls_token=True, use_abs_pos_emb=True, use_rel_pos_bias=False,
               use_shared_rel_pos_bias=False, layer_scale_init_value=0.0,
               init_cfg=copy.deepcopy(VIT_INIT))
    cfg.update(overrides)
    return cfg


INPUT_RANGES = ((0, 255), (0, 1), (-1, 1))


def to_unit_range(images: torch.Tensor, input_range: Sequence[float]) -> torch.Tensor:
    """Map images from ``input_range`` to [-1, 1] (the official tokenizer's input)."""
    low, high = input_range
    if (low, high) == (-1, 1):
        return images
    return (images - low) * (2.0 / (high - low)) - 1.0


def check_input_range(input_range, owner: str) -> tuple:
    rng = tuple(float(v) for v in input_range)
    if rng not in [tuple(map(float, r)) for r in INPUT_RANGES]:
        raise ValueError(f'{owner}: input_range must be one of {INPUT_RANGES}, got '
                         f'{input_range}')
    return rng


class VQKDOutput(NamedTuple):
    """Result of :meth:`VQKDTokenizer.reconstruct`.

    Attributes:
        features: decoder output (B, N, target_dim), to be compared with the teacher.
        indices: code indices (B, H/P, W/P).
        commit_loss: scalar commitment loss.
    """
    features: torch.Tensor
    indices: torch.Tensor
    commit_loss: torch.Tensor


def _task_layer(in_dims: int, out_dims: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dims, in_dims), nn.Tanh(), nn.Linear(in_dims, out_dims))


@MODELS.register_module()
class VQKDTokenizer(BaseModule):
    """BEiT v2 VQ-KD tokenizer: ViT encoder, l2-normalised EMA codebook, ViT decoder.

    Public API:

    * ``encode(images) -> LongTensor (B, H/P, W/P)``: code indices (MIM targets);
    * ``get_codebook_indices(images) -> LongTensor (B, N)`` and ``forward(images)``, the same
      flattened: mmpretrain's ``VQKD`` interface, so mmpretrain's ``BEiT`` algorithm can use
      this module as ``target_generator``;
    * ``reconstruct(images) -> VQKDOutput``: decoder features + indices + commitment loss
      (training; needs a decoder).

    The quantizer is this project's :class:`NormEMAQuantizer` (same numerics as the official
    one, plus distributed-safe k-means init and device-side usage counters; see its module
    docstring for why not mmpretrain's ``NormEMAVectorQuantizer``).

    Args:
        encoder (dict): Config of the encoder ViT, built by ``MODELS.build``; any ViT with
            mmpretrain ``BEiTViT``'s interface (e.g. this project's ``FastBEiTViT``) whose
            output is a ``featmap`` (B, C, h, w) or ``raw`` tokens. Defaults to the official
            ViT-B/16 encoder (:func:`vqkd_vit_cfg`).
        decoder (dict, optional): Config of the decoder ViT over the code map. Its
            ``in_channels`` is set to ``code_dim`` and ``patch_size`` to 1. None builds an
            encoder-only tokenizer (MIM targets only). Defaults to the official 3-layer
            ViT-B decoder for 224 px.
        num_codes (int): Codebook size. Defaults to 8192.
        code_dim (int): Code dimension. Defaults to 32.
        decay (float): Codebook EMA decay. Defaults to 0.99.
        kmeans_init (bool): k-means init of the codebook on the first batch. Defaults to True.
        beta (float): Commitment loss weight. Defaults to 1.0.
        target_dim (int): Output dimension of the decoder task layer (the teacher's feature
            dimension: 512 for CLIP ViT-B/16, 768 for DINO ViT-B/16). Defaults to 512.
        input_range (tuple): Range of the images given to the public methods: (0, 255),
            (0, 1) or (-1, 1). Defaults to (0, 255).
        checkpoint (str, optional): Tokenizer checkpoint loaded at construction (raw state
            dict or training checkpoint with ``tokenizer.``/``target_generator.`` prefix;
            see :func:`load_tokenizer_checkpoint`). The module is then marked initialised,
            so ``init_weights`` does not overwrite it.
        frozen (bool): Freeze every parameter and keep the module (and its codebook) in eval
            mode even when a runner calls ``train()``, as a MIM target generator should be.
            Defaults to False.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self,
                 encoder: Optional[dict] = None,
                 decoder: Optional[dict] = 'default',
                 num_codes: int = 8192,
                 code_dim: int = 32,
                 decay: float = 0.99,
                 kmeans_init: bool = True,
                 beta: float = 1.0,
                 target_dim: int = 512,
                 input_range: Sequence[float] = (0, 255),
                 checkpoint: Optional[str] = None,
                 frozen: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.input_range = check_input_range(input_range, 'VQKDTokenizer')
        encoder = vqkd_vit_cfg() if encoder is None else copy.deepcopy(dict(encoder))
        self.encoder = MODELS.build(encoder)
        self.patch_size = self._patch_size(self.encoder)
        enc_dims = self.encoder.embed_dims
        self.encode_task_layer = _task_layer(enc_dims, code_dim)
        self.quantizer = NormEMAQuantizer(num_codes=num_codes, code_dim=code_dim, decay=decay,
                                          kmeans_init=kmeans_init, l2_normalize=True,
                                          beta=beta)
        if decoder == 'default':
            grid = self.encoder.patch_resolution
            decoder = vqkd_vit_cfg(arch=dict(embed_dims=768, num_layers=3, num_heads=12,
                                             feedforward_channels=3072),
                                   img_size=tuple(grid), patch_size=1)
        if decoder is not None:
            decoder = copy.deepcopy(dict(decoder))
            decoder['in_channels'] = code_dim
            decoder['patch_size'] = 1
            self.decoder = MODELS.build(decoder)
            self.decode_task_layer = _task_layer(self.decoder.embed_dims, target_dim)
        else:
            self.decoder = None
            self.decode_task_layer = None
        self.num_codes = num_codes
        self.code_dim = code_dim
        self.target_dim = target_dim
        self.frozen = frozen
        self.checkpoint = checkpoint
        if checkpoint is not None:
            require_tokenizer_checkpoint(
                checkpoint, 'train one (configs/vqkd/*.py; configs/demo/vqkd_vit-tiny_synthetic.py '
                'for a tiny one) or convert the official release (microsoft/unilm beit2, '
                'vqkd_encoder_base_decoder_3x768x12_clip.pth) with tools/convert_ckpt.py '
                'vqkd_official SRC DST')
            load_tokenizer_checkpoint(self, checkpoint)
            self._is_init = True
        if frozen:
            self.requires_grad_(False)
            self.eval()

    @staticmethod
    def _patch_size(vit: nn.Module) -> int:
        proj = getattr(getattr(vit, 'patch_embed', None), 'projection', None)
        if proj is None or not hasattr(proj, 'kernel_size'):
            raise TypeError(f'VQKDTokenizer: encoder {type(vit).__name__} has no '
                            f'patch_embed.projection conv; use a BEiTViT-like backbone')
        return int(proj.kernel_size[0])

    # ----------------------------------------------------------------- mmengine hooks
    def init_weights(self) -> None:
        """Official init (unilm ``beit2/modeling_finetune.py`` ``VisionTransformer``, the VQ-KD
        encoder and decoder): every Linear trunc-normal(0.02) with zero bias, LN (1, 0),
        ``cls_token`` trunc-normal(0.02), the patch-embedding conv left at PyTorch's default,
        then residual-branch outputs divided by ``sqrt(2 * layer_id)``; task layers
        trunc-normal(0.02), zero bias. (mmpretrain's ``TransformerEncoderLayer.init_weights``
        re-draws the FFN Linear layers Xavier-uniform after the config's TruncNormal: undone.)
        """
        if self.is_init:  # loaded from ``checkpoint``: keep those weights
            return
        super().init_weights()  # FastBEiTViT encoder / decoder: official_vit_init there
        for vit in (self.encoder, self.decoder):
            if vit is not None and not getattr(vit, 'official_init', False):
                official_vit_init(vit)  # a stock BEiTViT (or official_init=False)
        for task in (self.encode_task_layer, self.decode_task_layer):
            if task is None:
                continue
            for m in task.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)

    def train(self, mode: bool = True):
        """Keep a ``frozen`` tokenizer in eval mode (its codebook must not move)."""
        return super().train(False if self.frozen else mode)

    # ----------------------------------------------------------------- internals
    @staticmethod
    def _tokens(vit_output, vit: nn.Module) -> tuple:
        """(B, N, C) patch tokens and (h, w) from a ViT's last output."""
        out = vit_output[-1] if isinstance(vit_output, (tuple, list)) else vit_output
        if out.dim() == 4:  # featmap (B, C, h, w)
            b, c, h, w = out.shape
            return out.flatten(2).transpose(1, 2), (h, w)
        if out.dim() == 3:  # raw tokens with the extra (cls) tokens first
            extra = getattr(vit, 'num_extra_tokens', 0)
            tokens = out[:, extra:]
            side = int(math.isqrt(tokens.shape[1]))
            return tokens, (side, side)
        raise ValueError(f'VQKDTokenizer: unsupported ViT output shape {tuple(out.shape)}; '
                         f"set out_type='featmap' in the encoder/decoder config")

    def _quantize(self, images: torch.Tensor):
        x = to_unit_range(images, self.input_range)
        tokens, (h, w) = self._tokens(self.encoder(x), self.encoder)
        # the task layer runs in fp32, as in the official code
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            z = self.encode_task_layer(tokens.float())
        quant = self.quantizer(z)
        return quant, (h, w)

    # ----------------------------------------------------------------- public API
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Code indices of ``images`` (B, 3, H, W) in ``input_range`` -> LongTensor (B, H/P, W/P)."""
        quant, (h, w) = self._quantize(images)
        return quant.indices.view(images.shape[0], h, w)

    def get_codebook_indices(self, images: torch.Tensor) -> torch.Tensor:
        """Code indices flattened to (B, N): mmpretrain ``VQKD``'s interface."""
        return self.encode(images).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """As mmpretrain ``VQKD.forward``: the (B, N) code indices (MIM targets)."""
        return self.get_codebook_indices(images)

    def decode(self, quantized: torch.Tensor, hw: tuple) -> torch.Tensor:
        """Decoder features (B, N, target_dim) from quantized codes (B, N, code_dim)."""
        if self.decoder is None:
            raise RuntimeError('VQKDTokenizer was built with decoder=None (encoder only); '
                               'set a decoder config to train it')
        b, n, c = quantized.shape
        code_map = quantized.transpose(1, 2).reshape(b, c, hw[0], hw[1])
        code_map = code_map.to(self.decoder.patch_embed.projection.weight.dtype)
        tokens, _ = self._tokens(self.decoder(code_map), self.decoder)
        return self.decode_task_layer(tokens)

    def reconstruct(self, images: torch.Tensor) -> VQKDOutput:
        """Encode, quantize and decode: what VQ-KD training compares with the teacher."""
        quant, hw = self._quantize(images)
        features = self.decode(quant.quantized, hw)
        return VQKDOutput(features, quant.indices.view(images.shape[0], *hw), quant.commit_loss)


def tiny_vqkd_tokenizer_cfg(img_size: int = 32, patch_size: int = 8, embed_dims: int = 32,
                            num_layers: int = 2, decoder_layers: Optional[int] = 1,
                            num_codes: int = 64, code_dim: int = 8, target_dim: int = 16,
                            **overrides) -> dict:
    """Config of a tiny :class:`VQKDTokenizer` (tests, smoke runs); ``decoder_layers=None``
    gives an encoder-only tokenizer."""
    arch = dict(embed_dims=embed_dims, num_layers=num_layers, num_heads=2,
                feedforward_channels=embed_dims * 2)
    cfg = dict(type='VQKDTokenizer',
               encoder=vqkd_vit_cfg(arch=arch, img_size=img_size, patch_size=patch_size),
               decoder=None, num_codes=num_codes, code_dim=code_dim, target_dim=target_dim)
    if decoder_layers is not None:
        cfg['decoder'] = vqkd_vit_cfg(arch=dict(arch, num_layers=decoder_layers),
                                      img_size=img_size // patch_size, patch_size=1)
    cfg.update(overrides)
    return cfg
