"""Fine-tune schedule (official BEiT v2, ViT-B): AdamW lr 5e-4 at batch 1024, wd 0.05,
betas (0.9, 0.999), layer decay 0.65 (0.6 for 1600-epoch pretrains), no weight decay on norms,
biases, q/v biases, cls token, position embeddings and layer-scale gammas (the official rule:
every 1-D parameter, every ``.bias``, ``cls_token``, ``pos_embed``); the relative position bias
tables ARE decayed, as in the official commands (``--disable_weight_decay_on_rel_pos_bias`` is
off by default and not passed); 20 warmup epochs (linear) then cosine to 1e-6 (times each
layer's decay factor, as the official schedule), 100 epochs.
Mixed precision as the official runs (fp16 autocast, dynamic loss scale); without a GPU
tools/train.py runs it as bf16 CPU autocast (``CPUAutocastOptimWrapper``).
"""
optim_wrapper = dict(
    type='AmpOptimWrapper',
    # fused AdamW: one kernel per parameter group instead of a loop of ops (BENCHMARKS.md, c14)
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8,
                   fused=True),
    constructor='BEiTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        custom_keys={
            '.ln': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            'q_bias': dict(decay_mult=0.0),
            'v_bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.gamma': dict(decay_mult=0.0),
        }),
)
# Warm-up from 1e-4 x lr, not from 0 as the official cosine_scheduler (np.linspace(0, lr, n)):
# mmengine's LinearLR is chained (each step multiplies the last lr), so a start of 0 would stay
# 0 (and divide by zero at step 1). The lr differs from the official by at most 1e-4 x lr, at
# the first step, and the two agree after the warm-up (so in every schedule of these configs).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    # The official floor min_lr 1e-6 is scaled by each parameter group's layer-decay factor
    # (engine_for_finetuning.py: lr_schedule_values[it] * lr_scale), so it is a ratio of each
    # group's lr here: 1e-6 / 5e-4. An absolute eta_min would hold the low layers at 1e-6
    # (1.3-2.5x more mean lr in the cosine phase). Change it with the lr.
    dict(type='CosineAnnealingLR', by_epoch=True, begin=20, end=100, eta_min_ratio=1e-6 / 5e-4,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# lr 5e-4 is for a total batch of 1024 (8 GPUs x 128); --auto-scale-lr rescales it.
auto_scale_lr = dict(base_batch_size=1024)
