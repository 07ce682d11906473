"""BEiT v2 ViT-B/16 linear probing on ImageNet-1K (80.1 top-1 published, 1600-epoch pretrain).

Protocol (the BEiT v2 one): the pretrained ViT is frozen (``FrozenBEiTViT``: no grad, eval mode
even under ``runner.train()``) and only a linear classifier is trained on the [CLS] token of
the last layer after the pretrain ViT's final LayerNorm (``final_norm=True`` loads ``ln1``).
``feature='mean_patch'`` probes mean-pooled patch tokens instead, ``feature_layer=8`` an earlier
layer (BEiT v1 probed its best intermediate layer).

Training recipe: the official BEiT v2 folder (unilm ``beit2``) ships no probing script, so we
use MAE's linear probing recipe, which BEiT v2 compares against: ``BatchNorm1d(affine=False)``
(mmpretrain ``ClsBatchNormNeck``) + ``Linear`` (trunc-normal 0.01), LARS (trust ratio on the
weight only, as MAE's), lr 6.4 = 0.1 x 16384 / 256, momentum 0.9, no weight decay, batch 16384
(8 GPUs x 2048), 90 epochs with 10 warmup then cosine to 0, RandomResizedCrop 224 + flip only,
AMP. That this recipe reproduces 80.1 is not verified in this project (no ImageNet run here).
BEiT v1's folder has another protocol (unilm ``beit/run_linear_eval.py``: per layer, [CLS]
concatenated with the mean of the patch tokens, no final norm and no BatchNorm, AdamW lr 1e-3 x
batch / 256, wd 1e-4, 100 epochs); which protocol gave BEiT v2's 80.1 the sources do not say.

Pretrain checkpoint: ``model.backbone.init_cfg.checkpoint``, required (``required=True``: a run
without it fails at start; ``model.backbone.init_cfg.required=False`` probes random weights,
the random-init baseline).
"""
_base_ = [
    '_base_/downstream_in1k_finetune_data.py',
    '_base_/downstream_cls_runtime.py',
]
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='FrozenBEiTViT',
        arch='base',
        img_size=224,
        patch_size=16,
        feature='cls_token',
        feature_layer=-1,
        final_norm=True,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,
        init_cfg=dict(type='BEiTPretrained', checkpoint=None, required=True),
    ),
    neck=dict(type='ClsBatchNormNeck', input_features=768),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)],
    ),
)

train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise', color_type='color_ignore_orientation'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=2048, drop_last=True, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=256)
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='LARS', lr=6.4, weight_decay=0.0, momentum=0.9),
    # MAE's LARS (util/lars.py) applies the trust ratio only to parameters with ndim > 1;
    # mmpretrain's applies it to all, which all but freezes the classifier bias after its first
    # step. Excluding biases restores MAE's update (no other 1-D parameter trains here).
    paramwise_cfg=dict(custom_keys={'bias': dict(lars_exclude=True)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=80, by_epoch=True, begin=10, end=90, eta_min=0.0,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=90, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=16384)
custom_hooks = [dict(type='DownstreamResultsHook', task='linear_probe', dataset_name='ImageNet-1K')]
