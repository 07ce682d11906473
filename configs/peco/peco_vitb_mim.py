"""PeCo MIM: ViT-B/16 predicts the PeCo VQ-VAE codes of 75 masked patches (BEiT v1 style).

PeCo pre-trains with BEiT's recipe, only the tokenizer changes: no patch-aggregation neck,
CE on masked positions from the last layer (``BEiTMIM`` without ``neck``). Recipe of BEiT
(and PeCo's 800-epoch ViT-B run, 84.5 fine-tune top-1): AdamW lr 1.5e-3, betas (0.9, 0.999)
(the current official BEiT code's default, unilm beit/run_beit_pretraining.py; see
configs/beitv1_vitb_mim.py),
wd 0.05, total batch 2048, 10 warmup epochs then cosine to 1e-5, grad clip 3.0, drop path
0.1, layer scale 0.1, shared relative position bias, AMP. The optimisation and runtime are
the BEiT configs' own pieces (``_base_/mim_schedule_300e.py``, ``_base_/mim_runtime.py``:
the same weight-decay exemptions and fused AdamW), with BEiT v1's epochs and betas, as
configs/beitv1_vitb_mim.py, so the three MIM methods differ only where their papers do.

The tokenizer is frozen (``frozen=True`` and ``BEiTMIM`` keeps it in eval under
``inference_mode``); its checkpoint (from configs/peco/peco_vqvae_in1k.py) is the hand-off key
``model.target_generator.checkpoint``. Its settings must match the run that wrote it.
"""
# which method made the checkpoints (downstream results files and the leaderboard read it)
pretrain_method = 'peco'
_base_ = [
    '../_base_/mim_runtime.py',
    '../_base_/peco_mim_in1k_data.py',
    '../_base_/mim_schedule_300e.py',
]

max_epochs = 800
warmup_epochs = 10

model = dict(
    type='BEiTMIM',
    data_preprocessor={{_base_.data_preprocessor}},
    num_masked_patches={{_base_.num_masking_patches}},
    backbone=dict(
        type='FastBEiTPretrainViT',
        arch='base',
        patch_size=16,
        drop_path_rate=0.1,
        final_norm=True,
        out_type='raw',
        layer_scale_init_value=0.1,
        init_cfg=[
            dict(type='TruncNormal', std=0.02, layer='Linear'),
            dict(type='TruncNormal', std=0.02, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]),
    neck=None,
    head=dict(
        type='BEiTV1Head', embed_dims=768, num_embed=8192, loss=dict(type='CrossEntropyLoss')),
    target_generator=dict(
        type='PeCoVQVAE',
        patch_size=16,
        base_channels=128,
        ch_mult=(1, 1, 2, 2, 4),
        num_res_blocks=2,
        z_channels=256,
        num_embed=8192,
        embed_dims=256,
        frozen=True,
        checkpoint='work_dirs/peco_vqvae_in1k/epoch_100.pth'))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.999)))  # BEiT v1's
