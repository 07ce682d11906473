"""Demo: BEiT (v1) MIM of a tiny ViT on the synthetic ImageNet layout (CPU, ~4 min).

Same machinery as ``configs/beitv1_vitb_mim.py`` at toy size (data, student, optimisation
and runtime shared by the MIM demos: ``configs/demo/_base_/mim_demo.py``; BEiT v1's AdamW
betas (0.9, 0.999), as the full config), no aggregation head. BEiT v1's tokens are
pixel-level (the DALL-E dVAE, trained to reconstruct pixels); its weights cannot be had
offline, so the tokenizer here is the tiny pixel VQ-VAE trained by the PeCo machinery with
perceptual weight 0 (``configs/demo/pixel_vqvae-tiny_synthetic.py``; 8x8 codes, K = 512):
``model.target_generator.checkpoint`` is the hand-off key (tools/run_suite.py sets it, e.g.
work_dirs/pixel_vqvae-tiny_synthetic/iter_60.pth); left at None the tokenizer keeps random
weights (a fixed, learnable target). ``configs/beitv1_vitb_mim.py`` uses the real DALL-E
encoder (``DALLETokenizer``) instead.
"""
# which method made the checkpoints (downstream results files and the leaderboard read it)
pretrain_method = 'beitv1'
_base_ = ['_base_/mim_demo.py']

model = dict(
    neck=None,
    head=dict(type='BEiTV1Head', embed_dims={{_base_.embed_dims}},
              num_embed={{_base_.num_tokens}}, loss=dict(type='CrossEntropyLoss')),
    # the network of configs/demo/pixel_vqvae-tiny_synthetic.py (PeCo VQ-VAE, no perceptual
    # loss), which reads the tokenizer view in [-1, 1] (the shared data preprocessor's)
    target_generator=dict(
        type='PeCoVQVAE', patch_size=8, base_channels=8, ch_mult=(1, 1, 2, 2),
        num_res_blocks=1, z_channels=16, norm_groups=4, num_embed={{_base_.num_tokens}},
        embed_dims=16,
        frozen=True,
        checkpoint=None))
optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.999)))  # BEiT v1's
