# VQ-KD demo on the synthetic ImageNet-layout set: a tiny VQ-KD tokenizer (64 px, patch 8,
# encoder 4 x 64, decoder 1 x 64, codebook 512 x 8) distils the last-layer patch tokens of
# the demo teacher (configs/demo/teacher_vit-tiny_synthetic.py, trained first) through
# MMPretrainTeacher. Same algorithm and losses as configs/vqkd/vqkd_vitb_clip-b16_in1k.py,
# shrunk to finish in well under a minute on 2 CPU cores (OMP_NUM_THREADS=1; ~35 s measured).
# Codes are 8-d rather than the official 32: on this small, low-diversity data set, in our
# 150-iteration runs, 32-d codes ended at ~4% usage and cosine loss 0.42-0.44, 8-d codes at
# 5-9% usage and 0.29-0.38. About 25 of the 512 codes stay in use, so the collapse warning
# threshold is 2% here (it fires when fewer than ~10 codes remain). The checkpoint it writes
# (work_dirs/vqkd_vit-tiny_synthetic/iter_<max_iters>.pth, keys ``tokenizer.*``) is what
# the MIM demo reads through ``model.target_generator.checkpoint``.
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

data_root = 'data/synthetic/imagenet'
img_size = 64
patch_size = 8
vit_init = [
    dict(type='TruncNormal', std=0.02, layer='Linear'),
    dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0),
]
vit_common = dict(
    type='FastBEiTViT', out_indices=-1, drop_path_rate=0.0, norm_cfg=dict(type='LN', eps=1e-6),
    final_norm=True, out_type='featmap', with_cls_token=True, use_abs_pos_emb=True,
    use_rel_pos_bias=False, use_shared_rel_pos_bias=False, layer_scale_init_value=0.0,
    init_cfg=vit_init)

model = dict(
    type='VQKDAlgorithm',
    data_preprocessor=dict(type='SelfSupDataPreprocessor', to_rgb=True),
    tokenizer=dict(
        type='VQKDTokenizer',
        encoder=dict(
            arch=dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256),
            img_size=img_size, patch_size=patch_size, **vit_common),
        decoder=dict(
            arch=dict(embed_dims=64, num_layers=1, num_heads=4, feedforward_channels=256),
            img_size=img_size // patch_size, patch_size=1, **vit_common),
        num_codes=512,
        code_dim=8,
        decay=0.99,
        kmeans_init=True,
        target_dim=64,  # the demo teacher's embed_dims
        input_range=(0, 255)),
    teacher=dict(
        type='MMPretrainTeacher',
        config='configs/demo/teacher_vit-tiny_synthetic.py',
        checkpoint='work_dirs/teacher_vit-tiny_synthetic/iter_150.pth',
        layer=-1,
        input_range=(0, 255)))

# official VQ-KD augmentation: RandomResizedCrop (scale 0.08-1, bicubic) + horizontal flip
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.08, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CheckedImageNet', data_root=data_root, split='train', pipeline=train_pipeline))

max_iters = 150
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.99), weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={
        '.cls_token': dict(decay_mult=0.0),
        '.pos_embed': dict(decay_mult=0.0),
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=15),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=15, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=25),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [dict(type='CodebookUsageHook', interval=25, warn_threshold=0.02)]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=False, window_size=25)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)  # as the full configs
