"""BEiT v2 ViT-B/16 + Mask R-CNN on COCO, a cheaper "1x" schedule for quick comparisons.

Same model, LSJ 1024 pipeline and optimizer as configs/mask_rcnn_coco.py (layer decay 0.7, AdamW
lr 1e-4 wd 0.1, AMP), but the standard 1x length: 12 epochs ~ 90k iterations at batch 16
(8 GPUs x 2), lr x0.1 at 60k and 80k, lr scaled linearly to the smaller batch (2.5e-5 ->
``auto_scale_lr`` base 16 keeps the per-image lr of the 100-epoch recipe).
Numbers from it are for ranking pretrains against each other, not for the ViTDet table.
"""
_base_ = ['_base_/det_mask_rcnn_beit_vitdet.py', '_base_/det_coco_lsj_1024.py']
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmdet'

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=2.5e-5, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='BEiTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'q_bias': dict(decay_mult=0.0),
            'v_bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.gamma': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
        }),
)
max_iters = 90000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[60000, 80000],
         gamma=0.1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=16)
custom_hooks = [
    dict(type='CocoMetricFromDatasetHook'),
    dict(type='DownstreamResultsHook', task='instance_segmentation', dataset_name='COCO'),
]
