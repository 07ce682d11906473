"""Necks that turn a plain (single-scale) ViT into a feature pyramid for mmdet.

For mmseg the stock ``Feature2Pyramid`` already does what BEiT's UperNet needs (deconv x4,
deconv x2, identity, maxpool over four ViT layers), so only the detector side lives here:
:class:`SimpleFeaturePyramid`, the ViTDet neck (Li et al., 2022) that builds strides 4/8/16/32
(+ 64 by max pooling, for the RPN) from the *last* ViT feature map alone. mmdet's ViTDet project
is not shipped in the mmdet wheel, hence this module.

Importing this module also makes ``LN2d`` (mmpretrain's channels-first ``LayerNorm2d``) available
in mmdet's registry, so mmdet heads take ``norm_cfg=dict(type='LN2d')`` as in ViTDet.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.model import BaseModule
from mmpretrain.models.utils.norm import LayerNorm2d
from torch import nn

if 'LN2d' not in MMDET_MODELS.module_dict:
    MMDET_MODELS.register_module(name='LN2d', module=LayerNorm2d)


@MMDET_MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """ViTDet's simple feature pyramid over the last feature map of a plain ViT.

    From a stride-16 map with ``backbone_channel`` channels, four parallel branches give
    stride 4 (two 2x deconvs with norm + GELU between), 8 (one 2x deconv), 16 (identity) and 32
    (2x max pool); each goes through a 1x1 conv + norm and a 3x3 conv + norm to
    ``out_channels``. With ``num_outs=5`` a stride-64 level is added by max pooling the
    stride-32 output (detectron2's ``LastLevelMaxPool``), as the RPN of Mask R-CNN expects.

    Args:
        backbone_channel (int): Channels of the ViT feature map (768 for ViT-B).
        in_channels (Sequence[int]): Channels after each scale branch; ViTDet uses
            ``[C/4, C/2, C, C]``.
        out_channels (int): Channels of every output level. Defaults to 256.
        num_outs (int): 4 (strides 4..32) or 5 (+ stride 64). Defaults to 5.
        norm_cfg (dict): Norm after deconvs and convs. Defaults to ``dict(type='LN2d')``.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 backbone_channel: int,
                 in_channels: Sequence[int],
                 out_channels: int = 256,
                 num_outs: int = 5,
                 norm_cfg: dict = dict(type='LN2d', eps=1e-6),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != 4:
            raise ValueError(f'SimpleFeaturePyramid builds 4 scales; in_channels must have 4 '
                             f'entries, got {list(in_channels)}')
        if num_outs not in (4, 5):
            raise ValueError(f'SimpleFeaturePyramid: num_outs must be 4 or 5, got {num_outs}')
        self.backbone_channel = backbone_channel
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        c = backbone_channel
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, 2),
            build_norm_layer(norm_cfg, c // 2)[1],
            nn.GELU(),
            nn.ConvTranspose2d(c // 2, c // 4, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 2, 2))
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)
        branch_channels = [c // 4, c // 2, c, c]
        if branch_channels != self.in_channels:
            raise ValueError(f'SimpleFeaturePyramid: in_channels {self.in_channels} must be '
                             f'{branch_channels} for backbone_channel={c}')
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for ch in self.in_channels:
            self.lateral_convs.append(ConvModule(ch, out_channels, 1, norm_cfg=norm_cfg,
                                                 act_cfg=None, inplace=False))
            self.fpn_convs.append(ConvModule(out_channels, out_channels, 3, padding=1,
                                             norm_cfg=norm_cfg, act_cfg=None, inplace=False))

    def forward(self, inputs: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, ...]:
        """Args: inputs: backbone outputs; the last one is used. Returns: ``num_outs`` maps."""
        x = inputs[-1]
        if x.shape[1] != self.backbone_channel:
            raise ValueError(f'SimpleFeaturePyramid expects {self.backbone_channel} channels, '
                             f'got {x.shape[1]}; set backbone_channel to the ViT embed_dims')
        feats: List[torch.Tensor] = [self.fpn1(x), self.fpn2(x), self.fpn3(x), self.fpn4(x)]
        outs = [fpn(lateral(f)) for f, lateral, fpn in
                zip(feats, self.lateral_convs, self.fpn_convs)]
        if self.num_outs == 5:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
