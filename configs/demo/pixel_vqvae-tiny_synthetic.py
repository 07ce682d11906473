"""Demo: a tiny pixel VQ-VAE (perceptual_weight = 0) on the synthetic ImageNet set, 64 px.

This is BEiT v1's idea of pixel-level visual tokens (a discrete VAE trained to reconstruct
pixels) with a trainable stand-in for the DALL-E dVAE: the DALL-E weights are not available
offline, so the BEiT v1 demo (configs/demo/beitv1_vit-tiny_synthetic.py) takes its tokens from
the checkpoint of this run. Same network and training algorithm as the PeCo tokenizer
(``PeCoVQVAETrainer``), only without teacher and perceptual loss.

Token grid: 64 px / patch 8 = 8 x 8 codes, the grid of the demo ViT students (patch 8);
K = 512 codes. Trains in well under a minute on 2 CPU cores:
``python tools/train.py configs/demo/pixel_vqvae-tiny_synthetic.py``.
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
        base_channels=8,  # 8/8/16/16 channels: ~1.2 GFLOP per step of 8 images
        ch_mult=(1, 1, 2, 2),
        num_res_blocks=1,
        z_channels=16,
        norm_groups=4,
        num_embed=512,
        embed_dims=16,
        quantizer=dict(decay=0.9, l2_normalize=False, kmeans_init=True, beta=1.0)),
    teacher=None,
    perceptual_weight=0.0,
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
