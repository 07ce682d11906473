"""BEiT (v1) ViT-B/16 MIM pretraining on ImageNet-1K with DALL-E visual tokens, 800 epochs.

Official recipe: 75 of 196 patches masked block-wise (min 16), the tokenizer sees a 112 px
second view (lanczos) of the same crop mapped by DALL-E's ``map_pixels`` (done by the data
preprocessor: second_mean / second_std below are ``map_pixels`` on 0..255 pixels), the
dVAE's 8192 tokens on its 14x14 grid are the targets, no aggregation head. Batch 2048,
AdamW lr 1.5e-3, betas (0.9, 0.999), wd 0.05, 10 warmup epochs, cosine to 1e-5, grad clip
3.0, drop path 0.1, layer scale 0.1, shared relative position bias, AMP. The betas are the
``--opt_betas`` default of the current unilm beit/run_beit_pretraining.py (the version whose
other defaults match the README's ImageNet-1k command, which does not set the betas: model
``beit_base_patch16_224_8k_vocab``, drop path 0.1); an intermediate version of that file had
(0.9, 0.98) and the first release torch's default (0.9, 0.999); mmpretrain's BEiT config also
uses (0.9, 0.999). The BEiT v2 300-epoch base schedule this config inherits has (0.9, 0.98).

Tokenizer weights: OpenAI's ``encoder.pkl`` or mmpretrain's ``dalle_encoder.pth``, local file
at ``model.target_generator.checkpoint`` (the suite's hand-off key).
"""
# which method made the checkpoints (downstream results files and the leaderboard read it)
pretrain_method = 'beitv1'
_base_ = [
    '_base_/mim_runtime.py',
    '_base_/mim_data_in1k.py',
    '_base_/mim_schedule_300e.py',
]

max_epochs = 800
warmup_epochs = 10
data_preprocessor = dict(
    type='TwoNormDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    second_mean=[-31.875, -31.875, -31.875],  # beitv2_mm.tokenizers.dalle.DALLE_SECOND_MEAN
    second_std=[318.75, 318.75, 318.75],  # DALLE_SECOND_STD
    to_rgb=True)
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='raise', color_type='color_ignore_orientation'),
    dict(type='PILColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='TwoViewRandomResizedCrop',
        size=224,
        second_size=112,
        interpolation='bicubic',
        second_interpolation='lanczos',
        scale=(0.08, 1.0)),
    dict(type='BlockwiseMaskGenerator', input_size=(14, 14), num_masking_patches=75,
         max_num_patches=None, min_num_patches=16),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

model = dict(
    type='BEiTMIM',
    num_masked_patches=75,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='FastBEiTPretrainViT',
        arch='base',
        patch_size=16,
        out_indices=-1,
        drop_path_rate=0.1,
        final_norm=True,
        out_type='raw',
        use_shared_rel_pos_bias=True,
        layer_scale_init_value=0.1,
        attn_impl='sdpa',
        init_cfg=[
            dict(type='TruncNormal', std=0.02, layer='Linear'),
            dict(type='TruncNormal', std=0.02, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]),
    neck=None,
    head=dict(
        type='BEiTV1Head', embed_dims=768, num_embed=8192, loss=dict(type='CrossEntropyLoss')),
    target_generator=dict(type='DALLETokenizer', checkpoint='checkpoints/dall_e/encoder.pkl'))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.999)))  # BEiT v1's, see the docstring
