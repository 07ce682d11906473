"""What the MIM demos (BEiT v2, BEiT v1, PeCo) share: data, student, optimisation, runtime.

One recipe for the three, so that their leaderboard rows differ only where the methods do
(tokenizer and its view, head, aggregation neck, and each paper's AdamW betas), as the full
configs share ``_base_/mim_data_in1k.py``-style data, ``_base_/mim_schedule_300e.py`` and
``_base_/mim_runtime.py``. Toy size: 64 px views of one crop (scale 0.2-1, flip), 8 px patches
(8 x 8 grid), 24 of 64 patches masked block-wise (min block 4), a 4-layer ViT of width 64,
batch 16, fp32. The optimiser is the full configs' (AdamW wd 0.05 with the official
weight-decay exemptions, grad clip 3.0, fused) at lr 1e-3, 5 warm-up iterations from 0.01 x
lr, then cosine to 1e-5 over 2400 iterations (24 epochs of the demo set; see
configs/demo/beitv2_vit-tiny_synthetic.py for what that length buys).

Not a config on its own: each demo adds its tokenizer (``model.target_generator``), the
tokenizer view's normalisation (``data_preprocessor.second_mean/second_std``), head and neck.
A config inheriting this one that sets a variable below again (``num_tokens = 1024``,
``img_size``) changes nothing already built from it: mmengine substitutes variables within the
file that defines them. Set the keys that use them (``model.head.num_embed``,
``model.target_generator.num_codes``, ...), as ``--cfg-options`` would.
"""
_base_ = ['../../_base_/mim_runtime.py', '../../_base_/mim_schedule_300e.py']
default_scope = 'mmpretrain'
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)

img_size = 64
patch_size = 8
grid = img_size // patch_size
num_masked_patches = 24
embed_dims = 64
arch = dict(embed_dims=embed_dims, num_layers=4, num_heads=4, feedforward_channels=128)
num_tokens = 512

data_preprocessor = dict(
    type='TwoNormDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    second_mean=[127.5, 127.5, 127.5],  # tokenizer view in [-1, 1] unless a demo says otherwise
    second_std=[127.5, 127.5, 127.5],
    to_rgb=True)
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='TwoViewRandomResizedCrop', size=img_size,
         second_size=img_size, interpolation='bicubic', second_interpolation='bicubic',
         scale=(0.2, 1.0)),
    dict(type='BlockwiseMaskGenerator', input_size=grid, num_masking_patches=num_masked_patches,
         min_num_patches=4),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CheckedImageNet', data_root='data/synthetic/imagenet', split='train',
                 pipeline=train_pipeline))

model = dict(
    type='BEiTMIM',
    num_masked_patches=num_masked_patches,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='FastBEiTPretrainViT', arch=arch, img_size=img_size, patch_size=patch_size,
        out_indices=-1, final_norm=True, out_type='raw', use_shared_rel_pos_bias=True,
        layer_scale_init_value=0.1, attn_impl='sdpa',
        init_cfg=[
            dict(type='TruncNormal', std=0.02, layer='Linear'),
            dict(type='TruncNormal', std=0.02, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]))

# the full configs' AdamW and weight-decay exemptions (mim_schedule_300e.py); fp32 (no AMP)
optim_wrapper = dict(type='OptimWrapper', _delete_=True,
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), weight_decay=0.05,
                                    fused=True),  # lr for 16 images per step
                     clip_grad={{_base_.optim_wrapper.clip_grad}},
                     paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
auto_scale_lr = dict(base_batch_size=16)
max_iters = 2400
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=5, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, _delete_=True)
max_epochs = warmup_epochs = None  # the 300-epoch schedule's, not used here

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
log_processor = dict(by_epoch=False)
