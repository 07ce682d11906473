"""Mask R-CNN on a BEiT ViT-B/16 with ViTDet's backbone layout and simple feature pyramid (mmdet),
1024x1024 input.

Backbone: this project's ``WindowedBEiTViT`` (mmpretrain ``BEiTViT`` keys, SDPA attention, one
shared unsaved relative position index per window size): ViTDet's window attention, 14x14
windows in blocks 0, 1, 3, 4, 6, 7, 9, 10 and global attention in blocks 2, 5, 8, 11, no [CLS]
token (``beitv2_mm/backbones/windowed_beit.py``). A 14x14 window is the pretraining grid, so the
windowed blocks keep the pretrained relative position table as it is; the checkpoint flow
resizes it to 64x64 for the global blocks only. Per-layer relative position bias, drop path
0.1, last-layer feature map (stride 16).

Against global attention in every block (``FastBEiTViT``, 4097 tokens per block, what this
config used until 2026-11-24): the windowed blocks attend over 25 windows of 196 tokens (the
64x64 grid padded to 70x70, as ViTDet), 8.3x fewer attention FLOPs per block, and their bias is
(heads, 196, 196) instead of (heads, 4096, 4096). mmpretrain's ``BEiTViT`` has no window
attention; as a global-attention backbone it would also keep a 4097 x 4097 int64 index buffer
per layer (1.6 GB for 12 layers, in memory and in every checkpoint; run c7 in BENCHMARKS.md).
Neck: ``SimpleFeaturePyramid`` (strides 4/8/16/32 + 64 by max pooling, LayerNorm), RPN with 2
convs, Shared4Conv1FC box head and FCN mask head with LayerNorm (``LN2d``), as ViTDet.
Pretrain checkpoint: ``model.backbone.init_cfg.checkpoint``, required (``required=True``: a run
without it fails at start; ``model.backbone.init_cfg.required=False`` trains from random weights,
the random-init baseline, initialised as the official BEiT fine-tuning model).
"""
# eps as detectron2's LayerNorm in ViTDet (mmcv's build_norm_layer would default it to 1e-5)
norm_cfg = dict(type='LN2d', requires_grad=True, eps=1e-6)
model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        # every image (train and test) padded to 1024 x 1024 after normalisation, with 0
        pad_size_divisor=1024,
        pad_mask=True,
        batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)],
    ),
    backbone=dict(
        type='mmpretrain.WindowedBEiTViT',
        # ViT-B as a dict (not 'base') so that other configs can override single entries.
        arch=dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
        img_size=1024,
        patch_size=16,
        window_size=14,
        window_block_indexes=[0, 1, 3, 4, 6, 7, 9, 10],
        out_indices=[11],
        out_type='featmap',
        final_norm=False,
        drop_path_rate=0.1,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,
        init_cfg=dict(type='BEiTPretrained', checkpoint=None, required=True),
    ),
    neck=dict(
        type='SimpleFeaturePyramid',
        backbone_channel=768,
        in_channels=[192, 384, 768, 768],
        out_channels=256,
        num_outs=5,
        norm_cfg=norm_cfg,
    ),
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        num_convs=2,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0),
    ),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            norm_cfg=norm_cfg,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=80,
            norm_cfg=norm_cfg,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0)),
    ),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                          min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000,
                          nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                          min_pos_iou=0.5, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            mask_size=28, pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100,
                  mask_thr_binary=0.5)),
)

# ViTDet's layer decay 0.7; no decay on norms, biases, q/v biases, gamma, cls token and position
# embedding (BEiT's fine-tuning rule; the relative position tables are decayed, as in BEiT's
# fine-tuning and ViTDet's rel_pos), for BEiTLayerDecayOptimWrapperConstructor:
# configs/mask_rcnn_coco.py and the demo take it as
# ``paramwise_cfg={{_base_.vitdet_paramwise_cfg}}``
vitdet_paramwise_cfg = dict(
    layer_decay_rate=0.7,
    norm_decay_mult=0.0,
    bias_decay_mult=0.0,
    custom_keys={
        'q_bias': dict(decay_mult=0.0),
        'v_bias': dict(decay_mult=0.0),
        '.cls_token': dict(decay_mult=0.0),
        '.pos_embed': dict(decay_mult=0.0),
        '.gamma': dict(decay_mult=0.0),
    })
