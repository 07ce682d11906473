"""UperNet + FCN auxiliary head on a BEiT ViT-B/16 for 512x512 ADE20K,
with the BEiT v2 recipe: AdamW lr 5e-5 wd 0.05, layer decay 0.75, drop path 0.15, 1500 linear
warmup iterations then poly (power 1) to 0; per-layer relative position bias (the pretrain's
14x14 window resized to 32x32 by the checkpoint flow); features of layers 3/5/7/11 through
mmseg's ``Feature2Pyramid`` (deconv x4, deconv x2, identity, maxpool); UperNet channels 768;
FCN auxiliary head (loss weight 0.4) on the stride-16 level; sliding-window test 512, stride 341.
Pretrain checkpoint: ``model.backbone.init_cfg.checkpoint``, required (``required=True``: a run
without it fails at start; ``model.backbone.init_cfg.required=False`` trains from random weights,
the random-init baseline, initialised as the official fine-tuning model).

Backbone: ``FastBEiTViT``, mmpretrain's ``BEiTViT`` with the attention through SDPA (same keys;
``type='mmpretrain.BEiTViT'`` gives the stock one): on an H100, bf16, 2 images of 512 px, the
UperNet step was 1.01-1.07x faster with 0.46 GB less peak memory (runs g24-g27), and its
checkpoints leave out the 12 per-layer index buffers (12 x 1025^2 int64, 101 MB).
"""
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512),
    # Test images are padded (bottom/right, cut off the prediction again) up to the crop:
    # the test Resize to (2048, 512) keeps an image of aspect ratio > 4 below 512 on its short
    # side, and a slide window smaller than the crop does not fit the 32x32 relative position
    # bias (a crash). The official code (SETR_Resize) enlarges such images instead; both leave
    # every other image as it is.
    test_cfg=dict(size=(512, 512)),
)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='mmpretrain.FastBEiTViT',
        # ViT-B as a dict (not 'base') so that other configs can override single entries.
        arch=dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
        img_size=512,
        patch_size=16,
        out_indices=[3, 5, 7, 11],
        out_type='featmap',
        final_norm=False,
        drop_path_rate=0.15,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,
        init_cfg=dict(type='BEiTPretrained', checkpoint=None, required=True),
    ),
    neck=dict(type='Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
    decode_head=dict(
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=768,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=768,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)),
)
# fp16 mixed precision (dynamic loss scale) as the official runs (IterBasedRunnerAmp); without
# a GPU tools/train.py runs it in fp32 (bf16 CPU autocast only with --amp)
optim_wrapper = dict(
    type='AmpOptimWrapper',
    # fused AdamW, as every AdamW config here (BENCHMARKS.md, c13/c14)
    optimizer=dict(type='AdamW', lr=5e-5, betas=(0.9, 0.999), weight_decay=0.05, fused=True),
    constructor='BEiTLayerDecayOptimWrapperConstructor',
    # The official rule (beit2/semantic_segmentation/mmcv_custom/
    # layer_decay_optimizer_constructor.py): no weight decay for 1-D parameters (norms of the
    # backbone, neck and heads, q/v biases, layer-scale gammas) and biases; everything else,
    # the relative position bias tables and ``backbone.cls_token`` included, is decayed (its
    # ``name in ('pos_embed', 'cls_token')`` test never matches a ``backbone.``-prefixed name).
    paramwise_cfg=dict(layer_decay_rate=0.75, bias_decay_mult=0.0, flat_decay_mult=0.0),
)
# mmcv 1.x's poly + linear warmup (the official lr_config): lr(t) = lr * (1 - t / 160000) times
# the warmup factor 1e-6 + (1 - 1e-6) * t / 1500 for t < 1500. mmengine's schedulers multiply
# when they overlap, and run to ``end - 1``, so the poly spans all iterations (not restarted
# after the warmup, which ran up to 1% above) and both ends are one past the official count.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1501),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=160001),
]
