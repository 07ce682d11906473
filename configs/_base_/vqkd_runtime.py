# VQ-KD schedule and runtime, official recipe: 100 epochs, AdamW (betas 0.9/0.99, wd 1e-4;
# no decay on biases, norms, cls token, position embeddings), lr 2e-4 for total batch 512,
# 10 linear warm-up epochs then cosine to 1e-5, mixed precision. The official script always
# scales the lr by the total batch (run_vqkd_training.py: lr = 5e-5 x total batch / 128), so the
# lr scaling is on here: other totals than 512 get 2e-4 x total / 512 (the 1e-5 floor is not
# scaled, as in the official code); auto_scale_lr.enable=False turns it off.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    # fused AdamW, as every AdamW config here (BENCHMARKS.md, c13/c14)
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.99), weight_decay=1e-4, fused=True),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'q_bias': dict(decay_mult=0.0),
            'v_bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }))
# Warm-up from 1e-4 x lr, not from 0 as the official cosine_scheduler (np.linspace(0, lr, n)):
# mmengine's LinearLR is chained (each step multiplies the last lr), so a start of 0 would stay
# 0 (and divide by zero at step 1). The lr differs from the official by at most 1e-4 x lr, at
# the first step, and the two agree after the warm-up (so in every schedule of these configs).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100)
auto_scale_lr = dict(enable=True, base_batch_size=512)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# codebook usage over the last 100 iterations; collapse warning under 10 % after warm-up
custom_hooks = [dict(type='CodebookUsageHook', interval=100, warn_threshold=0.1,
                     warmup_iters=1000)]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_processor = dict(window_size=100)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, diff_rank_seed=True)
