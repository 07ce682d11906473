"""mmpretrain runtime for the downstream classification configs (fine-tune, linear probe).

Not a config on its own: inherited by configs/finetune_in1k*.py, configs/linear_probe_in1k.py and
their demo versions. The DownstreamResultsHook (task set by each experiment) writes
``<work_dir>/results.json`` after every evaluation for the leaderboard.
"""
custom_imports = dict(imports=['beitv2_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
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
# each rank its own drop-path / mixup / augmentation draws, as the official fine-tuning
# script (seed + rank); the data order still follows the seed (beitv2_mm.engine.resume)
randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)
