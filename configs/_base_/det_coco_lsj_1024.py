"""COCO instance segmentation data with large-scale jitter (LSJ) at 1024 px, and the mmdet runtime.

Train: flip, resize 1024 x [0.1, 2.0] keeping the ratio, random 1024 crop (ViTDet's LSJ); 4 images
per GPU. Test: resize the long side to 1024. Padding to 1024 x 1024 happens in the model's data
preprocessor after normalisation, with 0 (the mean pixel), as detectron2's ViTDet
(``square_pad=1024``); mmdet's ViTDet port pads the raw image with 114 in the pipeline instead,
which is -0.17 / -0.04 / +0.18 after normalisation. The BEiT ViT needs a fixed input size (its
relative position bias is tied to the patch grid), which the padding guarantees.
Real data: ``*.dataset.data_root`` = the COCO folder with ``annotations/``, ``train2017/``,
``val2017/``. Metrics: ``coco/bbox_mAP``, ``coco/segm_mAP`` (CocoMetric).
"""
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmdet'

dataset_type = 'CheckedCocoDataset'  # CocoDataset + early layout/json check
data_root = 'data/coco'
image_size = (1024, 1024)
backend_args = None
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=32),
                 pipeline=train_pipeline, backend_args=backend_args),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), test_mode=True,
                 pipeline=test_pipeline, backend_args=backend_args),
)
test_dataloader = val_dataloader
# ann_file=None: CocoMetricFromDatasetHook (in each experiment's custom_hooks) gives the metric the
# annotation file of the dataset it evaluates, so overriding the dataloader's data_root suffices.
val_evaluator = dict(type='CocoMetric', ann_file=None, metric=['bbox', 'segm'], format_only=False,
                     backend_args=backend_args)
test_evaluator = val_evaluator

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
# each rank its own draws, as detectron2's ViTDet (seed + rank)
randomness = dict(seed=0, diff_rank_seed=True)
