"""Demo: MIM on PeCo tokens with a tiny ViT on synthetic data, 64 px (BEiT v1-style, no neck).

The student (patch 8 -> 8 x 8 patches, 24 of 64 masked block-wise) predicts the codes of the
tiny PeCo VQ-VAE of configs/demo/peco_vqvae-tiny_synthetic.py; its checkpoint is the hand-off
key ``model.target_generator.checkpoint`` and the tokenizer settings below must match that
config. The tokenizer is frozen (eval mode, no grads). 2400 iterations (see configs/demo/
beitv2_vit-tiny_synthetic.py for why), ~4 min on 2 CPU cores.
"""
# which method made the checkpoints (downstream results files and the leaderboard read it)
pretrain_method = 'peco'
_base_ = ['../_base_/peco_runtime.py']

data_root = 'data/synthetic/imagenet'
# == beitv2_mm.datasets.SYNTHETIC_CLASSES
synthetic_classes = ('disc', 'square', 'triangle', 'star', 'diamond', 'hexagon', 'cross',
                     'ellipse', 'pentagon', 'bar')
max_iters = 2400
num_masking_patches = 24

data_preprocessor = dict(
    type='TwoNormDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    second_mean=[127.5, 127.5, 127.5],  # tokenizer view in [-1, 1]
    second_std=[127.5, 127.5, 127.5],
    to_rgb=True)
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TwoViewRandomResizedCrop', size=64, second_size=64,
         interpolation='bicubic', second_interpolation='bicubic', scale=(0.5, 1.0)),
    dict(type='BlockwiseMaskGenerator', input_size=8, num_masking_patches=num_masking_patches,
         min_num_patches=4, min_aspect=0.3),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CheckedImageNet', data_root=data_root, split='train',
                 metainfo=dict(classes=synthetic_classes), pipeline=train_pipeline))

model = dict(
    type='BEiTMIM',
    num_masked_patches=num_masking_patches,
    backbone=dict(
        type='FastBEiTPretrainViT',
        # FFN 128: the student arch of the other MIM demos, which the downstream demo
        # configs build (tools/run_suite.py hands this backbone to them).
        arch=dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128),
        img_size=64,
        patch_size=8,
        drop_path_rate=0.0,
        final_norm=True,
        out_type='raw',
        layer_scale_init_value=0.1,
        init_cfg=[
            dict(type='TruncNormal', std=0.02, layer='Linear'),
            dict(type='TruncNormal', std=0.02, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]),
    neck=None,
    head=dict(
        type='BEiTV1Head', embed_dims=64, num_embed=512, loss=dict(type='CrossEntropyLoss')),
    target_generator=dict(
        type='PeCoVQVAE',
        patch_size=8,
        base_channels=8,  # all tokenizer settings as in configs/demo/peco_vqvae-tiny_synthetic.py
        ch_mult=(1, 1, 2, 2),
        num_res_blocks=1,
        z_channels=16,
        norm_groups=4,
        num_embed=512,
        embed_dims=16,
        frozen=True,
        checkpoint='work_dirs/peco_vqvae-tiny_synthetic/iter_30.pth'))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.5e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=5, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
