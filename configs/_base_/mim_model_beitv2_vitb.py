# BEiT v2 ViT-B/16 MIM model: FastBEiTPretrainViT student (shared relative position bias,
# layer scale 0.1), patch aggregation over layer 9 + last [CLS] (2 layers) sharing the lm head,
# frozen VQ-KD tokenizer (8192 x 32 codebook) read from model.target_generator.checkpoint.
# On a GPU, torch.compile of every transformer layer makes the step 1.25x faster (H100 bf16:
# BENCHMARKS.md runs g15 vs g16; the first steps compile):
#   --cfg-options model.backbone.compile=True model.neck.compile=True \
#                 model.target_generator.encoder.compile=True
# which method made the checkpoints (downstream results files and the leaderboard read it)
pretrain_method = 'beitv2'
layer_scale_init_value = 0.1
drop_path_rate = 0.
# the official VQ-KD ViT-B/16 encoder (absolute position embedding, no layer scale), on the
# SDPA attention path; its keys are those of mmpretrain's BEiTViT
vqkd_encoder = dict(
    type='FastBEiTViT', arch='base', img_size=224, patch_size=16, out_indices=-1,
    drop_path_rate=0., norm_cfg=dict(type='LN', eps=1e-6), final_norm=True, out_type='featmap',
    with_cls_token=True, use_abs_pos_emb=True, use_rel_pos_bias=False,
    use_shared_rel_pos_bias=False, layer_scale_init_value=0.)
model = dict(
    # BEiTMIM computing its last student + aggregation layers only for the rows the loss reads
    # (same loss and gradients, ~6% fewer FLOPs): beitv2_mm/algorithms/selective_beit.py
    type='SelectiveBEiTMIM',
    num_masked_patches=75,
    # student view: ImageNet mean/std; tokenizer view: [-1, 1] (the VQ-KD encoder's input)
    data_preprocessor=dict(
        type='TwoNormDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        second_mean=[127.5, 127.5, 127.5],
        second_std=[127.5, 127.5, 127.5],
        to_rgb=True),
    backbone=dict(
        type='FastBEiTPretrainViT',
        arch='base',
        patch_size=16,
        out_indices=[-4, -1],  # layer 9 (early states) and layer 12
        drop_path_rate=drop_path_rate,
        final_norm=False,  # the neck's shared norm normalises both branches
        out_type='raw',
        use_shared_rel_pos_bias=True,
        layer_scale_init_value=layer_scale_init_value,
        attn_impl='sdpa',
        init_cfg=[
            dict(type='TruncNormal', std=0.02, layer='Linear'),
            dict(type='TruncNormal', std=0.02, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]),
    neck=dict(
        type='BEiTV2AggregationNeck',
        num_layers=2,
        early_layers=9,
        backbone_arch='base',
        drop_path_rate=drop_path_rate,
        layer_scale_init_value=layer_scale_init_value,
        attn_impl='sdpa'),
    head=dict(
        type='BEiTV2Head', embed_dims=768, num_embed=8192, loss=dict(type='CrossEntropyLoss')),
    # this project's VQ-KD tokenizer, encoder only (the decoder is not needed for targets);
    # it reads tokenizer checkpoints of configs/vqkd/* runs and converted official ones
    # (tools/convert_ckpt.py). tools/run_suite.py passes model.target_generator.checkpoint.
    # mmpretrain's VQKD (type='VQKD', encoder_config=...) works here too.
    target_generator=dict(
        type='VQKDTokenizer',
        encoder=vqkd_encoder,
        decoder=None,
        num_codes=8192,
        code_dim=32,
        kmeans_init=False,
        input_range=(-1, 1),  # TwoNormDataPreprocessor's second view
        frozen=True,
        checkpoint='checkpoints/vqkd_vitb_clip-b16_in1k.pth'))
