# Runtime shared by the MIM pretraining configs (BEiT v2 / BEiT v1 / PeCo): hooks, env, seeds.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep the latest 3 epochs; MIM checkpoints hold backbone./neck./head./target_generator.
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, diff_rank_seed=True)
# every trainable parameter gets a gradient (the tokenizer is frozen, the aggregation neck
# reads the early layer), so DDP needs no unused-parameter search
find_unused_parameters = False
