"""PeCo tokenizer: VQ-VAE with perceptual loss on ImageNet-1K (224 px, 14 x 14 codes, K = 8192).

Model (PeCo): VQGAN-style convolutional VQ-VAE (128 base channels, multipliers 1/1/2/2/4 ->
downsampling 16, two residual blocks per resolution, attention at the lowest resolution), EMA
codebook of 8192 codes; loss = MSE pixel loss + commitment + 1.0 x perceptual loss on blocks
3/6/9/12 of a frozen self-supervised ViT-B.

Teacher: DINO ViT-B/16 through ``TimmTeacher`` (PeCo used MoCo v3 ViT-B; DINO ViT-B/16 is the
self-supervised ViT-B the suite already uses for VQ-KD; the same local file as
configs/vqkd/vqkd_vitb_dino-b16_in1k.py: checkpoints/teachers/dino_vitbase16_pretrain.pth, or
``--cfg-options model.teacher.checkpoint=/path/dino_vitbase16_pretrain.pth``).

Schedule: PeCo does not publish its tokenizer optimiser settings in our references; this uses
the BEiT v2 tokenizer recipe (AdamW betas (0.9, 0.99), wd 1e-4, lr 5e-5 per 128 images as
``run_vqkd_training.py`` scales it, so 1e-4 at this total batch of 256 (8 GPUs x 32; 2e-4 is
VQ-KD's at 512), 10 warmup epochs and cosine decay to 1e-5, 100 epochs, AMP).

Run: ``tools/dist_train.sh configs/peco/peco_vqvae_in1k.py 8``; the checkpoint (keys
``tokenizer.*``) goes to ``model.target_generator.checkpoint`` of configs/peco/peco_vitb_mim.py.
"""
_base_ = ['../_base_/peco_runtime.py', '../_base_/peco_vqvae_in1k_data.py']

model = dict(
    type='PeCoVQVAETrainer',
    data_preprocessor={{_base_.data_preprocessor}},
    tokenizer=dict(
        type='PeCoVQVAE',
        patch_size=16,
        base_channels=128,
        ch_mult=(1, 1, 2, 2, 4),
        num_res_blocks=2,
        z_channels=256,
        num_embed=8192,
        embed_dims=256,
        quantizer=dict(decay=0.99, l2_normalize=False, kmeans_init=True, beta=1.0)),
    teacher=dict(
        type='TimmTeacher',
        model_name='vit_base_patch16_224',
        checkpoint='checkpoints/teachers/dino_vitbase16_pretrain.pth',
        input_range=(-1, 1)),
    perceptual_weight=1.0,
    perceptual_layers=(3, 6, 9, 12),
    pixel_loss='mse',
    commit_weight=1.0)

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    # fused AdamW, as every AdamW config here (BENCHMARKS.md, c13/c14)
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.99), weight_decay=1e-4, fused=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100)
# scaled by the total batch as the BEiT v2 tokenizer script always does (enable=False: off)
auto_scale_lr = dict(enable=True, base_batch_size=256)
