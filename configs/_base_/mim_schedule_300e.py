# BEiT v2 official optimisation (300 epochs): AdamW lr 1.5e-3 for 2048 images/step,
# betas (0.9, 0.98), wd 0.05 (none on 1-D params, cls token, position embeddings),
# grad clip 3.0, 10 warmup epochs then cosine to 1e-5, AMP.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    # fused AdamW: one kernel for all parameters (CUDA, and CPU since torch 2.4): see BENCHMARKS.md
    optimizer=dict(type='AdamW', lr=1.5e-3, betas=(0.9, 0.98), weight_decay=0.05, fused=True),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(
        # official: every 1-D parameter (norms, biases, q/v bias, layer scale) has no decay
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'q_bias': dict(decay_mult=0.0),
            'v_bias': dict(decay_mult=0.0),
            '.gamma_1': dict(decay_mult=0.0),
            '.gamma_2': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
        }))

max_epochs = 300
warmup_epochs = 10
# Warm-up from 1e-4 x lr, not from 0 as the official cosine_scheduler (np.linspace(0, lr, n)):
# mmengine's LinearLR is chained (each step multiplies the last lr), so a start of 0 would stay
# 0 (and divide by zero at step 1). The lr differs from the official by at most 1e-4 x lr, at
# the first step, and the two agree after the warm-up (so in every schedule of these configs).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# lr above is for 2048 images per step; `--auto-scale-lr` rescales it for other batch sizes
auto_scale_lr = dict(base_batch_size=2048)
