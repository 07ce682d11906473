"""Demo: a tiny PeCo tokenizer (VQ-VAE + perceptual loss, lambda = 1) on synthetic data, 64 px.

Same algorithm as configs/peco/peco_vqvae_in1k.py at toy scale: 8 x 8 codes (patch 8, the grid
of the demo ViT students), K = 512, perceptual loss on all 4 blocks of the demo teacher
(configs/demo/teacher_vit-tiny_synthetic.py, a small supervised ViT trained on the synthetic
labels, used through ``MMPretrainTeacher``; it stands in for PeCo's self-supervised ViT-B).
The teacher checkpoint is the hand-off key ``model.teacher.checkpoint`` (tools/run_suite.py
sets it to the teacher run's checkpoint). Trains in well under a minute on 2 CPU cores.
"""
_base_ = ['../_base_/peco_runtime.py']

data_root = 'data/synthetic/imagenet'
# == beitv2_mm.datasets.SYNTHETIC_CLASSES
synthetic_classes = ('disc', 'square', 'triangle', 'star', 'diamond', 'hexagon', 'cross',
                     'ellipse', 'pentagon', 'bar')
max_iters = 30

data_preprocessor = dict(
    type='SelfSupDataPreprocessor', mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
    to_rgb=True)
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.5, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CheckedImageNet', data_root=data_root, split='train',
                 metainfo=dict(classes=synthetic_classes), pipeline=train_pipeline))

model = dict(
    type='PeCoVQVAETrainer',
    tokenizer=dict(
        type='PeCoVQVAE',
        patch_size=8,
        base_channels=8,  # 8/8/16/16 channels: ~1.6 GFLOP per step of 8 images (FlopCounterMode)
        ch_mult=(1, 1, 2, 2),
        num_res_blocks=1,
        z_channels=16,
        norm_groups=4,
        num_embed=512,
        embed_dims=16,
        quantizer=dict(decay=0.9, l2_normalize=False, kmeans_init=True, beta=1.0)),
    teacher=dict(
        type='MMPretrainTeacher',
        config='configs/demo/teacher_vit-tiny_synthetic.py',
        checkpoint='work_dirs/teacher_vit-tiny_synthetic/iter_150.pth',
        input_range=(-1, 1)),
    perceptual_weight=1.0,
    perceptual_layers=(1, 2, 3, 4),  # every block of the 4-layer demo teacher
    pixel_loss='mse',
    commit_weight=1.0)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.99), weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', eta_min=1e-4, by_epoch=False, begin=5, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
