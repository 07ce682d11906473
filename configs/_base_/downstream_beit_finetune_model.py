"""mmpretrain ImageClassifier over a BEiT ViT-B/16 for fine-tuning (official BEiT v2 recipe).

Per-layer relative position bias (the pretrain's shared one is copied into every layer by the
checkpoint flow), no absolute position embedding, layer scale 0.1, mean pooling of the patch
tokens + LayerNorm (``out_type='avg_featmap'``: ``ln2`` is BEiT's ``fc_norm``), no final norm,
drop path 0.1, linear head with label smoothing 0.1, mixup 0.8 / cutmix 1.0. Pretrain
checkpoint: ``model.backbone.init_cfg.checkpoint``, required (``required=True``: a run without
it fails at start; ``model.backbone.init_cfg.required=False`` trains from random weights, the
random-init baseline, initialised as the official fine-tuning model).

Backbone: ``FastBEiTViT``, mmpretrain's ``BEiTViT`` with the attention through SDPA (same keys,
no per-layer index buffers in the checkpoints; ``type='BEiTViT'`` gives the stock one).

Head init: the official ``VisionTransformer`` draws the head trunc-normal(0.02) and then scales
weight and bias by ``init_scale=0.001`` (``run_class_finetuning.py --init_scale`` default), so
the head starts near zero; trunc-normal(std 2e-5) with mmengine's +-2 bounds is the same
distribution (the bounds cut nothing at either scale).
"""
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='FastBEiTViT',
        # ViT-B as a dict (not 'base') so that other configs can override single entries.
        arch=dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,
        init_cfg=dict(type='BEiTPretrained', checkpoint=None, required=True),
    ),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.02 * 0.001)],
    ),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)
