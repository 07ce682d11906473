"""Demo: MIM on PeCo tokens with a tiny ViT on synthetic data, 64 px (BEiT v1-style, no neck).

The student predicts the codes of the tiny PeCo VQ-VAE of
configs/demo/peco_vqvae-tiny_synthetic.py; its checkpoint is the hand-off key
``model.target_generator.checkpoint`` and the tokenizer settings below must match that
config. The tokenizer is frozen (eval mode, no grads). Data, student, optimisation and
runtime are shared by the MIM demos (``configs/demo/_base_/mim_demo.py``), with BEiT v1's AdamW
betas (0.9, 0.999), as configs/peco/peco_vitb_mim.py; ~4 min on 2 CPU cores.
"""
# which method made the checkpoints (downstream results files and the leaderboard read it)
pretrain_method = 'peco'
_base_ = ['_base_/mim_demo.py']

model = dict(
    neck=None,
    head=dict(type='BEiTV1Head', embed_dims={{_base_.embed_dims}},
              num_embed={{_base_.num_tokens}}, loss=dict(type='CrossEntropyLoss')),
    # reads the tokenizer view in [-1, 1] (the shared data preprocessor's)
    target_generator=dict(
        type='PeCoVQVAE',
        patch_size=8,
        base_channels=8,  # all tokenizer settings as in configs/demo/peco_vqvae-tiny_synthetic.py
        ch_mult=(1, 1, 2, 2),
        num_res_blocks=1,
        z_channels=16,
        norm_groups=4,
        num_embed={{_base_.num_tokens}},
        embed_dims=16,
        frozen=True,
        checkpoint='work_dirs/peco_vqvae-tiny_synthetic/iter_30.pth'))
optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.999)))  # BEiT v1's, as PeCo's
