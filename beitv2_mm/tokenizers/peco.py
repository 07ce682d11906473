"""PeCo visual tokenizer: a convolutional VQ-VAE whose code map is the MIM target grid.

PeCo (Dong et al., "PeCo: Perceptual Codebook for BERT Pre-training of Vision Transformers")
trains a VQ-VAE with a perceptual loss and uses its codes as the targets of BEiT-style masked
image modeling. The training objective lives in :class:`beitv2_mm.algorithms.peco.PeCoVQVAE`;
this module is the network, usable on its own as the ``target_generator`` of a MIM algorithm.

Architecture (the VQGAN-style network PeCo builds on):

* encoder: 3x3 conv, then per resolution ``num_res_blocks`` residual blocks
  (GroupNorm-SiLU-conv, twice) followed by a stride-2 downsampling conv (not after the last
  resolution); self-attention blocks after each residual block of the lowest resolution and in
  the middle (res-attn-res); GroupNorm-SiLU-conv to ``z_channels``; 1x1 conv to the code
  dimension;
* quantizer: EMA codebook (default K = 8192) from :mod:`beitv2_mm.tokenizers.quantizer`;
* decoder: the mirror image (1x1 conv, middle res-attn-res, per resolution
  ``num_res_blocks + 1`` residual blocks, as VQGAN's decoder, with attention after each at the
  lowest resolution, and nearest-neighbour 2x upsampling + conv, GroupNorm-SiLU-conv to RGB).

Token grid. The encoder downsamples by ``2 ** (len(ch_mult) - 1)`` (``patch_size``, checked in
``__init__``). The code map must be the MIM student's patch grid, one token per student patch;
the PeCo configs feed the tokenizer a view of the student's size, so ``patch_size`` equals the
student's: 224 px with factor 16 gives the 14 x 14 grid of ViT-B/16 (the demos: 64 px, factor 8,
8 x 8). The PeCo issue text speaks of a 16 x 16 latent: that is 256 px input at factor 16;
at 224 px the grid BEiT's MIM head and mask generator need is 14 x 14, so the factor is 16
and the grid follows the input size.

Input convention: images normalised to [-1, 1] (mean 127.5, std 127.5 on 0..255 pixels), as in
VQGAN; :meth:`decode` returns images in the same space. MIM configs therefore give the second
view ``second_mean=[127.5] * 3, second_std=[127.5] * 3`` in ``TwoNormDataPreprocessor``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from mmpretrain.registry import MODELS

from .checkpoint import load_tokenizer_checkpoint, require_tokenizer_checkpoint
from .quantizer import NormEMAQuantizer


def _group_norm(channels: int, num_groups: int) -> nn.GroupNorm:
    if channels % num_groups != 0:
        raise ValueError(
            f'PeCoVQVAE: {channels} channels are not divisible by norm_groups={num_groups}; '
            f'choose base_channels * ch_mult and z_channels as multiples of norm_groups')
    return nn.GroupNorm(num_groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GN-SiLU-conv3x3) x 2, 1x1 shortcut if channels change.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        norm_groups (int): GroupNorm groups.
        dropout (float): Dropout before the second conv.
    """

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = _group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = (nn.Identity() if in_channels == out_channels else
                         nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual connection (VQGAN's AttnBlock).

    Args:
        channels (int): Channels of the feature map.
        norm_groups (int): GroupNorm groups.
    """

    def __init__(self, channels: int, norm_groups: int):
        super().__init__()
        self.norm = _group_norm(channels, norm_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1))
        out = out.squeeze(1).transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv with VQGAN's asymmetric (0, 1, 0, 1) padding: exact halving."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class ConvEncoder(nn.Module):
    """Image -> latent map at 1 / 2**(len(ch_mult) - 1) of the input resolution.

    Args:
        in_channels (int): Image channels.
        base_channels (int): Channels of the first resolution.
        ch_mult (Sequence[int]): Channel multiplier per resolution.
        num_res_blocks (int): Residual blocks per resolution.
        z_channels (int): Output channels.
        norm_groups (int): GroupNorm groups.
        dropout (float): Dropout inside residual blocks.
    """

    def __init__(self, in_channels: int, base_channels: int, ch_mult: Sequence[int],
                 num_res_blocks: int, z_channels: int, norm_groups: int, dropout: float):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        channels = base_channels
        last = len(ch_mult) - 1
        for level, mult in enumerate(ch_mult):
            stage = nn.Module()
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(channels, base_channels * mult, norm_groups, dropout))
                channels = base_channels * mult
                # attention only at the lowest resolution, where it is affordable
                attns.append(AttnBlock(channels, norm_groups) if level == last else nn.Identity())
            stage.blocks, stage.attns = blocks, attns
            stage.downsample = Downsample(channels) if level != last else nn.Identity()
            self.down.append(stage)
        self.mid = nn.Sequential(
            ResBlock(channels, channels, norm_groups, dropout), AttnBlock(channels, norm_groups),
            ResBlock(channels, channels, norm_groups, dropout))
        self.norm_out = _group_norm(channels, norm_groups)
        self.conv_out = nn.Conv2d(channels, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block, attn in zip(stage.blocks, stage.attns):
                h = attn(block(h))
            h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class ConvDecoder(nn.Module):
    """Latent map -> image; the mirror image of :class:`ConvEncoder`.

    Args:
        out_channels (int): Image channels.
        base_channels (int): Channels of the highest resolution.
        ch_mult (Sequence[int]): Channel multiplier per resolution (encoder order).
        num_res_blocks (int): Residual blocks per resolution (VQGAN's decoder: the encoder's
            ``num_res_blocks + 1``).
        z_channels (int): Input channels.
        norm_groups (int): GroupNorm groups.
        dropout (float): Dropout inside residual blocks.
    """

    def __init__(self, out_channels: int, base_channels: int, ch_mult: Sequence[int],
                 num_res_blocks: int, z_channels: int, norm_groups: int, dropout: float):
        super().__init__()
        channels = base_channels * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, channels, 3, padding=1)
        self.mid = nn.Sequential(
            ResBlock(channels, channels, norm_groups, dropout), AttnBlock(channels, norm_groups),
            ResBlock(channels, channels, norm_groups, dropout))
        self.up = nn.ModuleList()
        last = len(ch_mult) - 1
        for level in reversed(range(len(ch_mult))):
            stage = nn.Module()
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(channels, base_channels * ch_mult[level], norm_groups,
                                       dropout))
                channels = base_channels * ch_mult[level]
                attns.append(AttnBlock(channels, norm_groups) if level == last else nn.Identity())
            stage.blocks, stage.attns = blocks, attns
            stage.upsample = Upsample(channels) if level != 0 else nn.Identity()
            self.up.append(stage)
        self.norm_out = _group_norm(channels, norm_groups)
        self.conv_out = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in self.up:
            for block, attn in zip(stage.blocks, stage.attns):
                h = attn(block(h))
            h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


@MODELS.register_module()
class PeCoVQVAE(BaseModule):
    """PeCo's convolutional VQ-VAE tokenizer (see the module docstring for the architecture).

    Args:
        patch_size (int): Pixels per token side; must equal ``2 ** (len(ch_mult) - 1)`` and the
            MIM student's patch size. Defaults to 16 (ViT-B/16: 14 x 14 tokens at 224 px).
        in_channels (int): Image channels. Defaults to 3.
        base_channels (int): Channels of the first resolution. Defaults to 128 (VQGAN).
        ch_mult (Sequence[int]): Channel multipliers, one per resolution. Defaults to
            ``(1, 1, 2, 2, 4)`` (VQGAN f16).
        num_res_blocks (int): Residual blocks per resolution of the encoder; the decoder has
            one more per resolution, as VQGAN's. Defaults to 2.
        z_channels (int): Channels at the encoder output / decoder input. Defaults to 256.
        norm_groups (int): GroupNorm groups. Defaults to 32.
        dropout (float): Dropout in residual blocks. Defaults to 0.
        num_embed (int): Codebook size K. Defaults to 8192.
        embed_dims (int): Code dimension. Defaults to 256 (VQGAN f16).
        quantizer (dict, optional): Extra arguments of the shared EMA quantizer
            :class:`~beitv2_mm.tokenizers.quantizer.NormEMAQuantizer` (its ``num_codes`` and
            ``code_dim`` come from ``num_embed`` and ``embed_dims``). Defaults to
            ``dict(decay=0.99, l2_normalize=False, kmeans_init=True, beta=1.0)``: the classic
            euclidean EMA VQ-VAE codebook (PeCo's VQ-VAE learns unnormalised codes), k-means
            initialised on the first batch. ``l2_normalize=True`` gives VQ-KD-style codes.
        frozen (bool): Freeze all weights and stay in eval mode even under ``train()`` (no EMA
            drift): what a MIM ``target_generator`` needs. Defaults to False.
        checkpoint (str, optional): Weights to load: a raw state dict of this module, or an
            mmengine checkpoint of :class:`~beitv2_mm.algorithms.peco.PeCoVQVAETrainer`
            (keys ``tokenizer.*``) or of a MIM run (``target_generator.*``). Missing keys and
            shape mismatches raise, unexpected keys are reported. (Inside ``BEiTMIM`` the
            algorithm pops ``model.target_generator.checkpoint`` and loads it itself.)
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 base_channels: int = 128,
                 ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2,
                 z_channels: int = 256,
                 norm_groups: int = 32,
                 dropout: float = 0.0,
                 num_embed: int = 8192,
                 embed_dims: int = 256,
                 quantizer: Optional[dict] = None,
                 frozen: bool = False,
                 checkpoint: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        factor = 2 ** (len(ch_mult) - 1)
        if factor != patch_size:
            raise ValueError(
                f'PeCoVQVAE: ch_mult={tuple(ch_mult)} downsamples by {factor}, but '
                f'patch_size={patch_size}; the token grid must equal the MIM student\'s patch '
                f'grid, so use len(ch_mult) = log2(patch_size) + 1 = '
                f'{int(math.log2(patch_size)) + 1 if patch_size > 0 else "?"}')
        self.patch_size = patch_size
        self.num_embed = num_embed
        self.embed_dims = embed_dims
        self.encoder = ConvEncoder(in_channels, base_channels, ch_mult, num_res_blocks,
                                   z_channels, norm_groups, dropout)
        self.quant_conv = nn.Conv2d(z_channels, embed_dims, 1)
        self.quantize = build_quantizer(num_embed, embed_dims, quantizer)
        self.post_quant_conv = nn.Conv2d(embed_dims, z_channels, 1)
        self.decoder = ConvDecoder(in_channels, base_channels, ch_mult, num_res_blocks + 1,
                                   z_channels, norm_groups, dropout)
        self.frozen = frozen
        self.checkpoint = checkpoint
        if checkpoint is not None:
            # the project's tokenizer loader: strips tokenizer./target_generator. prefixes,
            # raises on missing keys or shape mismatches, reports unexpected keys
            require_tokenizer_checkpoint(
                checkpoint, 'train one with configs/peco/peco_vqvae_in1k.py '
                '(configs/demo/peco_vqvae-tiny_synthetic.py for a tiny one)')
            load_tokenizer_checkpoint(self, checkpoint)
        if frozen:
            self.requires_grad_(False)
            self.eval()

    # ------------------------------------------------------------------ mmengine hooks
    def init_weights(self) -> None:
        """Keep loaded weights: skip (re)initialisation when a checkpoint was given."""
        if self.checkpoint is not None:
            return
        super().init_weights()

    def train(self, mode: bool = True):
        """A frozen tokenizer stays in eval mode (no EMA codebook updates, no dropout)."""
        return super().train(False if self.frozen else mode)

    # ------------------------------------------------------------------ public API
    def _check_input(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[-1] % self.patch_size or \
                images.shape[-2] % self.patch_size:
            raise ValueError(
                f'PeCoVQVAE expects images (B, C, H, W) with H and W multiples of '
                f'patch_size={self.patch_size}, got shape {tuple(images.shape)}')

    def quantize_images(self, images: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode and quantise.

        Args:
            images (Tensor): (B, 3, H, W) in [-1, 1].

        Returns:
            tuple: quantised latents (B, D, h, w) with straight-through gradients, the
            commitment loss (scalar) and the code indices (B, h, w).
        """
        self._check_input(images)
        latents = self.quant_conv(self.encoder(images))
        # (the quantizer computes in fp32 itself and works on channel-last vectors)
        quantized, indices, commit_loss = self.quantize(latents.permute(0, 2, 3, 1))
        return quantized.permute(0, 3, 1, 2).contiguous(), commit_loss, indices

    def reconstruct(self, images: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training forward: (reconstruction in [-1, 1] space, commitment loss, codes (B, h, w))."""
        quantized, commit_loss, indices = self.quantize_images(images)
        return self.decoder(self.post_quant_conv(quantized)), commit_loss, indices

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """MIM targets (B, N), as mmpretrain's ``VQKD.forward``: what ``BEiT`` calls."""
        return self.get_codebook_indices(images)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Code indices of images, the MIM targets.

        Args:
            images (Tensor): (B, 3, H, W) in [-1, 1].

        Returns:
            LongTensor: (B, H / patch_size, W / patch_size).
        """
        return self.quantize_images(images)[2].long()

    def get_codebook_indices(self, images: torch.Tensor) -> torch.Tensor:
        """Code indices flattened to (B, N), the interface of mmpretrain's ``VQKD``."""
        return self.encode(images).flatten(1)

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Images from code indices.

        Args:
            indices (LongTensor): (B, h, w), or (B, N) with N a square number.

        Returns:
            Tensor: (B, 3, h * patch_size, w * patch_size) in [-1, 1] space.
        """
        if indices.dim() == 2:
            side = math.isqrt(indices.shape[1])
            if side * side != indices.shape[1]:
                raise ValueError(f'PeCoVQVAE.decode: cannot infer a square grid from '
                                 f'{indices.shape[1]} tokens; pass indices as (B, h, w)')
            indices = indices.reshape(indices.shape[0], side, side)
        codes = self.codebook_vectors(indices)  # (B, h, w, D)
        return self.decoder(self.post_quant_conv(codes.permute(0, 3, 1, 2).contiguous()))

    def codebook_vectors(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (..., D) for indices (...)."""
        return F.embedding(indices, self.quantize.codebook)


def build_quantizer(num_embed: int, embed_dims: int, overrides: Optional[dict]) -> nn.Module:
    """The shared EMA quantizer with PeCo's defaults (see :class:`PeCoVQVAE`)."""
    cfg = dict(decay=0.99, l2_normalize=False, kmeans_init=True, beta=1.0)
    for key in ('num_codes', 'code_dim', 'type'):
        if overrides and key in overrides:
            raise ValueError(f'PeCoVQVAE: set the codebook size/dimension with num_embed/'
                             f'embed_dims, not quantizer.{key} (the quantizer is always '
                             f'NormEMAQuantizer)')
    cfg.update(overrides or {})
    cfg.update(num_codes=num_embed, code_dim=embed_dims)
    return NormEMAQuantizer(**cfg)
