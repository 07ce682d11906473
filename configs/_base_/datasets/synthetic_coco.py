# Synthetic COCO layout (data/synthetic/coco), 64 px, 10 classes, boxes + polygon masks.
# CheckedCocoDataset = mmdet's CocoDataset + early layout/json check (beitv2_mm/datasets/det.py).
# NOTE: CocoMetric reads its own `ann_file`; when overriding the dataloaders' data_root, also
# override val_evaluator.ann_file (and test_evaluator.ann_file).
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmdet'

dataset_type = 'CheckedCocoDataset'
data_root = 'data/synthetic/coco/'
# == beitv2_mm.datasets.SYNTHETIC_CLASSES (configs cannot import it; a test checks they agree)
synthetic_classes = ('disc', 'square', 'triangle', 'star', 'diamond', 'hexagon', 'cross',
                     'ellipse', 'pentagon', 'bar')

train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=dict(classes=synthetic_classes),
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=dict(classes=synthetic_classes),
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline))
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
