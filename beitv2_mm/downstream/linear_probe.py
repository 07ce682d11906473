"""Linear probing (mmpretrain): a frozen BEiT ViT feature extractor.

Protocol (BEiT v2 paper, 80.1% top-1 for ViT-B/16 1600 ep): the pretrained ViT is frozen and
only a linear classifier is trained on the features of the last layer's [CLS] token after the
pretrain ViT's final LayerNorm. The patch-aggregation head of BEiT v2 pretraining is what makes
that [CLS] token meaningful. Following MAE's probing recipe (the one BEiT v2 compares against),
the classifier is ``BatchNorm1d(affine=False)`` then ``Linear`` (mmpretrain's
``ClsBatchNormNeck`` + ``LinearClsHead``): the BN only whitens features, so the probe stays linear.

- :class:`FrozenBEiTViT` (a ``FastBEiTViT``: mmpretrain's ``BEiTViT`` with the attention
  through SDPA and the same parameter names, so the checkpoint flow loads it directly) never
  trains: ``requires_grad=False`` on every parameter, eval mode kept
  even when the runner calls ``model.train()``, forward under ``torch.no_grad()``. It returns
  the [CLS] token (default) or the mean of the patch tokens, of the last layer (default) or of
  an earlier one (``feature_layer``; BEiT v1 probed its best intermediate layer).
"""
from __future__ import annotations

from typing import Tuple

import torch
from mmpretrain.registry import MODELS

from beitv2_mm.backbones.beit_vit import FastBEiTViT


@MODELS.register_module()
class FrozenBEiTViT(FastBEiTViT):
    """A frozen ``FastBEiTViT`` feature extractor for linear probing (its forward, no gradient
    needed, takes SDPA's fused kernels).

    Args:
        feature (str): ``'cls_token'`` (the [CLS] token; BEiT v2 protocol) or ``'mean_patch'``
            (the mean of the patch tokens).
        feature_layer (int): Which layer's output to use; ``-1`` = the last. With
            ``final_norm=True`` the final LayerNorm is applied to the last layer only (as in
            pretraining).
        **kwargs: ``FastBEiTViT`` arguments (``arch``, ``img_size``, ``patch_size``,
            ``final_norm``, ``attn_impl``...). ``out_type``/``out_indices``/``frozen_stages``
            are set here.
    """

    FEATURES = ('cls_token', 'mean_patch')

    def __init__(self, feature: str = 'cls_token', feature_layer: int = -1, **kwargs):
        for key in ('out_type', 'out_indices', 'frozen_stages'):
            if key in kwargs:
                raise TypeError(f'FrozenBEiTViT sets {key} itself; use feature= '
                                f'{self.FEATURES} and feature_layer= instead')
        if feature not in self.FEATURES:
            raise ValueError(f'FrozenBEiTViT: feature must be one of {self.FEATURES}, '
                             f'got {feature!r}')
        super().__init__(out_type='raw', out_indices=[feature_layer], **kwargs)
        self.feature = feature
        self.feature_layer = self.out_indices[0]
        for param in self.parameters():
            param.requires_grad = False
        self.eval()

    def train(self, mode: bool = True) -> 'FrozenBEiTViT':
        """Stay in eval mode: dropout / drop path must not touch the frozen features."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        with torch.no_grad():
            tokens = super().forward(x)[0]
        if self.feature == 'cls_token':
            return (tokens[:, 0], )
        return (tokens[:, self.num_extra_tokens:].mean(dim=1), )
