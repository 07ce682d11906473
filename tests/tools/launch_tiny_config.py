"""A tiny mmpretrain classifier config on the ``tiny_data`` ImageNet layout, for launcher tests.

Written to a temp dir by :func:`write_tiny_config` so each test can point it at its data.
"""
from pathlib import Path

TINY_CLASSIFIER = '''
default_scope = 'mmpretrain'
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
classes = {classes!r}
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=10, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
    backbone=dict(type='VisionTransformer',
                  arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                  img_size=32, patch_size=8, out_type='cls_token'),
    neck=None,
    head=dict(type='LinearClsHead', num_classes=10, in_channels=32,
              loss=dict(type='CrossEntropyLoss')))
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ImageNet', data_root={data_root!r}, split='train',
                 metainfo=dict(classes=classes), pipeline=pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ImageNet', data_root={data_root!r}, split='val',
                 metainfo=dict(classes=classes), pipeline=pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters}, val_interval={max_iters})
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
'''


def write_tiny_config(directory: Path, data_root: Path, max_iters: int = 2,
                      name: str = 'tiny_cls.py') -> Path:
    """Write the tiny classifier config (nccl in the config on purpose: the launcher must
    switch to gloo without CUDA)."""
    from beitv2_mm.datasets.synthetic import SYNTHETIC_CLASSES

    path = Path(directory) / name
    path.write_text(TINY_CLASSIFIER.format(classes=tuple(SYNTHETIC_CLASSES),
                                           data_root=str(data_root), max_iters=max_iters))
    return path
