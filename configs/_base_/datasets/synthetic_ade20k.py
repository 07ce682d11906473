# Synthetic ADE20K layout (data/synthetic/ade20k/ADEChallengeData2016), 64 px, 10 classes,
# label 0 = background/ignore (reduce_zero_label=True, as ADE20K).
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmseg'

dataset_type = 'SyntheticADE20KDataset'
data_root = 'data/synthetic/ade20k/ADEChallengeData2016'
crop_size = (64, 64)

train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    # Zoom in only (short side 64..128 px), so every 64 px crop is full-size.
    dict(type='RandomResize', scale=(128, 64), ratio_range=(1.0, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    # Annotations after Resize: evaluation is against the original label map.
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_dataloader = val_dataloader
test_evaluator = val_evaluator
