"""Demo: UperNet on the tiny MIM ViT, synthetic ADE20K layout (CPU, well under a minute).

configs/upernet_ade20k.py at toy size: the MIM demo's student arch (width 64, 4 layers, 8 px
patches) at 64x64 crops, features of all 4 layers through Feature2Pyramid (BN instead of SyncBN
for single-process CPU), UperNet channels 64, FCN auxiliary head (loss weight 0.4), 10 classes
(``reduce_zero_label``), layer decay 0.75, 40 iterations at batch 4, sliding-window test 64 /
stride 43 on the first 100 validation images. Pretrain checkpoint at
``model.backbone.init_cfg.checkpoint``; None = random init.
"""
_base_ = ['../_base_/seg_upernet_beit.py', '../_base_/seg_ade20k_512.py']
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmseg'

img_size = 64
crop_size = (img_size, img_size)
arch = dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128)
max_iters = 40
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size=crop_size)),
    backbone=dict(arch=arch, img_size=img_size, patch_size=8, out_indices=[0, 1, 2, 3],
                  drop_path_rate=0.1,
                  init_cfg=dict(type='BEiTPretrained', checkpoint=None, required=False)),
    neck=dict(embed_dim=64, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[64, 64, 64, 64], channels=64, num_classes=10,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=32, num_classes=10, norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(43, 43)),
)
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, img_size), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='Resize', scale=(256, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(type='SyntheticADE20KDataset', data_root='data/synthetic/ade20k',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    # the first 100 validation images keep the demo's evaluation well under a minute
    dataset=dict(type='SyntheticADE20KDataset', data_root='data/synthetic/ade20k', indices=100,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=1e-3))  # fp32 on the CPU
param_scheduler = [  # the shape of configs/upernet_ade20k.py's: warmup x poly over all iterations
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=6),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters + 1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1),
    visualization=dict(type='SegVisualizationHook', draw=False),
)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
custom_hooks = [dict(type='DownstreamResultsHook', task='semantic_segmentation',
                     dataset_name='synthetic-ADE20K')]
