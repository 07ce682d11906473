"""BEiT v2 ViT-B/16 + Mask R-CNN on COCO, ViTDet recipe (bbox and segm AP via CocoMetric).

LSJ 1024 (scale 0.1-2.0), 100 epochs = 184375 iterations at batch 64 (16 GPUs x 4; set
--auto-scale-lr for other totals), AdamW lr 1e-4 betas (0.9, 0.999) wd 0.1, layer decay 0.7
(``BEiTLayerDecayOptimWrapperConstructor`` understands ``backbone.layers.N`` inside the detector),
250 warmup iterations, lr x0.1 at 88.9% and 96.3% of training, drop path 0.1, AMP, simple
feature pyramid with LayerNorm (eps 1e-6; neck and heads), ViTDet's 14x14 window attention with
global blocks 2, 5, 8, 11. Model details in configs/_base_/det_mask_rcnn_beit_vitdet.py.

Weight decay deviates from ViTDet on purpose: no decay on any norm (backbone, neck, heads), bias,
q/v bias, layer-scale gamma or cls token, as BEiT's fine-tuning rule for the BEiT-specific
parameters (which ViTDet's ViT does not have); the relative position tables are decayed, as in
BEiT's fine-tuning (``--disable_weight_decay_on_rel_pos_bias`` is off by default) and as
ViTDet's ``rel_pos_h/w``. ViTDet (detectron2's
``get_default_optimizer_params(weight_decay_norm=0)`` plus a ``pos_embed`` override) exempts only
the backbone's ``nn.LayerNorm`` parameters and ``pos_embed``, and decays biases and its neck and
head LayerNorms (detectron2's own ``LayerNorm`` class is not an ``nn.LayerNorm``).

    tools/dist_train.sh configs/mask_rcnn_coco.py 16 \
        --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/beitv2_vitb_mim/epoch_300.pth
"""
_base_ = ['_base_/det_mask_rcnn_beit_vitdet.py', '_base_/det_coco_lsj_1024.py']
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmdet'

optim_wrapper = dict(
    type='AmpOptimWrapper',
    # fused AdamW, as every AdamW config here (BENCHMARKS.md, c13/c14)
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1, fused=True),
    constructor='BEiTLayerDecayOptimWrapperConstructor',
    paramwise_cfg={{_base_.vitdet_paramwise_cfg}},
)
max_iters = 184375
# detectron2's WarmupParamScheduler reaches the full lr at iteration 250; mmengine's LinearLR
# reaches it at ``end - 1`` (named: configs/mask_rcnn_coco_1x.py reuses it)
warmup = dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=251)
param_scheduler = [
    warmup,
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[163889, 177546], gamma=0.1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=64)
custom_hooks = [
    dict(type='CocoMetricFromDatasetHook'),
    dict(type='DownstreamResultsHook', task='instance_segmentation', dataset_name='COCO'),
]
